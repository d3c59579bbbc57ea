"""Flows and a process of their own for tests/durable/test_call_review_crash.py:

    python -m tests.durable.call_review_flows STORAGE_URL MODE [RUN_ID]

MODE `work`: a worker (burst) of PARENT; `recover`: `engine.recover`, then that worker;
`execute`: `engine.execute(PARENT)` of RUN_ID (the child driven in this process); `signal`:
the signal "go" to the child RUN_ID.
`KILL_AT` makes the process SIGKILL itself inside a storage write: `before-final` /
`after-final` around the write that ends a child run, `after-create` right after a child
run is created (before its parent's next write). Every handler appends
`<run> <step> <event> <pid>` to $EFFECTS. `BLOCK_AT=cancel:<step>` makes <step> print
`blocked` and wait for `ctx.cancelled`, `BLOCK_AT=in:<step>` print it and wait for a
SIGKILL. `MAX_CRASHES` is the engine's `max_crashes`.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import threading
import time
from collections.abc import Sequence
from typing import Any

from flux import Flux, FluxEngine, FluxSilentLogger, WorkflowContext, create_workflow
from flux.records import RunRecord
from flux.status import RUN_TERMINAL
from flux.storage import open_storage


def record(ctx: WorkflowContext[Any], event: str) -> None:
    line = f"{ctx.id} {ctx.step_name} {event} {os.getpid()}\n".encode()
    fd = os.open(os.environ["EFFECTS"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line)
    finally:
        os.close(fd)


def handler(ctx: WorkflowContext[Any]) -> int:
    record(ctx, "start")
    if os.environ.get("BLOCK_AT", "") == f"in:{ctx.step_name}":
        print("blocked", flush=True)
        threading.Event().wait()  # until SIGKILL
    if os.environ.get("BLOCK_AT", "") == f"cancel:{ctx.step_name}":
        print("blocked", flush=True)
        while not ctx.cancelled:
            time.sleep(0.01)
        record(ctx, "cancelled")
        return 0
    ctx.data[ctx.step_name] = os.getpid()
    record(ctx, "done")
    return os.getpid()


def undo(ctx: WorkflowContext[Any]) -> None:
    record(ctx, "undo")


def ask(ctx: WorkflowContext[Any]) -> Any:
    if ctx.input.get("wait"):
        return Flux.wait("go")
    return None


CHILD = (
    create_workflow("rvc-child")
    .step("prepare", handler, compensate=undo)
    .commit("charge", handler)
    .step("ask", ask)
    .step("receipt", handler)
)
PARENT = (
    create_workflow("rvc-parent")
    .step("reserve", handler, compensate=undo)
    .call("pay", CHILD, input=lambda ctx: {"wait": ctx.input.get("wait", False)})
    .step("ship", handler)
)


def _killing(storage: Any, kill_at: str) -> Any:
    save, create = storage.save_run, storage.create_run

    async def save_run(run: RunRecord, steps: Sequence[int], owner: str | None) -> None:
        final = run.parent_id is not None and run.status in RUN_TERMINAL
        if final and kill_at == "before-final":
            os.kill(os.getpid(), signal.SIGKILL)
        await save(run, steps, owner)
        if final and kill_at == "after-final":
            os.kill(os.getpid(), signal.SIGKILL)

    async def create_run(run: RunRecord) -> bool:
        made: bool = await create(run)
        if made and run.parent_id is not None and kill_at == "after-create":
            os.kill(os.getpid(), signal.SIGKILL)
        return made

    storage.save_run, storage.create_run = save_run, create_run
    return storage


async def main(url: str, mode: str, run_id: str | None) -> None:
    storage = _killing(open_storage(url), os.environ.get("KILL_AT", ""))
    crashes = int(os.environ.get("MAX_CRASHES") or 3)
    engine = FluxEngine(storage=storage, logger=FluxSilentLogger(), lease_seconds=2.0, max_crashes=crashes)
    try:
        if mode == "work":
            await engine.work([PARENT], burst=True, poll=0.05)
        elif mode == "recover":  # what a dead process left running (taken at once), then a worker
            await engine.recover([PARENT])
            await engine.work([PARENT], burst=True, poll=0.05)
        elif mode == "execute":
            assert run_id is not None
            await engine.execute(PARENT, {"wait": os.environ.get("WAIT") == "1"}, id=run_id)
        elif mode == "signal":
            assert run_id is not None
            await engine.signal(CHILD, run_id, "go")
        else:
            raise SystemExit(f"unknown mode {mode!r}")
    finally:
        await engine.close()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], sys.argv[3] if len(sys.argv) > 3 else None))
