"""examples/trial_reminders.py in-process, on a VirtualClock: the wake times and outcomes."""

from __future__ import annotations

import asyncio
import datetime as dt

from flux import FluxEngine, FluxSilentLogger, MemoryTraceSink, RunStatus
from flux.testing import VirtualClock

from .test_examples import events_of, load

START = dt.datetime(2026, 12, 2, 9, 0, tzinfo=dt.timezone.utc)


def test_ada_converts_and_bob_expires_on_day_fourteen() -> None:
    module = load("trial_reminders")
    sink = MemoryTraceSink()
    clock = VirtualClock(START)

    async def go() -> list[object]:
        engine = FluxEngine(clock=clock, trace=sink, logger=FluxSilentLogger())
        try:
            return list(await module.run(engine, clock, tag="t"))
        finally:
            await engine.close()

    ada0, _, ada, bob = asyncio.run(go())
    assert ada0.status is RunStatus.SUSPENDED and ada0.wake_at == START + dt.timedelta(days=11)  # type: ignore[attr-defined]
    assert ada.outputs["finish"] == {"outcome": "converted", "plan": "team"}  # type: ignore[attr-defined]
    assert bob.outputs["finish"] == {"outcome": "expired"}  # type: ignore[attr-defined]
    assert bob.completed_at == START + dt.timedelta(days=14)  # type: ignore[attr-defined]
    timeout = events_of(sink.events, "trial-bob-t", "signal:timeout")
    assert [e["output"] for e in timeout] == [{"upgraded": False}]
    start = events_of(sink.events, "trial-bob-t", "workflow:start")[0]
    assert start["meta"]["deadline"] == int((START + dt.timedelta(days=15)).timestamp() * 1000)
    assert [subject for to, subject in module.mailer.sent if to == "bob@example.com"][
        -1
    ] == "Your trial has ended"
