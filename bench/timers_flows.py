"""The workflow that bench/timers.py stores asleep and its worker processes wake."""

from __future__ import annotations

import datetime as dt
import time
from typing import Any

from flux import Flux, SleepRequest, WorkflowContext, create_workflow


def nap(ctx: WorkflowContext[Any]) -> SleepRequest:
    return Flux.sleep_until(dt.datetime.fromtimestamp(ctx.input["wake"], dt.timezone.utc))


def woke(ctx: WorkflowContext[Any]) -> float:
    return time.time()  # when the worker took the run up again: the lateness is this - wake


NAP = create_workflow("bench-nap").step("nap", nap).step("woke", woke)
