"""A process for the group commit crash test: 64 runs at once in one engine.

    python group_worker.py STORAGE EFFECTS MODE

STORAGE is a SQLite file or a PostgreSQL URL. MODE `run` executes the runs `g-0` ... `g-63`
of a six-step workflow (a commit in the middle) all at once, and prints `go` (without
stopping) once 150 handlers have been called, for the test to SIGKILL the process while
batches are in flight. MODE `recover` recovers them and prints each run's outcome. Every
handler appends `<run> <step> call <pid>` to EFFECTS in one O_APPEND write.
"""

from __future__ import annotations

import asyncio
import os
import sys
from typing import Any

from flux import (
    FluxEngine,
    FluxSilentLogger,
    SQLiteStorage,
    WorkflowContext,
    WorkflowStorage,
    create_workflow,
)

STORAGE, EFFECTS, MODE = sys.argv[1:]
RUNS = 64
calls = 0


def handler(ctx: WorkflowContext[Any]) -> int:
    global calls
    line = f"{ctx.id} {ctx.step_name} call {os.getpid()}\n".encode()
    fd = os.open(EFFECTS, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line)
    finally:
        os.close(fd)
    ctx.data[ctx.step_name] = ctx.attempt
    calls += 1
    if calls == 150:
        print("go", flush=True)
    return calls


FLOW = create_workflow("group-crash")
for name in ("s1", "s2"):
    FLOW = FLOW.step(name, handler)
FLOW = FLOW.commit("c3", handler)
for name in ("s4", "s5", "s6"):
    FLOW = FLOW.step(name, handler)


async def main() -> None:
    storage: WorkflowStorage | str = STORAGE if "://" in STORAGE else SQLiteStorage(STORAGE)
    engine = FluxEngine(storage=storage, logger=FluxSilentLogger())
    if MODE == "run":
        await asyncio.gather(*(engine.execute(FLOW, {}, id=f"g-{i}") for i in range(RUNS)))
        print("finished", flush=True)
    else:
        for result in await engine.recover([FLOW]):
            print(result.id, result.status.value, result.error_type or "-", flush=True)
        print("recovered", flush=True)
    await engine.close()


if __name__ == "__main__":
    asyncio.run(main())
