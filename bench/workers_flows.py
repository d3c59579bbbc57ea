"""The workflow that bench/workers.py queues and its worker processes import."""

from __future__ import annotations

from typing import Any

from flux import WorkflowContext, create_workflow


def step(ctx: WorkflowContext[Any]) -> int:
    return ctx.attempt


TEN = create_workflow("bench-ten")
for _i in range(10):
    TEN = TEN.step(f"s{_i}", step)
