"""A parent workflow that `.call`s a child, for the tests run across processes; also a
process of its own:

    python -m tests.durable.call_flows STORAGE_URL MODE [RUN_ID]

MODE `parent-once`: a worker that takes one parent run, which suspends on its child, and
exits; `execute`: `engine.execute` of the parent (its child driven in this process).
Every handler appends `<run> <step> <event> <pid>` to $EFFECTS in one O_APPEND write.
`BLOCK_AT=in:<step>` makes the handler of <step> print `blocked` and wait forever (for a
SIGKILL); `BLOCK_AT=cancel:<step>` makes it print `blocked` and wait until `ctx.cancelled`.
"""

from __future__ import annotations

import asyncio
import os
import sys
import threading
import time
from typing import Any

from flux import FluxEngine, FluxSilentLogger, WorkflowContext, create_workflow


def record(ctx: WorkflowContext[Any], event: str) -> None:
    line = f"{ctx.id} {ctx.step_name} {event} {os.getpid()}\n".encode()
    fd = os.open(os.environ["EFFECTS"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line)
    finally:
        os.close(fd)


_parked = threading.Event()


def handler(ctx: WorkflowContext[Any]) -> int:
    record(ctx, "start")
    block = os.environ.get("BLOCK_AT", "")
    if block == f"in:{ctx.step_name}":
        print("blocked", flush=True)
        threading.Event().wait()
    if block == f"cancel:{ctx.step_name}":
        print("blocked", flush=True)
        while not ctx.cancelled:
            time.sleep(0.01)
        record(ctx, "cancelled")
        return 0
    ctx.data[ctx.step_name] = os.getpid()
    record(ctx, "done")
    if ctx.step_name == "reserve":
        _parked.set()
    return os.getpid()


CHILD = create_workflow("pay").step("prepare", handler).commit("charge", handler).step("receipt", handler)
PARENT = (
    create_workflow("order")
    .step("reserve", handler)
    .call("pay", CHILD, input=lambda ctx: {"amount": ctx.input["amount"]})
    .step("ship", handler)
)


async def main(url: str, mode: str, run_id: str | None) -> None:
    engine = FluxEngine(storage=url, logger=FluxSilentLogger(), lease_seconds=2.0)
    try:
        if mode == "parent-once":
            # the loop looks at `stop` before each claim: after the parent run it took
            await engine.work([PARENT], stop=_parked.is_set, poll=0.05)
        elif mode == "execute":
            assert run_id is not None
            await engine.execute(PARENT, {"amount": 5}, id=run_id)
        else:
            raise SystemExit(f"unknown mode {mode!r}")
    finally:
        await engine.close()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], sys.argv[3] if len(sys.argv) > 3 else None))
