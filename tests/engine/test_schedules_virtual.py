"""Schedules on a VirtualClock (SPEC §10): a nightly cron in Europe/Paris for 30 days, across
the end of summer time, and an hourly one, run at once; every slot runs at its moment, once,
on memory and on SQLite."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Callable
from typing import Any

from flux import FluxEngine, MemoryTraceSink, RunStatus, WorkflowContext, create_workflow
from flux.events import EventType
from flux.testing import VirtualClock

EngineFactory = Callable[..., FluxEngine]
UTC = dt.timezone.utc
START = dt.datetime(2026, 10, 10, 12, 0, tzinfo=UTC)
DAY = 86400.0


def test_a_nightly_schedule_for_thirty_days_at_once(make_engine: EngineFactory) -> None:
    clock = VirtualClock(START)
    sink = MemoryTraceSink()
    engine = make_engine(clock=clock, trace=sink)
    ran: list[tuple[str, dt.datetime]] = []

    def build(ctx: WorkflowContext[Any]) -> str:
        ran.append((ctx.id, clock.datetime()))
        return str(ctx.input["kind"])

    flow = create_workflow("nightly-report").step("build", build)

    async def main() -> None:
        await engine.schedule(
            flow, cron="0 2 * * *", input={"kind": "daily"}, id="nightly", timezone="Europe/Paris"
        )
        await clock.advance(30 * DAY)

    asyncio.run(main())
    # 02:00 in Paris: 00:00Z in summer time (to the 25th, when 02:00 comes twice: the first
    # one runs), 01:00Z after it
    days = [START.date() + dt.timedelta(days=d) for d in range(1, 31)]
    slots = [
        dt.datetime(d.year, d.month, d.day, 0 if d <= dt.date(2026, 10, 25) else 1, tzinfo=UTC) for d in days
    ]
    assert ran == [(f"nightly@{s:%Y-%m-%dT%H:%M:%S}Z", s) for s in slots]
    runs = engine.list_sync(limit=100)
    assert len(runs) == 30 and all(r.status is RunStatus.COMPLETED for r in runs)
    assert all(r.created_at in slots for r in runs)  # started at the very moment of its slot
    starts = [e for e in sink.events if e["type"] == EventType.WORKFLOW_START]
    assert [e["meta"]["schedule"]["slot"] for e in starts] == [f"{s:%Y-%m-%dT%H:%M:%S}Z" for s in slots]
    (stored,) = engine.schedules_sync()
    assert stored.last_slot == slots[-1]
    assert stored.next_due == dt.datetime(2026, 11, 10, 1, 0, tzinfo=UTC)


def test_however_far_the_clock_moves_no_slot_is_missed(make_engine: EngineFactory) -> None:
    clock = VirtualClock(START)
    engine = make_engine(clock=clock)
    flow = create_workflow("hourly").step("tick", lambda ctx: None)

    async def main() -> None:
        await engine.schedule(flow, every=3600, id="hourly", catch_up="none")
        await clock.advance(2 * DAY + 1800)  # the clock stops at each slot: each is on time

    asyncio.run(main())
    runs = engine.list_sync(limit=100)
    assert len(runs) == 48 and all(r.status is RunStatus.COMPLETED for r in runs)
    assert sorted(r.id for r in runs)[0] == "hourly@2026-10-10T13:00:00Z"
    assert sorted(r.id for r in runs)[-1] == "hourly@2026-10-12T12:00:00Z"
