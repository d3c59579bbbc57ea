"""The workflow the schedule tests' `flux worker` processes run: each run appends its id
and the worker's pid to the file named by FLUX_TEST_EFFECTS (one `write`, O_APPEND)."""

from __future__ import annotations

import os
from typing import Any

from flux import WorkflowContext, create_workflow


def _tick(ctx: WorkflowContext[Any]) -> str:
    fd = os.open(os.environ["FLUX_TEST_EFFECTS"], os.O_WRONLY | os.O_APPEND | os.O_CREAT)
    try:
        os.write(fd, f"{ctx.id} {os.getpid()}\n".encode())
    finally:
        os.close(fd)
    return ctx.id


flow = create_workflow("tick").step("tick", _tick)
