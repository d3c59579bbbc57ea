"""A process for the crash tests: runs, recovers or signals workflows on a SQLite file.

    python worker.py DB EFFECTS MODE [ARGS...]

Every handler appends `<run> <step> <event>` to EFFECTS in one O_APPEND write, so the test
can count what really happened across processes. `BLOCK_AT=in:<step>` or
`BLOCK_AT=after:<step>` makes the process print `blocked` and wait forever at that point,
for the test to kill it with SIGKILL.
"""

from __future__ import annotations

import asyncio
import os
import sys
import threading
from typing import Any

from flux import (
    Backoff,
    FatalError,
    Flux,
    FluxEngine,
    FluxSilentLogger,
    SQLiteStorage,
    WorkflowContext,
    create_workflow,
)

DB, EFFECTS, MODE, *ARGS = sys.argv[1:]
BLOCK_AT = os.environ.get("BLOCK_AT", "")
LEASE = float(os.environ.get("LEASE_SECONDS", "30"))


def record(ctx: WorkflowContext[Any], event: str) -> None:
    line = f"{ctx.id} {ctx.step_name} {event} {os.getpid()}\n".encode()
    fd = os.open(EFFECTS, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line)
    finally:
        os.close(fd)


def block() -> None:
    print("blocked", flush=True)
    threading.Event().wait()


def handler(ctx: WorkflowContext[Any]) -> str:
    record(ctx, "start")
    if BLOCK_AT == f"in:{ctx.step_name}":
        block()
    ctx.data[ctx.step_name] = ctx.attempt
    record(ctx, "done")
    return f"{ctx.step_name}-ok"


def after_step(step: str, ctx: WorkflowContext[Any], result: Any) -> None:
    if BLOCK_AT == f"after:{step}":
        block()


def undo(ctx: WorkflowContext[Any]) -> None:
    record(ctx, "undo-start")
    if BLOCK_AT == f"undo:{ctx.step_name}":
        block()
    record(ctx, "undo-done")


def refuse(ctx: WorkflowContext[Any]) -> None:
    record(ctx, "start")
    raise FatalError("no rooms left")


def ask(ctx: WorkflowContext[Any]) -> Any:
    record(ctx, "start")
    return Flux.wait("approval")


def die(ctx: WorkflowContext[Any]) -> str:
    """Kills its own process with SIGKILL, every time (a step that crashes its worker)."""
    record(ctx, f"attempt{ctx.attempt}")
    os.kill(os.getpid(), 9)
    return "never"


async def await_forever(ctx: WorkflowContext[Any]) -> str:
    """An async step that only a cancel ends (its code after the await never runs)."""
    record(ctx, "start")
    print("blocked", flush=True)
    await asyncio.Event().wait()
    record(ctx, "after-await")
    return "never"


def spin_until_cancelled(ctx: WorkflowContext[Any]) -> str:
    """A sync step on the loop's thread (no timeout) that stops when told to."""
    record(ctx, "start")
    print("blocked", flush=True)
    while not ctx.cancelled:
        threading.Event().wait(0.01)
    record(ctx, "saw-cancel")
    return "stopped"


FIVE = (
    create_workflow("five")
    .step("s1", handler)
    .step("s2", handler)
    .commit("c3", handler)
    .step("s4", handler)
    .step("s5", handler)
)
APPROVAL = create_workflow("approval").step("ask", ask).step("after", handler)
SAGA = create_workflow("saga").step("flight", handler, compensate=undo).step("car", handler, compensate=undo)
SAGA = SAGA.step("hotel", refuse)
CRASH = create_workflow("crash").step("s1", handler, compensate=undo).step("boom", die).step("s3", handler)
SLOW_ASYNC = create_workflow("slow-async").step("reserve", handler, compensate=undo)
SLOW_ASYNC = SLOW_ASYNC.step("work", await_forever).step("never", handler)
SLOW_SYNC = create_workflow("slow-sync").step("reserve", handler, compensate=undo)
SLOW_SYNC = SLOW_SYNC.step("work", spin_until_cancelled).step("never", handler)
FLOWS = {"five": FIVE, "approval": APPROVAL, "saga": SAGA, "crash": CRASH,
         "slow-async": SLOW_ASYNC, "slow-sync": SLOW_SYNC}  # fmt: skip


async def main() -> None:
    engine = FluxEngine(
        storage=SQLiteStorage(DB),
        logger=FluxSilentLogger(),
        on={"step_complete": after_step},
        default_backoff=Backoff(initial=0.001, jitter=0),
        lease_seconds=LEASE,
    )
    if os.environ.get("PRETEND_OTHER_HOST"):
        engine.leases.host = "another-host"
    if MODE == "execute":  # ARGS: flow run-id [run-id ...]
        for run_id in ARGS[1:]:
            result = await engine.execute(FLOWS[ARGS[0]], {"n": 1}, id=run_id)
            print(run_id, result.status.value, result.error_type or "-", flush=True)
    elif MODE == "many":  # ARGS: prefix count; also every process runs the shared-* ids
        ids = [f"{ARGS[0]}-{i}" for i in range(int(ARGS[1]))] + [f"shared-{i}" for i in range(50)]
        statuses: dict[str, int] = {}
        for run_id in ids:
            result = await engine.execute(FIVE, {"n": 1}, id=run_id)
            statuses[result.status.value] = statuses.get(result.status.value, 0) + 1
        print(" ".join(f"{k}={v}" for k, v in sorted(statuses.items())), flush=True)
    elif MODE == "recover":
        for result in await engine.recover(list(FLOWS.values())):
            print(result.id, result.status.value, result.error_type or "-", flush=True)
        print("recovered", flush=True)
    elif MODE == "signal":  # ARGS: run-id
        result = await engine.signal(APPROVAL, ARGS[0], "approval", {"by": "ann"})
        print(result.id, result.status.value, result.outputs.get("ask"), flush=True)
    elif MODE == "retry":  # ARGS: run-id step
        result = await engine.retry_step(FIVE, ARGS[0], ARGS[1])
        print(result.id, result.status.value, result.error_type or "-", flush=True)
    await engine.close()


if __name__ == "__main__":
    asyncio.run(main())
