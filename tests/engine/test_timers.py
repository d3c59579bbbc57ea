"""Durable time (SPEC §10): sleeps, waits with a timeout, deadlines, on a VirtualClock.

Every test here runs on memory and on SQLite, and none waits in real time: the clock moves
only when the test says so.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Callable
from typing import Any

import pytest

from flux import (
    Backoff,
    DeadlineExceededError,
    Flux,
    FluxEngine,
    MemoryTraceSink,
    RunStateError,
    RunStatus,
    SignalTimeoutError,
    StepStatus,
    WorkflowContext,
    create_workflow,
)
from flux.events import EventType as E
from flux.testing import VirtualClock

EngineFactory = Callable[..., FluxEngine]
START = dt.datetime(2026, 12, 2, 9, 0, tzinfo=dt.timezone.utc)
DAY = 86400.0


def at(seconds: float) -> dt.datetime:
    return START + dt.timedelta(seconds=seconds)


def kinds(sink: MemoryTraceSink, run_id: str) -> list[str]:
    return [e["type"] for e in sink.events if e["workflowId"] == run_id]


def of(sink: MemoryTraceSink, run_id: str, kind: E) -> list[dict[str, Any]]:
    return [e for e in sink.events if e["workflowId"] == run_id and e["type"] == kind.value]


# ---------------------------------------------------------------------- sleeps


def test_a_sleep_suspends_the_run_until_its_wake_time(make_engine: EngineFactory) -> None:
    clock = VirtualClock(START)
    sink = MemoryTraceSink()
    engine = make_engine(clock=clock, trace=sink)
    seen: list[float] = []
    flow = (
        create_workflow("cool-off")
        .step("sleep", lambda ctx: Flux.sleep(3600))
        .step("after", lambda ctx: seen.append(clock.now()) or "done")
    )

    async def main() -> None:
        result = await engine.execute(flow, id="r1")
        assert result.status is RunStatus.SUSPENDED
        assert result.wake_at == at(3600)
        assert result.waiting_for is None
        assert result.history[0].status is StepStatus.SUSPENDED
        await clock.advance(3599)
        assert (await engine.get("r1")).status is RunStatus.SUSPENDED
        assert seen == []
        await clock.advance(1)
        done = await engine.get("r1")
        assert done.status is RunStatus.COMPLETED
        assert done.outputs == {"sleep": None, "after": "done"}
        assert done.wake_at is None
        assert seen == [at(3600).timestamp()]

    asyncio.run(main())
    sleep = of(sink, "r1", E.STEP_SLEEP)
    assert [e["wakeAt"] for e in sleep] == [int(at(3600).timestamp() * 1000)]
    assert isinstance(sleep[0]["wakeAt"], int)
    assert kinds(sink, "r1") == [
        "workflow:start", "step:start", "step:sleep", "step:wake", "step:start", "step:complete",
        "workflow:complete",
    ]  # fmt: skip
    # trace timestamps come from the engine's clock
    assert of(sink, "r1", E.STEP_WAKE)[0]["timestamp"] == int(at(3600).timestamp() * 1000)


def test_sleep_until_an_aware_datetime_and_a_past_moment_runs_at_once(make_engine: EngineFactory) -> None:
    clock = VirtualClock(START)
    sink = MemoryTraceSink()
    engine = make_engine(clock=clock, trace=sink)
    paris = dt.timezone(dt.timedelta(hours=1))
    flow = create_workflow("until").step(
        "s", lambda ctx: Flux.sleep_until(dt.datetime.fromisoformat(ctx.input["when"]).astimezone(paris))
    )

    async def main() -> None:
        later = await engine.execute(flow, {"when": at(DAY).isoformat()}, id="later")
        assert later.status is RunStatus.SUSPENDED and later.wake_at == at(DAY)
        past = await engine.execute(flow, {"when": at(-DAY).isoformat()}, id="past")
        assert past.status is RunStatus.COMPLETED  # documented: a moment already past runs at once
        await clock.advance(DAY)
        assert (await engine.get("later")).status is RunStatus.COMPLETED

    asyncio.run(main())
    assert kinds(sink, "past") == ["workflow:start", "step:start", "step:sleep", "step:wake", "step:complete",
                                   "workflow:complete"]  # fmt: skip


def test_a_short_sleep_is_slept_in_process_by_execute(make_engine: EngineFactory) -> None:
    clock = VirtualClock(START)
    engine = make_engine(clock=clock, inline_sleep=5.0)
    flow = create_workflow("short").step("s", lambda ctx: Flux.sleep(3)).step("t", lambda ctx: "after")

    async def main() -> None:
        # execute holds the run while it sleeps: the clock moves under it
        result = await clock.run(engine.execute(flow, id="short"))
        assert result.status is RunStatus.COMPLETED
        assert clock.now() == at(3).timestamp()
        # beyond inline_sleep it is returned suspended at once
        long = await engine.execute(create_workflow("long").step("s", lambda ctx: Flux.sleep(5.5)), id="long")
        assert long.status is RunStatus.SUSPENDED

    asyncio.run(main())


def test_a_sleep_in_process_is_cancelled_by_engine_cancel(make_engine: EngineFactory) -> None:
    clock = VirtualClock(START)
    engine = make_engine(clock=clock)
    undone: list[str] = []
    flow = (
        create_workflow("nap")
        .step("book", lambda ctx: "booked", compensate=lambda ctx: undone.append("book"))
        .step("s", lambda ctx: Flux.sleep(4))
    )

    async def main() -> None:
        task = asyncio.ensure_future(engine.execute(flow, id="nap"))
        await clock.advance(1)
        assert (await engine.get("nap")).status is RunStatus.RUNNING
        result = await engine.cancel("nap", reason="no")
        assert result.status is RunStatus.CANCELLED
        assert (await task).status is RunStatus.CANCELLED

    asyncio.run(main())
    assert undone == ["book"]


# ---------------------------------------------------------------------- waits with a timeout


def _approval(**wait: Any) -> Any:
    undone: list[str] = []
    flow = (
        create_workflow("approval")
        .step("ask", lambda ctx: "asked", compensate=lambda ctx: undone.append("ask"))
        .step("approval", lambda ctx: Flux.wait("approval", **wait))
        .step("ship", lambda ctx: {"approval": ctx.outputs["approval"]})
    )
    return flow, undone


def test_a_wait_that_times_out_fails_with_signal_timeout_error_and_the_saga_follows(
    make_engine: EngineFactory,
) -> None:
    clock = VirtualClock(START)
    sink = MemoryTraceSink()
    engine = make_engine(clock=clock, trace=sink, default_retries=3)
    flow, undone = _approval(timeout=DAY)

    async def main() -> None:
        result = await engine.execute(flow, id="a1")
        assert result.status is RunStatus.SUSPENDED
        assert result.waiting_for == "approval" and result.wake_at == at(DAY)
        await clock.advance(DAY)
        done = await engine.get("a1")
        assert done.status is RunStatus.ROLLED_BACK
        assert done.error_type == "SignalTimeoutError"
        assert done.failed_step == "approval"
        assert "approval" in (done.error or "") and "a1" in (done.error or "")
        assert done.history[1].attempts == 1  # not retried

    asyncio.run(main())
    assert undone == ["ask"]
    suspend = of(sink, "a1", E.STEP_SUSPEND)[0]
    assert suspend["wakeAt"] == int(at(DAY).timestamp() * 1000) and suspend["signal"] == "approval"
    timeout = of(sink, "a1", E.SIGNAL_TIMEOUT)[0]
    assert timeout["errorType"] == "SignalTimeoutError" and timeout["signal"] == "approval"
    assert timeout["wakeAt"] == suspend["wakeAt"]


def test_a_wait_with_a_default_completes_with_it(make_engine: EngineFactory) -> None:
    clock = VirtualClock(START)
    sink = MemoryTraceSink()
    engine = make_engine(clock=clock, trace=sink)
    flow, undone = _approval(timeout=DAY, default={"approved": False})

    async def main() -> None:
        await engine.execute(flow, id="d1")
        await clock.advance(DAY)
        done = await engine.get("d1")
        assert done.status is RunStatus.COMPLETED
        assert done.outputs["approval"] == {"approved": False}
        assert done.outputs["ship"] == {"approval": {"approved": False}}

    asyncio.run(main())
    assert undone == []
    assert of(sink, "d1", E.SIGNAL_TIMEOUT)[0]["output"] == {"approved": False}


def test_a_signal_before_the_timeout_wins(make_engine: EngineFactory) -> None:
    clock = VirtualClock(START)
    engine = make_engine(clock=clock)
    flow, _ = _approval(timeout=DAY)

    async def main() -> None:
        await engine.execute(flow, id="s1")
        await clock.advance(DAY - 1)
        result = await engine.signal(flow, "s1", "approval", {"ok": True})
        assert result.status is RunStatus.COMPLETED and result.wake_at is None
        await clock.advance(2 * DAY)  # the old wake time means nothing now
        assert (await engine.get("s1")).outputs["ship"] == {"approval": {"ok": True}}

    asyncio.run(main())


class SetClock:
    """A clock set by hand, with nothing that runs due work: as if no worker were running."""

    def __init__(self, now: float) -> None:
        self.t = now

    def now(self) -> float:
        return self.t

    async def sleep(self, seconds: float) -> None:  # pragma: no cover - nothing sleeps here
        raise AssertionError("nothing should sleep")


@pytest.mark.parametrize("default", [False, True])
def test_a_signal_just_after_the_timeout_raises_and_the_outcome_is_the_timeouts(
    make_engine: EngineFactory, default: bool
) -> None:
    clock = SetClock(START.timestamp())
    first = make_engine(clock=clock)
    other = make_engine(clock=clock)  # another process's engine on the same storage
    flow, _ = _approval(timeout=60, **({"default": "late"} if default else {}))

    async def main() -> None:
        assert (await first.execute(flow, id="late")).status is RunStatus.SUSPENDED
        clock.t = START.timestamp() + 60.001  # just past; no worker has processed the timeout
        with pytest.raises(RunStateError, match=r"'late'.*timed out"):
            await other.signal(flow, "late", "approval", {"ok": True})
        result = await first.get("late")
        if default:
            assert result.status is RunStatus.COMPLETED and result.outputs["approval"] == "late"
        else:
            assert result.status is RunStatus.ROLLED_BACK and result.error_type == "SignalTimeoutError"
        with pytest.raises(RunStateError):  # and again: nothing changes
            await first.signal(flow, "late", "approval", {"ok": True})

    asyncio.run(main())


# ---------------------------------------------------------------------- deadlines


def test_a_sleeping_run_wakes_at_its_deadline_to_be_cancelled(make_engine: EngineFactory) -> None:
    clock = VirtualClock(START)
    sink = MemoryTraceSink()
    engine = make_engine(clock=clock, trace=sink)
    undone: list[str] = []
    flow = (
        create_workflow("trial")
        .deadline(14 * DAY)
        .step("welcome", lambda ctx: "hi", compensate=lambda ctx: undone.append("welcome"))
        .step("sleep", lambda ctx: Flux.sleep(30 * DAY))
    )

    async def main() -> None:
        result = await engine.execute(flow, id="t")
        assert result.deadline == at(14 * DAY)
        await clock.advance(14 * DAY - 1)
        assert (await engine.get("t")).status is RunStatus.SUSPENDED
        await clock.advance(1)
        done = await engine.get("t")
        assert done.status is RunStatus.CANCELLED
        assert done.error_type == "DeadlineExceededError"
        assert "deadline" in (done.error or "")

    asyncio.run(main())
    assert undone == ["welcome"]
    assert of(sink, "t", E.WORKFLOW_START)[0]["meta"]["deadline"] == int(at(14 * DAY).timestamp() * 1000)
    error = of(sink, "t", E.WORKFLOW_ERROR)[0]
    assert error["errorType"] == "DeadlineExceededError" and error["status"] == "cancelled"


def test_a_deadline_cancels_an_async_handler_in_flight(make_engine: EngineFactory) -> None:
    clock = VirtualClock(START)
    engine = make_engine(clock=clock)
    after: list[str] = []

    async def slow(ctx: WorkflowContext[Any]) -> None:
        await clock.sleep(3600)  # handler code that waits on the same clock
        after.append("never")

    flow = create_workflow("slow").deadline(60).step("slow", slow)

    async def main() -> None:
        task = asyncio.ensure_future(engine.execute(flow, id="slow"))
        await clock.advance(60)
        result = await task
        assert result.status is RunStatus.CANCELLED
        assert result.error_type == "DeadlineExceededError"
        assert result.history[0].status is StepStatus.CANCELLED

    asyncio.run(main())
    assert after == []


def test_a_run_waiting_for_a_signal_is_cancelled_at_its_deadline(make_engine: EngineFactory) -> None:
    clock = VirtualClock(START)
    engine = make_engine(clock=clock)
    flow = create_workflow("w").deadline(DAY).step("w", lambda ctx: Flux.wait("go"))

    async def main() -> None:
        assert (await engine.execute(flow, id="w")).status is RunStatus.SUSPENDED
        await clock.advance(DAY)
        assert (await engine.get("w")).error_type == "DeadlineExceededError"
        with pytest.raises(RunStateError):
            await engine.signal(flow, "w", "go")

    asyncio.run(main())


def test_a_pending_run_past_its_deadline_is_cancelled_when_taken(make_engine: EngineFactory) -> None:
    clock = VirtualClock(START)
    engine = make_engine(clock=clock)
    ran: list[str] = []
    flow = create_workflow("p").deadline(10).step("s", lambda ctx: ran.append("s"))

    async def main() -> None:
        await engine.start(flow, id="p")
        clock._now += 11  # moved with no work done: as a worker that starts late
        assert await engine.work([flow], burst=True) == 1
        assert (await engine.get("p")).error_type == "DeadlineExceededError"

    asyncio.run(main())
    assert ran == []


# ---------------------------------------------------------------------- backoff on the clock


def test_retries_wait_their_backoff_on_the_engine_clock(make_engine: EngineFactory) -> None:
    clock = VirtualClock(START)
    engine = make_engine(clock=clock, default_backoff=Backoff(initial=60, factor=2, max=3600, jitter=0))
    times: list[float] = []

    def flaky(ctx: WorkflowContext[Any]) -> str:
        times.append(clock.now() - START.timestamp())
        if ctx.attempt < 3:
            raise RuntimeError("flaky")
        return "ok"

    flow = create_workflow("flaky").step("f", flaky, retries=3)

    async def main() -> None:
        result = await clock.run(engine.execute(flow, id="f"))
        assert result.status is RunStatus.COMPLETED

    asyncio.run(main())
    assert times == [0, 60, 180]


# ---------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    ("make", "words"),
    [
        (lambda: Flux.sleep(-1), "Flux.sleep(-1)"),
        (lambda: Flux.sleep(float("nan")), "finite"),
        (lambda: Flux.sleep(float("inf")), "finite"),
        (lambda: Flux.sleep(10**400), "finite"),
        (lambda: Flux.sleep(1e300), "hundred years"),
        (lambda: Flux.sleep("5"), "number of seconds"),  # type: ignore[arg-type]
        (lambda: Flux.sleep_until(dt.datetime(2026, 1, 1)), "pass an aware datetime"),
        (lambda: Flux.sleep_until("2026-01-01"), "pass an aware datetime"),  # type: ignore[arg-type]
        (lambda: Flux.wait("x", timeout=0), "> 0"),
        (lambda: Flux.wait("x", timeout=-5), "> 0"),
        (lambda: Flux.wait("x", default=1), "needs a timeout"),
    ],
)
def test_bad_time_requests_fail_the_step_at_once_naming_it(
    memory_engine: FluxEngine, make: Callable[[], Any], words: str
) -> None:
    flow = create_workflow("bad").step("nap", lambda ctx: make(), retries=3)
    result = memory_engine.execute_sync(flow, id="bad")
    assert result.status is RunStatus.FAILED
    assert result.error_type == "WorkflowDefinitionError"
    assert words in (result.error or "")
    assert "step 'nap'" in (result.error or "") and "'bad'" in (result.error or "")
    assert result.history[0].attempts == 1  # not retried: it would fail the same way


@pytest.mark.parametrize("bad", [0, -1, float("nan"), float("inf"), True, "1"])
def test_a_bad_deadline_is_refused_where_it_is_written(bad: Any) -> None:
    from flux import WorkflowDefinitionError

    with pytest.raises(WorkflowDefinitionError, match=r"workflow 'trial': \.deadline"):
        create_workflow("trial").deadline(bad)


@pytest.mark.parametrize("bad", [-1, float("nan"), float("inf"), "5"])
def test_a_bad_inline_sleep_is_refused(bad: Any) -> None:
    from flux import FluxError

    with pytest.raises(FluxError, match="inline_sleep"):
        FluxEngine(inline_sleep=bad)


def test_a_virtual_clock_needs_an_aware_start() -> None:
    from flux import FluxError

    with pytest.raises(FluxError, match="aware"):
        VirtualClock(dt.datetime(2026, 1, 1))


def test_deadline_exceeded_error_is_exported() -> None:
    assert issubclass(DeadlineExceededError, Exception) and issubclass(SignalTimeoutError, Exception)


def test_a_worker_and_a_late_signal_racing_across_processes_agree_on_the_timeout(tmp_path: Any) -> None:
    """Two engines, each on its own connection to one SQLite file and its own thread (as two
    processes), race for runs whose wait has just timed out: one takes the timeout as a
    worker, the other signals. Whoever wins, the outcome is the timeout's and the signal
    raises `RunStateError`."""
    import threading

    from flux import FluxSilentLogger, SQLiteStorage

    clock = SetClock(START.timestamp())
    flow, _ = _approval(timeout=60)
    db = tmp_path / "race.db"
    maker = FluxEngine(storage=SQLiteStorage(db), clock=clock, logger=FluxSilentLogger())
    ids = [f"race-{i}" for i in range(20)]
    for run_id in ids:
        assert maker.execute_sync(flow, id=run_id).status is RunStatus.SUSPENDED
    clock.t += 61
    signaller = FluxEngine(storage=SQLiteStorage(db), clock=clock, logger=FluxSilentLogger())
    worker = FluxEngine(storage=SQLiteStorage(db), clock=clock, logger=FluxSilentLogger())
    refused: list[str] = []
    other: list[BaseException] = []
    go = threading.Barrier(2)

    def signal_all() -> None:
        go.wait()
        for run_id in ids:
            try:
                signaller.signal_sync(flow, run_id, "approval", {"ok": True})
            except RunStateError:
                refused.append(run_id)
            except BaseException as exc:  # pragma: no cover - reported below
                other.append(exc)

    def work() -> None:
        go.wait()
        worker.work_sync([flow], burst=True)

    threads = [threading.Thread(target=signal_all), threading.Thread(target=work)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    try:
        assert other == []
        assert sorted(refused) == sorted(ids)
        for run_id in ids:
            result = maker.get_sync(run_id)
            assert (result.status, result.error_type) == (RunStatus.ROLLED_BACK, "SignalTimeoutError")
            assert "ship" not in result.outputs
    finally:
        for engine in (maker, signaller, worker):
            engine.close_sync()


def test_retry_step_of_a_sleeping_run_forgets_its_wake_time(make_engine: EngineFactory) -> None:
    """A run reset while it slept, which then waits for a signal with no timeout, is not woken
    at the old wake time (as if its wait were a sleep)."""
    clock = VirtualClock(START)
    engine = make_engine(clock=clock)
    naps: list[int] = []

    def first(ctx: WorkflowContext[Any]) -> Any:
        naps.append(1)
        return Flux.sleep(DAY) if len(naps) == 1 else Flux.wait("go")

    flow = create_workflow("reset").step("s", first)

    async def main() -> None:
        assert (await engine.execute(flow, id="x")).wake_at == at(DAY)
        again = await engine.retry_step(flow, "x", "s")
        assert again.status is RunStatus.SUSPENDED and again.waiting_for == "go" and again.wake_at is None
        await clock.advance(2 * DAY)
        assert (await engine.get("x")).status is RunStatus.SUSPENDED
        assert (await engine.signal(flow, "x", "go", 7)).outputs == {"s": 7}

    asyncio.run(main())


def test_every_time_event_carries_only_declared_keys(make_engine: EngineFactory) -> None:
    from flux.events import check

    clock = VirtualClock(START)
    sink = MemoryTraceSink()
    engine = make_engine(clock=clock, trace=sink)
    flow, _ = _approval(timeout=DAY)
    timed = create_workflow("timed").deadline(DAY).step("s", lambda ctx: Flux.sleep(2 * DAY))

    async def main() -> None:
        await engine.execute(flow, id="a")
        await engine.execute(_approval(timeout=DAY, default=0)[0], id="b")
        await engine.execute(timed, id="c")
        await clock.advance(DAY)

    asyncio.run(main())
    assert {e["type"] for e in sink.events} >= {"signal:timeout", "step:sleep", "workflow:cancel"}
    assert [(e["type"], check(e)) for e in sink.events if check(e)] == []


def test_advance_sync_moves_time_for_code_with_no_event_loop(make_engine: EngineFactory) -> None:
    clock = VirtualClock(START)
    engine = make_engine(clock=clock)
    flow = create_workflow("sync").step("s", lambda ctx: Flux.sleep(DAY)).step("t", lambda ctx: "t")
    assert engine.execute_sync(flow, id="sync").status is RunStatus.SUSPENDED
    clock.advance_sync(DAY)
    assert engine.get_sync("sync").status is RunStatus.COMPLETED
    assert clock.datetime() == at(DAY)


def test_a_sleep_in_process_holds_the_run_against_other_workers(tmp_path: Any) -> None:
    from flux import FluxSilentLogger, SQLiteStorage

    clock = VirtualClock(START)
    holder = FluxEngine(storage=SQLiteStorage(tmp_path / "hold.db"), clock=clock, logger=FluxSilentLogger())
    other = FluxEngine(storage=SQLiteStorage(tmp_path / "hold.db"), clock=clock, logger=FluxSilentLogger())
    flow = create_workflow("hold").step("s", lambda ctx: Flux.sleep(4)).step("t", lambda ctx: "t")

    async def main() -> None:
        task = asyncio.ensure_future(holder.execute(flow, id="hold"))
        await clock.advance(1)
        mid = await other.get("hold")
        assert mid.status is RunStatus.RUNNING and mid.wake_at == at(4)
        assert await other.work([flow], burst=True) == 0  # held: no other worker takes it
        await clock.advance(3)
        assert (await task).status is RunStatus.COMPLETED
        await holder.close()
        await other.close()

    asyncio.run(main())


def test_hostile_signal_names_and_defaults_survive_a_timeout(make_engine: EngineFactory) -> None:
    clock = VirtualClock(START)
    engine = make_engine(clock=clock)
    signal = "go\x00\ud800\x1b[31m"
    default = {"x": "a\x00\x1b[2J", "n": 10**40}
    flow = create_workflow("h").step("w", lambda ctx: Flux.wait(signal, timeout=10, default=default))

    async def main() -> None:
        suspended = await engine.execute(flow, id="h1")
        assert suspended.waiting_for == signal
        await clock.advance(10)
        assert (await engine.get("h1")).outputs == {"w": default}

    asyncio.run(main())
