"""engine.schedule / unschedule / schedules (SPEC §10): what is stored, the errors at
`schedule()` (each names the schedule and the field, and stores nothing), and the runs a
worker's tick starts for the due slots."""

from __future__ import annotations

import asyncio
import math
from datetime import datetime, timezone
from typing import Any

import pytest

from flux import (
    FluxEngine,
    MemoryTraceSink,
    RunConflictError,
    RunStatus,
    Schedule,
    ScheduleConflictError,
    ScheduleError,
    create_workflow,
)
from flux.events import EventType

from .conftest import EngineFactory

T0 = int(datetime(2026, 12, 2, 1, 0, tzinfo=timezone.utc).timestamp())


class HandClock:
    """A clock a test sets by hand (the engine's `Clock` protocol)."""

    def __init__(self, now: float) -> None:
        self.t = now

    def now(self) -> float:
        return self.t

    async def sleep(self, seconds: float) -> None:
        self.t += max(0.0, seconds)
        await asyncio.sleep(0)


def report_flow() -> Any:
    return create_workflow("report").step("build", lambda ctx: {"kind": ctx.input["kind"]})


def engine_at(make_engine: EngineFactory, now: float, **kw: Any) -> tuple[FluxEngine, HandClock]:
    clock = HandClock(now)
    return make_engine(clock=clock, **kw), clock


def test_schedule_is_stored_and_listed(make_engine: EngineFactory) -> None:
    engine, _ = engine_at(make_engine, T0 + 0.5)
    flow = report_flow()
    made = engine.schedule_sync(
        flow, cron="0  2 * * *", input={"kind": "daily"}, id="nightly", timezone="Europe/Paris"
    )
    assert isinstance(made, Schedule)
    assert (made.id, made.workflow, made.cron, made.every) == ("nightly", "report", "0 2 * * *", None)
    assert (made.timezone, made.catch_up, made.input) == ("Europe/Paris", "latest", {"kind": "daily"})
    # 02:00 in Paris is 01:00Z in December: today's slot has passed, tomorrow's is next
    assert made.next_due == datetime(2026, 12, 3, 1, 0, tzinfo=timezone.utc)
    assert made.last_slot is None
    engine.schedule_sync(flow, every=3600, id="hourly")
    listed = make_engine().schedules_sync()
    assert [s.id for s in listed] == ["hourly", "nightly"]
    assert listed[1] == made


def test_the_same_definition_again_is_a_no_op(make_engine: EngineFactory) -> None:
    engine, clock = engine_at(make_engine, T0)
    flow = report_flow()
    first = engine.schedule_sync(flow, cron="0 2 * * *", input={"kind": "d"}, id="nightly")
    clock.t += 86400 * 3  # a redeploy days later: the stored schedule (and its bookkeeping) stays
    again = engine.schedule_sync(flow, cron="0 2 * * *", input={"kind": "d"}, id="nightly")
    assert again == first
    assert len(engine.schedules_sync()) == 1


@pytest.mark.parametrize(
    "change",
    [
        {"cron": "0 3 * * *"},
        {"input": {"kind": "weekly"}},
        {"timezone": "Europe/Paris"},
        {"catch_up": "all"},
        {"cron": None, "every": 60},
    ],
)
def test_another_definition_under_one_id_is_refused_naming_both(
    make_engine: EngineFactory, change: dict[str, Any]
) -> None:
    engine, _ = engine_at(make_engine, T0)
    flow = report_flow()
    base: dict[str, Any] = {"cron": "0 2 * * *", "input": {"kind": "d"}, "id": "nightly"}
    engine.schedule_sync(flow, **base)
    with pytest.raises(ScheduleConflictError) as info:
        engine.schedule_sync(flow, **{**base, **change})
    message = str(info.value)
    assert "schedule 'nightly' exists with another definition" in message
    assert "stored workflow 'report', cron='0 2 * * *'" in message
    assert "given workflow 'report'" in message
    (stored,) = engine.schedules_sync()
    assert stored.cron == "0 2 * * *" and stored.input == {"kind": "d"}


def test_another_workflow_under_one_id_is_refused(make_engine: EngineFactory) -> None:
    engine, _ = engine_at(make_engine, T0)
    engine.schedule_sync(report_flow(), every=60, id="job", input={"kind": "x"})
    other = create_workflow("other").step("s", lambda ctx: None)
    with pytest.raises(ScheduleConflictError, match=r"stored workflow 'report'.*given workflow 'other'"):
        engine.schedule_sync(other, every=60, id="job")


class Unserialisable:
    pass


BAD: list[tuple[dict[str, Any], str]] = [
    ({"cron": "61 * * * *"}, "schedule 'bad': cron '61 * * * *': minute field '61' out of range 0-59"),
    ({"cron": "0 0 * * FUNDAY"}, "schedule 'bad': cron '0 0 * * FUNDAY': day-of-week field 'FUNDAY'"),
    ({"cron": "0 2 * * *", "timezone": "Mars/Olympus"}, "schedule 'bad': unknown timezone 'Mars/Olympus'"),
    ({"cron": "0 2 * * *", "timezone": "Europe/Paris\x00"}, "unknown timezone 'Europe/Paris\\x00'"),
    ({"cron": "0 2 * * *", "every": 60}, "schedule 'bad': give exactly one of cron= and every="),
    ({}, "schedule 'bad': give exactly one of cron= and every="),
    (
        {"every": 0},
        "schedule 'bad': every=0; must be a whole number of seconds from 1 to 315532800 (10 years)",
    ),
    ({"every": 315532801}, "every=315532801; must be"),
    ({"every": 10**5000}, "every=<an int of over 4000 digits>; must be"),
    ({"every": 10**70}, "every=<an int of 71 digits>; must be"),
    ({"every": 1e300}, "every=1e+300; must be"),
    ({"every": -5}, "every=-5; must be"),
    ({"every": math.inf}, "every=inf; must be"),
    ({"every": math.nan}, "every=nan; must be"),
    ({"every": 0.5}, "every=0.5; must be"),
    ({"every": True}, "every=True; must be"),
    ({"every": "60"}, "every='60'; must be"),
    ({"every": 60, "timezone": "Europe/Paris"}, "timezone='Europe/Paris' applies to cron= only"),
    (
        {"every": 60, "catch_up": "some"},
        "schedule 'bad': catch_up='some'; use one of 'latest', 'all', 'none'",
    ),
    ({"every": 60, "input": {"x": Unserialisable()}}, "schedule 'bad': its input is not usable"),
    ({"every": 60, "id": "a\x00b"}, "schedule id 'a\\x00b' names its runs"),
    ({"every": 60, "id": "a\ud800"}, "schedule id 'a\\ud800' names its runs"),
    ({"every": 60, "id": ""}, "schedule id '' names its runs"),
    ({"every": 60, "id": "x" * 300}, "the id is longer than 234 characters"),
    ({"every": 60, "id": 7}, "schedule id 7: an id must be a string"),
    ({"every": 60, "id": 10**5000}, "schedule id <an int of over 4000 digits>: an id must be a string"),
    ({"every": 60, "catch_up": 10**5000}, "catch_up=<an int of over 4000 digits>; use one of"),
    ({"cron": "0 2 * * *", "timezone": 10**5000}, "unknown timezone <an int of over 4000 digits>"),
    ({"cron": 10**5000}, "a cron expression must be a string, got <an int of over 4000 digits>"),
]


@pytest.mark.parametrize(("kwargs", "message"), BAD)
def test_bad_input_is_refused_and_nothing_is_stored(
    make_engine: EngineFactory, kwargs: dict[str, Any], message: str
) -> None:
    engine, _ = engine_at(make_engine, T0)
    kwargs = {"id": "bad", "input": {"kind": "d"}, **kwargs}
    with pytest.raises(ScheduleError) as info:
        engine.schedule_sync(report_flow(), **kwargs)
    assert message in str(info.value)
    assert engine.schedules_sync() == []


def test_terminal_escapes_in_an_id_are_shown_escaped(make_engine: EngineFactory) -> None:
    engine, _ = engine_at(make_engine, T0)
    flow = report_flow()
    engine.schedule_sync(flow, every=60, id="\x1b[2Jjob", input={"kind": "a"})
    with pytest.raises(ScheduleConflictError) as info:
        engine.schedule_sync(flow, every=120, id="\x1b[2Jjob", input={"kind": "a"})
    assert "\x1b" not in str(info.value) and "\\x1b[2Jjob" in str(info.value)


def test_unschedule(make_engine: EngineFactory) -> None:
    engine, _ = engine_at(make_engine, T0)
    engine.schedule_sync(report_flow(), every=60, id="job", input={"kind": "a"})
    assert engine.unschedule_sync("job") is True
    assert engine.unschedule_sync("job") is False
    assert engine.schedules_sync() == []
    with pytest.raises(ScheduleError, match="names its runs"):
        engine.unschedule_sync("a\x00")


def test_the_id_defaults_to_the_workflow_name(make_engine: EngineFactory) -> None:
    engine, _ = engine_at(make_engine, T0)
    assert engine.schedule_sync(report_flow(), every=60, input={"kind": "a"}).id == "report"


# ------------------------------------------------------------------ the tick


def test_a_due_slot_starts_one_pending_run_with_the_slot_id(make_engine: EngineFactory) -> None:
    sink = MemoryTraceSink()
    engine, clock = engine_at(make_engine, T0 - 30, trace=sink)
    flow = report_flow()
    engine.schedule_sync(flow, every=60, id="minutely", input={"kind": "m"})
    assert asyncio.run(engine._fire_schedules(clock.now())) == 0  # not due yet
    assert asyncio.run(engine._next_schedule_due()) == T0
    clock.t = T0 + 0.25
    assert asyncio.run(engine._fire_schedules(clock.now())) == 1
    assert asyncio.run(engine._fire_schedules(clock.now())) == 0  # handled: nothing twice
    run = engine.get_sync("minutely@2026-12-02T01:00:00Z")
    assert run.status is RunStatus.PENDING and run.input == {"kind": "m"}
    (stored,) = engine.schedules_sync()
    assert stored.last_slot == datetime(2026, 12, 2, 1, 0, tzinfo=timezone.utc)
    assert stored.next_due == datetime(2026, 12, 2, 1, 1, tzinfo=timezone.utc)
    assert engine.work_sync([flow], burst=True) == 1
    assert engine.get_sync("minutely@2026-12-02T01:00:00Z").status is RunStatus.COMPLETED
    (start,) = [e for e in sink.events if e["type"] == EventType.WORKFLOW_START]
    assert start["meta"]["schedule"] == {"id": "minutely", "slot": "2026-12-02T01:00:00Z"}
    assert start["workflowId"] == "minutely@2026-12-02T01:00:00Z"


def test_a_run_not_started_by_a_schedule_has_no_schedule_meta(make_engine: EngineFactory) -> None:
    sink = MemoryTraceSink()
    engine = make_engine(trace=sink)
    engine.execute_sync(report_flow(), {"kind": "x"}, id="x@2026-12-02T01:00:00Z")
    (start,) = [e for e in sink.events if e["type"] == EventType.WORKFLOW_START]
    assert "schedule" not in start["meta"]


def test_the_work_loop_ticks_the_schedules(make_engine: EngineFactory) -> None:
    engine, _ = engine_at(make_engine, T0 + 0.5)
    flow = report_flow()
    engine.schedule_sync(flow, every=1, id="s", input={"kind": "w"})
    engine.schedule_sync(flow, every=1, id="s2", input={"kind": "w"})
    clock = engine.clock
    assert isinstance(clock, HandClock)
    clock.t = T0 + 1.5
    assert engine.work_sync([flow], burst=True) == 2
    assert sorted(r.id for r in engine.list_sync()) == ["s2@2026-12-02T01:00:01Z", "s@2026-12-02T01:00:01Z"]


def test_two_engines_handling_one_slot_start_one_run(make_engine: EngineFactory) -> None:
    a, clock = engine_at(make_engine, T0 - 1)
    b = make_engine(clock=clock)
    flow = report_flow()
    a.schedule_sync(flow, every=60, id="m", input={"kind": "m"})
    b.schedule_sync(flow, every=60, id="m", input={"kind": "m"})
    clock.t = T0 + 1
    (due,) = asyncio.run(a.storage.due_schedules(["report"], clock.t))
    # b read the schedule before a moved it on: both handle the slot, one run is created
    assert asyncio.run(a._fire_schedules(clock.t)) == 1
    from flux.scheduler import _start_slot

    assert asyncio.run(_start_slot(b, flow, due, T0)) == 0
    assert [r.id for r in a.list_sync()] == ["m@2026-12-02T01:00:00Z"]


def test_a_slot_id_taken_by_another_run_is_logged_and_the_schedule_goes_on(
    make_engine: EngineFactory,
) -> None:
    class Errors:
        def __init__(self) -> None:
            self.lines: list[str] = []

        def info(self, message: str, **extra: Any) -> None: ...
        def warn(self, message: str, **extra: Any) -> None: ...
        def error(self, message: str, **extra: Any) -> None:
            self.lines.append(message)

    log = Errors()
    engine, clock = engine_at(make_engine, T0 - 1, logger=log)
    flow = report_flow()
    engine.schedule_sync(flow, every=60, id="m", input={"kind": "m"})
    engine.start_sync(flow, {"kind": "other"}, id="m@2026-12-02T01:00:00Z")
    clock.t = T0 + 1
    assert asyncio.run(engine._fire_schedules(clock.t)) == 0
    assert len(log.lines) == 1 and "the run of slot 2026-12-02T01:00:00Z not started" in log.lines[0]
    assert "different input" in log.lines[0]
    (stored,) = engine.schedules_sync()
    assert stored.next_due == datetime(2026, 12, 2, 1, 1, tzinfo=timezone.utc)
    with pytest.raises(RunConflictError):
        engine.start_sync(flow, {"kind": "m"}, id="m@2026-12-02T01:00:00Z")


def test_only_the_workflows_an_engine_knows_are_fired(make_engine: EngineFactory) -> None:
    app, clock = engine_at(make_engine, T0 - 1)
    app.schedule_sync(report_flow(), every=60, id="m", input={"kind": "m"})
    worker = make_engine(clock=clock)  # knows no workflow: leaves the schedule to others
    clock.t = T0 + 1
    assert asyncio.run(worker._fire_schedules(clock.t)) == 0
    assert asyncio.run(worker._next_schedule_due()) is None
    assert asyncio.run(app._fire_schedules(clock.t)) == 1


@pytest.mark.parametrize(
    ("catch_up", "slots"),
    [
        ("latest", ["01:03:00", "01:04:00"]),
        ("all", ["01:00:00", "01:01:00", "01:02:00", "01:03:00", "01:04:00"]),
        ("none", ["01:04:00"]),
    ],
)
def test_catch_up_after_every_worker_was_down(
    make_engine: EngineFactory, catch_up: str, slots: list[str]
) -> None:
    engine, clock = engine_at(make_engine, T0 - 1)
    flow = report_flow()
    engine.schedule_sync(flow, every=60, id="m", input={"kind": "m"}, catch_up=catch_up)
    clock.t = T0 + 4 * 60 + 10  # no worker from 01:00 to 01:04:10; 01:04 is on time
    assert asyncio.run(engine._fire_schedules(clock.t)) == len(slots)
    assert sorted(r.id for r in engine.list_sync()) == [f"m@2026-12-02T{s}Z" for s in slots]
    (stored,) = engine.schedules_sync()
    assert stored.next_due == datetime(2026, 12, 2, 1, 5, tzinfo=timezone.utc)
    assert stored.last_slot == (datetime(2026, 12, 2, 1, 4, tzinfo=timezone.utc))
    clock.t = T0 + 5 * 60 + 1  # and then the schedule goes on
    assert asyncio.run(engine._fire_schedules(clock.t)) == 1


def test_a_stored_schedule_that_cannot_be_read_is_logged_and_the_others_go_on(
    make_engine: EngineFactory,
) -> None:
    from flux.schedules import ScheduleRecord

    class Errors:
        def __init__(self) -> None:
            self.lines: list[str] = []

        def info(self, message: str, **extra: Any) -> None: ...
        def warn(self, message: str, **extra: Any) -> None: ...
        def error(self, message: str, **extra: Any) -> None:
            self.lines.append(message)

    log = Errors()
    engine, clock = engine_at(make_engine, T0 - 1, logger=log)
    flow = report_flow()
    engine.schedule_sync(flow, every=60, id="good", input={"kind": "g"})
    bad = ScheduleRecord("bad", "report", "61 * * * *", None, "UTC", "latest", '{"kind":"b"}', next_due=T0)
    assert asyncio.run(engine.storage.put_schedule(bad)) is None  # written by hand, or by a newer Flux
    clock.t = T0 + 1
    assert asyncio.run(engine._fire_schedules(clock.t)) == 1
    assert [r.id for r in engine.list_sync()] == ["good@2026-12-02T01:00:00Z"]
    assert log.lines == [
        "schedule 'bad': cannot be read: cron '61 * * * *': minute field '61' out of range 0-59"
    ]
