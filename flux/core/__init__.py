"""The run machine: pure decisions about a run, with no I/O, no clock and no threads.

`decide(run, plan, event, now)` takes a run's stored state (a `RunRecord`, which it
updates), the definition as a `Plan`, one input event (`flux.core.messages`) and the time,
and returns the effects to carry out, in order: save, emit, invoke a handler, wait, call a
hook, log, release. `flux.driver` carries them out and feeds the outcomes back as events.
A test keeps this package free of asyncio, threading, time and storage imports.

Steps are addressed by name (`StepRef`), never by position, so that the branches of a
group and the items of a map can be addressed the same way.
"""

from .machine import decide
from .messages import Effect, Event
from .plan import Plan, StepPlan, plan_of
from .saga import Memo

__all__ = ["Effect", "Event", "Memo", "Plan", "StepPlan", "decide", "plan_of"]
