"""A workflow with a group and a map for `flux worker` in the review tests; every member
appends `<run> <member> <pid>` to $EFFECTS in one O_APPEND write."""

from __future__ import annotations

import asyncio
import os
import time
from typing import Any

from flux import WorkflowContext, commit, create_workflow, step

Ctx = WorkflowContext[Any]


def record(ctx: Ctx) -> None:
    line = f"{ctx.id} {ctx.step_name} {os.getpid()}\n".encode()
    fd = os.open(os.environ["EFFECTS"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line)
    finally:
        os.close(fd)


def sync_member(ctx: Ctx) -> str:
    record(ctx)
    time.sleep(0.01)  # holds its thread a little, as real work does
    ctx.data[ctx.step_name] = True
    return ctx.step_name


async def async_member(ctx: Ctx) -> str:
    record(ctx)
    await asyncio.sleep(0.01)
    ctx.data[ctx.step_name] = True
    return ctx.step_name


async def item(ctx: Ctx) -> int:
    record(ctx)
    await asyncio.sleep(0)
    return int(ctx.item) * int(ctx.input["n"])


GROUPED = (
    create_workflow("review-grouped")
    .parallel("g", commit("charge", sync_member), step("mail", sync_member), step("stock", async_member))
    .map("each", item, items=lambda ctx: list(range(5)), max_concurrency=2)
    .step("done", lambda ctx: sum(ctx.outputs["each"]))
)
