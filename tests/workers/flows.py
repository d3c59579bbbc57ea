"""Workflows for the worker tests; each step appends `<run> <step> <event> <pid>` to $EFFECTS."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from flux import Flux, WorkflowContext, create_workflow


def record(ctx: WorkflowContext[Any], event: str) -> None:
    line = f"{ctx.id} {ctx.step_name} {event} {os.getpid()}\n".encode()
    fd = os.open(os.environ["EFFECTS"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line)
    finally:
        os.close(fd)


def step(ctx: WorkflowContext[Any]) -> int:
    record(ctx, "start")
    ctx.data[ctx.step_name] = ctx.attempt
    record(ctx, "done")
    return ctx.attempt


def gated(ctx: WorkflowContext[Any]) -> str:
    """Waits until the file named by the input's `gate` exists (the test opens the gate)."""
    record(ctx, "start")
    gate = Path(ctx.input["gate"])
    while not gate.exists():  # a worker thread blocked in a sync handler, as in real life
        time.sleep(0.01)
    record(ctx, "done")
    return "through"


def ask(ctx: WorkflowContext[Any]) -> Any:
    record(ctx, "start")
    return Flux.wait("approval")


TEN = create_workflow("ten")
for _i in range(10):
    TEN = TEN.step(f"s{_i}", step)
GATED = create_workflow("gated").step("wait", gated).step("after", step)
APPROVAL = create_workflow("approval").step("ask", ask).step("after", step)
GATED_COMMIT = create_workflow("gated-commit").step("prepare", step).commit("ship", gated)
