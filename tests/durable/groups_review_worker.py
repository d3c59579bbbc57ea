"""A process for the adversarial group tests (tests/durable/test_groups_review_crash.py).

    python groups_review_worker.py STORAGE EFFECTS LEASE FLOW MODE RUN_ID GATE

STORAGE is a SQLite file or a PostgreSQL URL; LEASE the lease seconds. MODE `run` executes
FLOW as RUN_ID and prints `go` once the members the flow names are in flight (for the test to
SIGKILL it, cancel it or steal its lease), then the outcome `<run> <status> <error type>` (or
`LeaseLostError`). MODE `recover` recovers and prints one JSON line per run, then `recovered`.
MODE `take` calls recover() and work(burst=True) again and again until GATE exists, as a
second worker would, appending `try <epoch seconds>` to EFFECTS + ".tries".

Every handler appends `<member> <event> <pid>` to EFFECTS in one O_APPEND write.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sqlite3
import sys
import threading
import time
from contextlib import closing
from typing import Any

from flux import (
    Backoff,
    FluxEngine,
    FluxSilentLogger,
    LeaseLostError,
    SQLiteStorage,
    WorkflowContext,
    commit,
    create_workflow,
    step,
)
from flux.storage import open_storage

STORAGE, EFFECTS, LEASE, FLOW_NAME, MODE, RUN_ID, GATE = sys.argv[1:]
Ctx = WorkflowContext[Any]
RUNNING = MODE == "run"


def append(path: str, line: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line.encode())
    finally:
        os.close(fd)


def effect(name: str, event: str) -> None:
    append(EFFECTS, f"{name} {event} {os.getpid()}\n")


async def _statuses(run_id: str) -> dict[str, str]:
    """The stored status of each step. On SQLite through the sqlite3 module, not a second
    SQLiteStorage: opening one reads the file's header with open(), and closing that file
    drops this process's locks on it (see test_a_second_sqlite_storage_in_one_process_...)."""
    if "://" not in STORAGE:
        with closing(sqlite3.connect(STORAGE)) as conn:
            rows = conn.execute("SELECT name, status FROM flux_steps WHERE run_id=?", (run_id,)).fetchall()
        return {name: status for name, status in rows}
    store = open_storage(STORAGE)
    try:
        run = await store.load_run(run_id)
        assert run is not None
        return {s.name: s.status.value for s in run.steps}
    finally:
        await store.close()


async def stored(ctx: Ctx, want: dict[str, str]) -> None:
    """Wait until these members are stored with these statuses (polling: this is the victim)."""
    while True:
        have = await _statuses(ctx.id)
        if all(have.get(n) == v for n, v in want.items()):
            return
        await asyncio.sleep(0.01)


async def started(names: set[str]) -> None:
    """Wait until these members have written their start to EFFECTS."""
    while True:
        with open(EFFECTS) as f:  # noqa: ASYNC230 - a small local file
            seen = {ln.split()[0] for ln in f if ln.split()[1] == "start"}
        if names <= seen:
            return
        await asyncio.sleep(0.01)


_go_once: list[bool] = []


def go() -> None:
    if not _go_once:
        _go_once.append(True)
        print("go", flush=True)


async def hang(ctx: Ctx) -> str:
    """Start, then (in MODE run) hang until cancelled; once the other member named in the
    flow is stored as started, say go."""
    name = ctx.step_name
    effect(name, "start")
    if RUNNING:
        try:
            if name == "a":
                await stored(ctx, {"charge": "running"})
                go()
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            effect(name, "cancelled")
            raise
    effect(name, "done")
    return name


def undo(ctx: Ctx) -> None:
    effect(ctx.step_name, "undo")


async def quick(ctx: Ctx) -> str:
    effect(ctx.step_name, "start")
    return ctx.step_name


async def flaky(ctx: Ctx) -> str:
    effect(ctx.step_name, "start")
    if RUNNING:
        if ctx.attempt == 1:
            raise ConnectionError("the carrier is down")
        await stored(ctx, {"charge": "completed"})
        go()
        await asyncio.Event().wait()
    return "shipped"


def blocking(ctx: Ctx) -> str:
    """A sync member without timeout that blocks its thread with time.sleep until GATE."""
    effect(ctx.step_name, "start")
    print("go", flush=True)
    while not os.path.exists(GATE):
        time.sleep(0.01)
    effect(ctx.step_name, "done")
    return "blocked"


async def sibling(ctx: Ctx) -> str:
    """An async member that must run to its end while `blocking` holds its thread."""
    effect(ctx.step_name, "start")
    for _ in range(20):
        await asyncio.sleep(0.01)
    effect(ctx.step_name, "done")
    return "ran"


#: Set once the sync branch saw its cancel: the saga does not wait for it (a thread cannot be
#: stopped), so the process does before it reports, for the test to see what the branch saw.
SAW_CANCEL = threading.Event()


def sync_until_cancelled(ctx: Ctx) -> str:
    effect(ctx.step_name, "start")
    while not ctx.cancelled:
        time.sleep(0.005)
    effect(ctx.step_name, "saw-cancel")
    SAW_CANCEL.set()
    return "late"


async def wait_go(ctx: Ctx) -> str:
    effect(ctx.step_name, "start")
    try:
        await stored(ctx, {"quick": "completed"})
        await started({"sync"})
        go()
        await asyncio.Event().wait()
    except asyncio.CancelledError:
        effect(ctx.step_name, "cancelled")
        raise
    return "never"


async def poll_gate(ctx: Ctx) -> str:
    effect(ctx.step_name, "start")
    try:
        if ctx.step_name == "a":
            await started({"a", "b"})
            go()
        while not os.path.exists(GATE):  # noqa: ASYNC110, ASYNC240 - a file from another process
            await asyncio.sleep(0.01)
    except asyncio.CancelledError:
        effect(ctx.step_name, "cancelled")
        raise
    effect(ctx.step_name, "done")
    return ctx.step_name


def die(ctx: Ctx) -> str:
    """Kill this very process, every time: a crash loop."""
    effect(ctx.step_name, "start")
    os.kill(os.getpid(), signal.SIGKILL)
    return "never"


def item_dies(ctx: Ctx) -> int:
    effect(ctx.step_name, "start")
    if ctx.item == 1:
        os.kill(os.getpid(), signal.SIGKILL)
    return int(ctx.item)


async def tiny(ctx: Ctx) -> str:
    effect(ctx.step_name, "start")
    await asyncio.sleep(0.002)
    effect(ctx.step_name, "done")
    return ctx.step_name


def _chain() -> Any:
    flow: Any = create_workflow("gr-chain")
    for k in range(6):
        flow = flow.parallel(f"g{k}", commit(f"c{k}", tiny), step(f"s{k}", tiny), step(f"t{k}", tiny))
    return flow


def prep(ctx: Ctx) -> str:
    effect("prep", "start")
    return "prepped"


SOON = Backoff(initial=0.01, factor=1, max=0.01, jitter=0)

FLOWS = {
    # a step branch before a commit branch, both in flight at the kill
    "step-then-commit": create_workflow("gr-step-then-commit")
    .step("prep", prep, compensate=undo)
    .parallel("g", step("a", hang, compensate=undo), commit("charge", hang, compensate=undo))
    .step("after", quick),
    # the same, the commit first
    "commit-then-step": create_workflow("gr-commit-then-step")
    .step("prep", prep, compensate=undo)
    .parallel("g", commit("charge", hang, compensate=undo), step("a", hang, compensate=undo))
    .step("after", quick),
    # a commit branch done while its sibling is retried
    "retrying": create_workflow("gr-retrying")
    .parallel("g", commit("charge", quick), step("ship", flaky, retries=2, backoff=SOON))
    .step("after", quick),
    # a sync branch blocking its thread beside an async one
    "block": create_workflow("gr-block").parallel("g", step("blocking", blocking), step("sibling", sibling)),
    # cancelled from another process in the middle
    "cancel": create_workflow("gr-cancel")
    .step("prep", prep, compensate=undo)
    .parallel(
        "g",
        step("quick", quick, compensate=undo),
        step("sync", sync_until_cancelled, compensate=undo),
        step("async", wait_go, compensate=undo),
    )
    .step("after", quick),
    # a branch, and an item, that kill their process whenever they run
    "crash-branch": create_workflow("gr-crash-branch").parallel("g", step("boom", die), step("ok", quick)),
    "crash-item": create_workflow("gr-crash-item").map(
        "each", item_dies, items=lambda ctx: [0, 1, 2], max_concurrency=1
    ),
    # six groups, each with a commit, for kills at many points
    "chain": _chain(),
    # its lease stolen in the middle
    "lease": create_workflow("gr-lease")
    .parallel("g", step("a", poll_gate), step("b", poll_gate))
    .step("after", quick),
}
FLOW = FLOWS[FLOW_NAME]


async def main() -> None:
    storage: Any = SQLiteStorage(STORAGE) if "://" not in STORAGE else STORAGE
    engine = FluxEngine(
        storage=storage, logger=FluxSilentLogger(), lease_seconds=float(LEASE), default_retries=0
    )
    try:
        if MODE == "run":
            try:
                result = await engine.execute(FLOW, {}, id=RUN_ID)
                if FLOW_NAME == "cancel":
                    await asyncio.to_thread(SAW_CANCEL.wait, 60)
                print(RUN_ID, result.status.value, result.error_type, flush=True)
            except LeaseLostError:
                print("LeaseLostError", flush=True)
        elif MODE == "recover":
            for result in await engine.recover([FLOW]):
                line = {
                    "status": result.status.value,
                    "error_type": result.error_type,
                    "error": result.error,
                    "outputs": dict(result.outputs),
                    "steps": {s.name: s.status.value for s in result.history},
                }
                print(json.dumps(line), flush=True)
            print("recovered", flush=True)
        elif MODE == "take":
            while not os.path.exists(GATE):  # noqa: ASYNC240 - one stat per try
                append(EFFECTS + ".tries", f"try {time.time()!r}\n")
                for result in await engine.recover([FLOW]):
                    print("recovered", result.id, result.status.value, flush=True)
                if await engine.work([FLOW], burst=True):
                    print("worked", flush=True)
                await asyncio.sleep(0.01)
        print("exit", flush=True)
    finally:
        await engine.close()


if __name__ == "__main__":
    asyncio.run(main())
