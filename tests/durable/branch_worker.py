"""A process for the branch crash tests: a parallel group or a map, killed in the middle.

    python branch_worker.py STORAGE EFFECTS FLOW MODE

FLOW is `group` or `map`. MODE `run` executes run `b-1` and prints `go` once some members
are stored as completed and one is blocked (never to end), for the test to SIGKILL the
process; MODE `recover` recovers the run and prints its status and outputs as JSON. Every
member appends `<member> <pid>` to EFFECTS in one O_APPEND write.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from typing import Any

from flux import FluxEngine, FluxSilentLogger, SQLiteStorage, WorkflowContext, commit, create_workflow, step

STORAGE, EFFECTS, FLOW_NAME, MODE = sys.argv[1:]
Ctx = WorkflowContext[Any]


def effect(name: str) -> None:
    fd = os.open(EFFECTS, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, f"{name} {os.getpid()}\n".encode())
    finally:
        os.close(fd)


async def stored_done(ctx: Ctx, names: set[str]) -> None:
    """Wait until these members are stored as completed (polling: this is the victim)."""
    storage = SQLiteStorage(STORAGE) if "://" not in STORAGE else None
    from flux.storage import open_storage

    store = storage or open_storage(STORAGE)
    while True:
        run = await store.load_run(ctx.id)
        assert run is not None
        if names <= {s.name for s in run.steps if s.status.value == "completed"}:
            return
        await asyncio.sleep(0.01)


async def member(ctx: Ctx) -> str:
    name = ctx.step_name
    effect(name)
    if MODE == "run" and name == "mail":
        await stored_done(ctx, {"charge", "stock"})
        print("go", flush=True)
        await asyncio.Event().wait()
    ctx.data[name] = True
    return name


async def item(ctx: Ctx) -> int:
    effect(ctx.step_name)
    if MODE == "run" and ctx.item == 6:
        await stored_done(ctx, {f"each[{i}]" for i in range(6)})
        print("go", flush=True)
        await asyncio.Event().wait()
    return int(ctx.item) * 10


GROUP = (
    create_workflow("branch-crash-group")
    .step("prep", lambda ctx: effect("prep"))
    .parallel("g", commit("charge", member), step("mail", member), step("stock", member))
    .step("done", lambda ctx: effect("done"))
)
MAP = (
    create_workflow("branch-crash-map")
    .map("each", item, items=lambda ctx: list(range(10)), max_concurrency=2)
    .step("done", lambda ctx: effect("done"))
)
FLOW = GROUP if FLOW_NAME == "group" else MAP


async def main() -> None:
    engine = FluxEngine(storage=SQLiteStorage(STORAGE) if "://" not in STORAGE else STORAGE,
                        logger=FluxSilentLogger())  # fmt: skip
    if MODE == "run":
        await engine.execute(FLOW, {}, id="b-1")
    else:
        for result in await engine.recover([FLOW]):
            print(json.dumps({"status": result.status.value, "outputs": dict(result.outputs),
                              "data": result.data, "error": result.error}), flush=True)  # fmt: skip
        print("recovered", flush=True)
    await engine.close()


if __name__ == "__main__":
    asyncio.run(main())
