"""A 30-day workflow on a VirtualClock: a sleep, a wait with a timeout, retries with backoff,
a deadline and a daily schedule beside it, run to its end at once (SPEC §10, issue 10), on
memory and on SQLite."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Callable
from typing import Any

from flux import Backoff, Flux, FluxEngine, MemoryTraceSink, RunStatus, WorkflowContext, create_workflow
from flux.testing import VirtualClock

EngineFactory = Callable[..., FluxEngine]
START = dt.datetime(2026, 12, 1, 8, 0, tzinfo=dt.timezone.utc)
DAY = 86400.0


def trial(clock: VirtualClock, log: list[tuple[str, float]]) -> Any:
    def note(what: str) -> None:
        log.append((what, (clock.now() - START.timestamp()) / DAY))

    def charge(ctx: WorkflowContext[Any]) -> str:
        note(f"charge#{ctx.attempt}")
        if ctx.attempt < 3:
            raise RuntimeError("card declined")
        return "paid"

    return (
        create_workflow("trial-30")
        .deadline(30 * DAY)
        .step("welcome", lambda ctx: note("welcome"))
        .step("trial", lambda ctx: Flux.sleep(14 * DAY))
        .step("remind", lambda ctx: note("remind"))
        .step("upgrade", lambda ctx: Flux.wait("upgrade", timeout=7 * DAY, default={"plan": "free"}))
        .step("charge", charge, retries=5, backoff=Backoff(initial=DAY, factor=2, max=4 * DAY, jitter=0))
        .step("idle", lambda ctx: Flux.sleep(30 * DAY))  # the deadline comes first
    )


def note_digest(clock: VirtualClock, log: list[tuple[str, float]]) -> None:
    log.append(("digest", (clock.now() - START.timestamp()) / DAY))


def test_thirty_days_at_once(make_engine: EngineFactory) -> None:
    clock = VirtualClock(START)
    sink = MemoryTraceSink()
    engine = make_engine(clock=clock, trace=sink)
    log: list[tuple[str, float]] = []
    flow = trial(clock, log)
    digest = create_workflow("daily-digest").step("send", lambda ctx: note_digest(clock, log))

    async def main() -> None:
        await engine.schedule(digest, cron="0 9 * * *", id="digest", timezone="Europe/Paris")
        first = await engine.execute(flow, {"user": "ada"}, id="ada")
        assert first.status is RunStatus.SUSPENDED
        await clock.advance(31 * DAY)
        result = await engine.get("ada")
        assert result.status is RunStatus.CANCELLED
        assert result.error_type == "DeadlineExceededError"
        assert result.outputs["upgrade"] == {"plan": "free"}
        assert result.outputs["charge"] == "paid"
        assert result.completed_at == START + dt.timedelta(days=30)
        assert result.created_at == START
        digests = [r for r in await engine.list(name="daily-digest", limit=100)]
        # 09:00 in Paris is 08:00 UTC in winter: slots come after the schedule is made (at START),
        # one a day, the last at the end of the 31 days advanced.
        assert sorted(r.id for r in digests) == [
            f"digest@{(START + dt.timedelta(days=d)):%Y-%m-%dT%H:%M:%S}Z" for d in range(1, 32)
        ]
        assert all(r.status is RunStatus.COMPLETED for r in digests)

    asyncio.run(main())
    assert [entry for entry in log if entry[0] != "digest"] == [
        ("welcome", 0), ("remind", 14), ("charge#1", 21), ("charge#2", 22), ("charge#3", 24),
    ]  # fmt: skip
    assert [day for what, day in log if what == "digest"] == list(range(1, 32))
    ada = [e for e in sink.events if e["workflowId"] == "ada"]
    types = [e["type"] for e in ada]
    assert types.count("step:retry") == 2 and "signal:timeout" in types and types[-1] == "workflow:error"
    starts = [e for e in sink.events if e["workflowName"] == "daily-digest" and e["type"] == "workflow:start"]
    assert len(starts) == 31 and all(e["meta"]["schedule"]["id"] == "digest" for e in starts)
    assert ada[-1]["timestamp"] == int((START.timestamp() + 30 * DAY) * 1000)
