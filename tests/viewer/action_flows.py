"""Workflows the action tests act on, importable by a ``flux dev`` in another process.

``flaky``'s ``pay`` fails for good while the file named by ``input["gate"]`` exists, so a
test makes a run fail, removes the file, and retries or resumes it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from flux import FatalError, Flux, WorkflowContext, create_workflow


def _fetch(ctx: WorkflowContext[Any]) -> str:
    return "fetched"


def _pay(ctx: WorkflowContext[Any]) -> str:
    if Path(ctx.input["gate"]).exists():
        raise FatalError(f"the gate {ctx.input['gate']} is closed")
    return "paid"


def _ship(ctx: WorkflowContext[Any]) -> str:
    return "shipped"


flaky = create_workflow("flaky").step("fetch", _fetch).step("pay", _pay).step("ship", _ship)
approval = (
    create_workflow("approval")
    .step("ask", lambda ctx: Flux.wait("approval"))
    .step("finish", lambda ctx: ctx.outputs["ask"])
)
WORKFLOWS = {flaky.name: flaky, approval.name: approval}
