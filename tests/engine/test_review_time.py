"""Adversarial review of durable time and schedules (issue 10): each test here failed on the
code as it landed, and names the defect it guards against."""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from collections.abc import Callable
from typing import Any

import pytest

from flux import Flux, FluxEngine, RunStatus, ScheduleError, WorkflowDefinitionError, create_workflow
from flux.cron import parse_cron
from flux.testing import VirtualClock

EngineFactory = Callable[..., FluxEngine]
START = dt.datetime(2026, 12, 2, 9, 0, tzinfo=dt.timezone.utc)


# ------------------------------------------------------------ sleep_until past the year 9999


def test_sleep_until_a_moment_past_the_year_9999_utc_is_a_clear_error(make_engine: EngineFactory) -> None:
    """`datetime(9999, 12, 31, 23, 59)` five hours west of UTC is in the year 10000 in UTC:
    it crashed the machine with `ValueError: year 10000 is out of range`, leaving the run
    `running` with nobody driving it."""
    late = dt.datetime(9999, 12, 31, 23, 59, tzinfo=dt.timezone(dt.timedelta(hours=-5)))
    with pytest.raises(WorkflowDefinitionError, match="year 9999"):
        Flux.sleep_until(late)
    engine = make_engine(clock=VirtualClock(START))
    flow = create_workflow("far-future").step("s", lambda ctx: Flux.sleep_until(late), retries=0)

    async def main() -> None:
        result = await engine.execute(flow, id="r")
        assert result.status is RunStatus.FAILED
        assert "sleep_until" in str(result.error)

    asyncio.run(main())


def test_sleep_until_the_last_minute_of_9999_utc_is_stored() -> None:
    last = dt.datetime(9999, 12, 31, 23, 59, tzinfo=dt.timezone.utc)
    assert Flux.sleep_until(last).until == last.timestamp()


# ------------------------------------------------------------ cron: a step too long to read


def test_a_cron_step_of_thousands_of_digits_is_a_schedule_error_naming_the_field() -> None:
    """`int()` of more than 4,300 digits raises ValueError: it escaped as that, not as a
    ScheduleError naming the field."""
    with pytest.raises(ScheduleError, match="minute field"):
        parse_cron("*/" + "9" * 5000 + " * * * *")


# ------------------------------------------------------------ a worker and in-process sleeps


def test_a_worker_sleeping_one_run_in_process_does_not_make_another_due_run_late(tmp_path: Any) -> None:
    """`work()` drove each claimed run to its end before claiming the next, and a sleep
    within `inline_sleep` was slept in-process: while run A slept 3 s, run B, due 0.3 s in,
    waited for A's wake time. A worker must store the short sleep and take B when due."""
    url = f"sqlite:///{tmp_path / 'flux.db'}"
    woke: dict[str, float] = {}
    slow = (
        create_workflow("slow")
        .step("s", lambda ctx: Flux.sleep(3))
        .step("e", lambda ctx: woke.setdefault("slow", time.time()))
    )
    quick = (
        create_workflow("quick")
        .step("s", lambda ctx: Flux.sleep(0.3))
        .step("e", lambda ctx: woke.setdefault("quick", time.time()))
    )

    async def main() -> None:
        setup = FluxEngine(storage=url, inline_sleep=0)
        await setup.execute(quick, id="q")  # stored suspended, due in 0.3 s
        await setup.start(slow, id="s")  # pending: the worker takes it first
        await setup.close()
        worker = FluxEngine(storage=url)
        try:
            await worker.work([slow, quick], stop=lambda: len(woke) == 2, poll=0.05)
            slow_run = await worker.get("s")
            assert slow_run.status is RunStatus.COMPLETED
        finally:
            await worker.close()

    asyncio.run(main())
    assert woke["quick"] < woke["slow"], "the quick run waited for the slow run's in-process sleep"


# ------------------------------------------------------------ flux schedules add


FLOWS = "from flux import create_workflow\n\ntick = create_workflow('cli-tick').step('a', lambda ctx: 1)\n"


@pytest.fixture
def cli_url(tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> str:
    import sys

    (tmp_path / "review_time_flows.py").write_text(FLOWS)
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "review_time_flows", raising=False)
    return f"sqlite:///{tmp_path / 'flux.db'}"


def test_schedules_add_with_an_input_of_5000_digits_is_a_usage_error(
    cli_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """`json.loads` of an int past 4,300 digits raises ValueError, not JSONDecodeError: it
    escaped as a traceback."""
    from flux.cli import main

    args = ["schedules", "add", "--storage", cli_url, "--workflow", "review_time_flows:tick", "--every", "60"]
    assert main([*args, "--input", "1" * 5000]) != 0
    err = capsys.readouterr().err
    assert "--input" in err and "Traceback" not in err
    assert main(["schedules", "list", "--storage", cli_url]) == 1  # nothing stored, not even a database
    assert "does not exist" in capsys.readouterr().err


@pytest.mark.parametrize("zone", ["localtime", "posixrules"])
def test_a_timezone_that_names_the_machines_own_local_time_is_refused(zone: str) -> None:
    """`ZoneInfo('localtime')` reads /usr/share/zoneinfo/localtime, the local time of the
    machine that reads it: two workers on two machines would run one schedule at two
    different instants. It was accepted and stored."""
    with pytest.raises(ScheduleError, match="IANA"):
        parse_cron("0 2 * * *", zone)


# ------------------------------------------------------------ VirtualClock


def test_two_concurrent_advances_never_move_the_clock_back(make_engine: EngineFactory) -> None:
    """`advance(3)` ended with `self._now = target` while `advance(20)` had already moved
    the clock to a wake time at +10: the clock went 10 -> 3 -> 10 -> 20."""
    seen: list[float] = []

    class Watched(VirtualClock):
        def __setattr__(self, name: str, value: Any) -> None:
            if name == "_now":
                seen.append(value)
            super().__setattr__(name, value)

    clock = Watched(START)
    engine = make_engine(clock=clock)
    flow = create_workflow("nap").step("s", lambda ctx: Flux.sleep(10)).step("z", lambda ctx: 1)

    async def main() -> None:
        await engine.execute(flow, id="r")
        seen.clear()
        await asyncio.gather(clock.advance(20), clock.advance(3))
        assert (await engine.get("r")).status is RunStatus.COMPLETED

    asyncio.run(main())
    assert seen == sorted(seen), f"the clock went back: {[s - START.timestamp() for s in seen]}"
    assert seen[-1] == START.timestamp() + 20


@pytest.mark.parametrize(
    "seconds", [10**400, 1e300, 9000 * 366 * 86400.0], ids=["huge-int", "1e300", "9000-years"]
)
def test_advancing_past_what_a_datetime_can_hold_is_a_flux_error(seconds: float) -> None:
    """`advance(10**400)` raised OverflowError from `math.isfinite`; `advance(1e300)` moved
    the clock to where `clock.datetime()` and every wake time raise."""
    from flux import FluxError

    clock = VirtualClock(START)
    with pytest.raises(FluxError, match="advance"):
        asyncio.run(clock.advance(seconds))
    assert clock.now() == START.timestamp()


def test_a_virtual_clock_cannot_start_where_a_sleep_would_wake_past_the_year_9999() -> None:
    """`VirtualClock(start=datetime(9999, 12, 31, 23, 0))` and a two-hour sleep crashed the
    run machine with `ValueError: year 10000 is out of range`."""
    from flux import FluxError

    with pytest.raises(FluxError, match="start"):
        VirtualClock(dt.datetime(9999, 12, 31, 23, 0, tzinfo=dt.timezone.utc))


# ------------------------------------------------------------ a due run a worker cannot run


def test_a_due_run_the_worker_cannot_run_does_not_starve_the_others(tmp_path: Any) -> None:
    """A run sleeping under version 1 of a workflow whose deployed definition now differs
    (a `WorkflowVersionError`) is the earliest due run: the worker claimed it, failed,
    released it and claimed it again, every poll, forever; no other run (due or pending)
    was ever taken. It must be left aside (held until its lease expires) and the others run."""
    url = f"sqlite:///{tmp_path / 'flux.db'}"
    done: list[str] = []
    old = (
        create_workflow("changed").version("1")
        .step("a", lambda ctx: 1)
        .step("s", lambda ctx: Flux.sleep(0.1))
        .step("b", lambda ctx: 2)
    )  # fmt: skip
    new = (
        create_workflow("changed").version("2")
        .step("a", lambda ctx: 1)
        .step("inserted", lambda ctx: 3)
        .step("s", lambda ctx: Flux.sleep(0.1))
        .step("b", lambda ctx: 2)
    )  # fmt: skip
    sleeper = (
        create_workflow("sleeper")
        .step("s", lambda ctx: Flux.sleep(0.2))
        .step("b", lambda ctx: done.append("due"))
    )
    waiting = create_workflow("waiting").step("b", lambda ctx: done.append("pending"))

    async def main() -> None:
        setup = FluxEngine(storage=url, inline_sleep=0)
        await setup.execute(old, id="old")  # due first
        await setup.execute(sleeper, id="due")
        await setup.start(waiting, id="pending")
        await setup.close()
        worker = FluxEngine(storage=url, logger=__import__("flux").FluxSilentLogger())
        try:
            await worker.work([new, sleeper, waiting], stop=lambda: len(done) == 2, poll=0.02)
            assert (await worker.get("old")).status is RunStatus.SUSPENDED  # left as it was
        finally:
            await worker.close()

    asyncio.run(asyncio.wait_for(main(), 20))
    assert sorted(done) == ["due", "pending"]


# ------------------------------------------------------------ schedule(): the same definition


def test_the_same_schedule_with_its_input_keys_in_another_order_is_the_same_schedule(
    make_engine: EngineFactory,
) -> None:
    """A JSON object has no order: `{"a": 1, "b": 2}` and `{"b": 2, "a": 1}` are one input.
    The stored JSON text was compared as text, so a deploy that built the dict in another
    order (every worker calls `schedule()` at startup) got a `ScheduleConflictError`."""
    from flux import ScheduleConflictError

    engine = make_engine(clock=VirtualClock(START))
    flow = create_workflow("report").step("a", lambda ctx: ctx.input)

    async def main() -> None:
        await engine.schedule(flow, every=3600, input={"a": 1, "b": [1, 2]}, id="s")
        await engine.schedule(flow, every=3600, input={"b": [1, 2], "a": 1}, id="s")
        for other in ({"a": 1.0, "b": [1, 2]}, {"a": True, "b": [1, 2]}, {"a": 1, "b": [2, 1]}):
            with pytest.raises(ScheduleConflictError):  # still another input
                await engine.schedule(flow, every=3600, input=other, id="s")
        assert len(await engine.schedules()) == 1

    asyncio.run(main())


def test_the_longest_sleep_from_the_latest_virtual_moment_is_still_a_datetime() -> None:
    """The bound of the clock leaves room for a sleep of a hundred years (the longest)."""
    from flux.signals import MAX_SECONDS
    from flux.testing import _LAST

    assert dt.datetime.fromtimestamp(_LAST + MAX_SECONDS, dt.timezone.utc).year <= 9999


def test_the_same_cron_in_another_case_or_spacing_is_the_same_schedule(make_engine: EngineFactory) -> None:
    """`mon` and `MON` name one day, `@daily` and `@DAILY` one macro: a deploy that writes the
    expression another way is the same schedule, not a `ScheduleConflictError`."""
    from flux import ScheduleConflictError

    engine = make_engine(clock=VirtualClock(START))
    flow = create_workflow("report").step("a", lambda ctx: ctx.input)

    async def main() -> None:
        await engine.schedule(flow, cron="0 9 * jan mon-fri", id="s")
        await engine.schedule(flow, cron="0  9 * JAN MON-FRI", id="s")
        await engine.schedule(flow, cron="@daily", id="d")
        await engine.schedule(flow, cron="@DAILY", id="d")
        with pytest.raises(ScheduleConflictError):  # still another time
            await engine.schedule(flow, cron="0 10 * jan mon-fri", id="s")
        assert len(await engine.schedules()) == 2

    asyncio.run(main())
