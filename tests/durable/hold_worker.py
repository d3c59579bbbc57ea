"""A process for the lease tests: holds a run on a SQLite file, or tries to take it.

    python hold_worker.py DB EFFECTS LEASE_SECONDS MODE RUN_ID GATE

- `sync`: execute the workflow "hold" as RUN_ID. Its step "wait" is a sync handler without
  timeout: it blocks the event loop (and so anything on it) until the file GATE exists.
  Then step "after" runs. Prints `blocked` when "wait" begins, then the outcome.
- `async`: the same, but "wait" is an async handler that polls GATE without blocking the loop.
- `recover`: call `recover()` once and print what it recovered.
- `take`: until GATE exists, call `recover()` then `work(burst=True)` again and again, as a
  second worker would; each try appends `try <epoch seconds>` to EFFECTS + ".tries".

Every handler appends `<run> <step> <event> <pid>` to EFFECTS in one O_APPEND write.
The outcome line is `<run> <status>` or `LeaseLostError <message>`.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
from typing import Any

from flux import FluxEngine, FluxSilentLogger, LeaseLostError, SQLiteStorage, WorkflowContext, create_workflow

DB, EFFECTS, LEASE, MODE, RUN_ID, GATE = sys.argv[1:]


def append(path: str, line: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line.encode())
    finally:
        os.close(fd)


def record(ctx: WorkflowContext[Any], event: str) -> None:
    append(EFFECTS, f"{ctx.id} {ctx.step_name} {event} {os.getpid()}\n")


def wait_sync(ctx: WorkflowContext[Any]) -> str:
    record(ctx, "start")
    print("blocked", flush=True)
    while not os.path.exists(GATE):  # blocks the event loop: no await in here
        time.sleep(0.005)
    record(ctx, "done")
    return "waited"


async def wait_async(ctx: WorkflowContext[Any]) -> str:
    record(ctx, "start")
    print("blocked", flush=True)
    while not os.path.exists(GATE):  # noqa: ASYNC110, ASYNC240 - a file from another process
        await asyncio.sleep(0.005)
    record(ctx, "done")
    return "waited"


def after(ctx: WorkflowContext[Any]) -> str:
    record(ctx, "start")
    record(ctx, "done")
    return "after"


FLOW = (
    create_workflow("hold")
    .step("wait", wait_async if MODE == "async" else wait_sync, retries=0)
    .step("after", after, retries=0)
)


async def main() -> None:
    engine = FluxEngine(storage=SQLiteStorage(DB), logger=FluxSilentLogger(), lease_seconds=float(LEASE))
    try:
        if MODE in ("sync", "async"):
            try:
                result = await engine.execute(FLOW, {}, id=RUN_ID)
                print(RUN_ID, result.status.value, flush=True)
            except LeaseLostError as exc:
                print("LeaseLostError", exc, flush=True)
        elif MODE == "recover":
            for result in await engine.recover([FLOW]):
                print("recovered", result.id, result.status.value, flush=True)
        elif MODE == "take":
            while not os.path.exists(GATE):  # noqa: ASYNC240 - one stat per try
                append(EFFECTS + ".tries", f"try {time.time()!r}\n")
                for result in await engine.recover([FLOW]):
                    print("recovered", result.id, result.status.value, flush=True)
                if await engine.work([FLOW], burst=True):
                    print("worked", flush=True)
                await asyncio.sleep(0.01)  # a worker's poll interval, shortened
        print("exit", flush=True)
    finally:
        await engine.close()


if __name__ == "__main__":
    asyncio.run(main())
