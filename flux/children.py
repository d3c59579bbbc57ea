"""Child runs: a `.call` step starts a run of another workflow and waits for its end
(SPEC §11). The run machine sees a call as a step; this is its handler, run by the driver."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .core.messages import AttemptEnded, Invoke

if TYPE_CHECKING:
    from .builder import StepDefinition
    from .driver import RunDriver


async def invoke_call(driver: RunDriver, sdef: StepDefinition[Any], effect: Invoke) -> AttemptEnded:
    """Start the child run (once: its id is "<parent id>/<step>") or look at it, and say how
    the call step ends: with the child's data, its error, or a wait for its end."""
    raise NotImplementedError("child workflows are not built yet")
