"""A scheduled digest: a workflow that a stored schedule starts every morning.

    engine.schedule(digest_flow, cron="0 7 * * *", timezone="Europe/Paris", id="digest")

    gather ──▶ send        one run per slot, id "digest@2026-12-02T06:00:00Z"

The schedule is stored with the runs; whichever process works the storage (`engine.work()`,
`flux worker`, `flux_lifespan(..., work=True)`) starts the run of each slot, and the slot's run
id makes sure that any number of workers start it once. The run's `workflow:start` carries
`meta.schedule` ({"id", "slot"}), which `flux dev` shows in the run's header.

The script runs a week on a `VirtualClock`, so seven mornings pass in a moment:

    python examples/scheduled_digest.py

Runs are stored in SQLite at ``$FLUX_DB`` (default ``./.flux/examples.db``); the trace goes
to ``$FLUX_TRACE`` (default ``./.flux/trace.ndjson``).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import sys
import uuid
from pathlib import Path
from typing import Any

try:
    import flux  # noqa: F401
except ModuleNotFoundError:  # a source checkout without `pip install -e .`
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from flux import (
    FluxConsoleLogger,
    FluxEngine,
    FluxResult,
    JsonFileTraceSink,
    WorkflowContext,
    create_workflow,
)
from flux.testing import VirtualClock

TRACE_PATH = os.environ.get("FLUX_TRACE", "./.flux/trace.ndjson")
DB_PATH = os.environ.get("FLUX_DB", "./.flux/examples.db")

DAY = 86400.0


def gather(ctx: WorkflowContext[Any]) -> dict[str, int]:
    # A real digest would query the day's orders; the input says which team it is for.
    team = str(ctx.input.get("team", "sales")) if isinstance(ctx.input, dict) else "sales"
    return {"orders": 12 + len(team), "refunds": 1}


def send(ctx: WorkflowContext[Any]) -> str:
    counts = ctx.outputs["gather"]
    return f"digest sent: {counts['orders']} orders, {counts['refunds']} refund"


digest_flow = create_workflow("daily-digest").step("gather", gather).step("send", send)


async def run(engine: FluxEngine, tag: str | None = None) -> list[FluxResult]:
    """Store the morning schedule, and show one scheduled run at once: a schedule of one
    slot a second starts a run at its next slot, taken by this engine as a worker would,
    then removed. On a `VirtualClock`, a week of mornings passes instead."""
    tag = tag or uuid.uuid4().hex[:6]
    morning = await engine.schedule(
        digest_flow, cron="0 7 * * *", timezone="Europe/Paris", input={"team": "sales"}, id=f"digest-{tag}"
    )
    if isinstance(engine.clock, VirtualClock):
        await engine.clock.advance(7 * DAY)
        runs = await engine.list(name=digest_flow.name, limit=100)
        return sorted((r for r in runs if r.id.startswith(f"{morning.id}@")), key=lambda r: r.id)
    now = await engine.schedule(digest_flow, every=1, input={"team": "ops"}, id=f"digest-now-{tag}")
    await engine.clock.sleep(now.next_due.timestamp() - engine.clock.now())
    await engine.work([digest_flow], burst=True)  # fires the due slot and runs it
    await engine.unschedule(now.id)
    runs = await engine.list(name=digest_flow.name, limit=100)
    # The morning schedule stays stored: `flux schedules list` shows it, a worker starts its runs.
    return [r for r in runs if r.id.startswith(f"{now.id}@")]


async def _scenario() -> None:
    start = dt.datetime.now(dt.timezone.utc).replace(microsecond=0)
    Path(DB_PATH).parent.mkdir(parents=True, exist_ok=True)
    engine = FluxEngine(
        storage=f"sqlite:///{DB_PATH}",
        clock=VirtualClock(start=start),
        trace=JsonFileTraceSink(TRACE_PATH, reset=False),
        logger=FluxConsoleLogger(),
    )
    try:
        results = await run(engine)
    finally:
        await engine.close()
    for result in results:
        print(f"{result.id}: {result.status.value}: {result.outputs.get('send')}")
    print(f"a week of mornings passed on a VirtualClock; trace: {TRACE_PATH}")


if __name__ == "__main__":
    asyncio.run(_scenario())
