"""flux.runner: attempts, retries, timeouts, `when` and the saga, as a run sees them."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from typing import Any

import pytest

from flux import (
    FatalError,
    FluxEngine,
    MemoryTraceSink,
    RunStatus,
    StepStatus,
    WorkflowContext,
    create_workflow,
)

EngineFactory = Callable[..., FluxEngine]
#: How long a test waits for something that happens at once unless the engine is broken.
PATIENCE = 10.0


def _types(sink: MemoryTraceSink) -> list[str]:
    return [e["type"] for e in sink.events]


def _of(sink: MemoryTraceSink, kind: str) -> list[dict[str, Any]]:
    return [e for e in sink.events if e["type"] == kind]


# ------------------------------------------------------------------ retries


def test_retries_counts_attempts_after_the_first(make_engine: EngineFactory) -> None:
    sink = MemoryTraceSink()
    engine = make_engine(trace=sink)
    calls: list[int] = []

    def down(ctx: WorkflowContext[Any]) -> None:
        calls.append(ctx.attempt)
        raise ConnectionError(f"down #{ctx.attempt}")

    result = engine.execute_sync(create_workflow("r").step("call", down, retries=2), id="r1")
    assert calls == [1, 2, 3]
    assert result.status is RunStatus.FAILED
    assert (result.error, result.error_type) == ("down #3", "ConnectionError")
    assert result.history[0].attempts == 3
    retries = _of(sink, "step:retry")
    assert [(e["attempt"], e["error"], e["errorType"], e["stepName"]) for e in retries] == [
        (1, "down #1", "ConnectionError", "call"),
        (2, "down #2", "ConnectionError", "call"),
    ]
    assert [e["retries"] for e in retries] == [1, 2]
    assert all(e["maxRetries"] == 2 for e in retries)
    [error] = _of(sink, "step:error")
    assert (error["attempt"], error["error"], error["errorType"]) == (3, "down #3", "ConnectionError")
    assert [e["attempt"] for e in _of(sink, "step:start")] == [1, 2, 3]


@pytest.mark.parametrize(("default", "attempts"), [(0, 1), (1, 2), (3, 4)])
def test_the_engine_default_retries_apply_when_the_step_sets_none(
    make_engine: EngineFactory, default: int, attempts: int
) -> None:
    engine = make_engine(default_retries=default)
    calls: list[int] = []

    def down(ctx: WorkflowContext[Any]) -> None:
        calls.append(ctx.attempt)
        raise ValueError("no")

    engine.execute_sync(create_workflow("r").step("call", down))
    assert len(calls) == attempts


def test_a_retry_that_succeeds_completes_the_run(memory_engine: FluxEngine) -> None:
    def flaky(ctx: WorkflowContext[Any]) -> str:
        if ctx.attempt == 1:
            raise ConnectionError("blip")
        return "ok"

    result = memory_engine.execute_sync(create_workflow("r").step("call", flaky, retries=1))
    assert result.status == "completed"
    assert result.outputs == {"call": "ok"}
    assert (result.history[0].attempts, result.history[0].error) == (2, None)


class UnpaidError(FatalError):
    pass


@pytest.mark.parametrize("error", [FatalError("unpaid order"), UnpaidError("unpaid order")])
def test_a_fatal_error_is_never_retried(memory_engine: FluxEngine, error: Exception) -> None:
    sink = MemoryTraceSink()
    memory_engine.trace = sink
    calls: list[int] = []

    def charge(ctx: WorkflowContext[Any]) -> None:
        calls.append(ctx.attempt)
        raise error

    result = memory_engine.execute_sync(create_workflow("r").step("charge", charge, retries=5))
    assert calls == [1]
    assert result.status == "failed"
    assert (result.error, result.error_type) == ("unpaid order", type(error).__name__)
    assert _of(sink, "step:retry") == []


@pytest.mark.parametrize(
    ("raised", "attempts"),
    [(KeyError("k"), 3), (IndexError("i"), 3), (ValueError("v"), 1), (FatalError("f"), 1)],
)
def test_retry_on_retries_only_the_listed_types(
    memory_engine: FluxEngine, raised: Exception, attempts: int
) -> None:
    calls: list[int] = []

    def handler(ctx: WorkflowContext[Any]) -> None:
        calls.append(ctx.attempt)
        raise raised

    flow = create_workflow("r").step("s", handler, retries=2, retry_on=(LookupError,))
    result = memory_engine.execute_sync(flow)
    assert len(calls) == attempts
    assert result.error_type == type(raised).__name__


def _mutate_then_fail_once(seen: list[dict[str, Any]], *, is_async: bool) -> Any:
    def body(ctx: WorkflowContext[Any]) -> str:
        seen.append({"items": list(ctx.data["items"]), "keys": sorted(ctx.data)})
        ctx.data["items"].append(ctx.attempt)
        ctx.data[f"attempt{ctx.attempt}"] = True
        if ctx.attempt == 1:
            raise ConnectionError("first attempt fails after writing")
        return "done"

    if not is_async:
        return body

    async def handler(ctx: WorkflowContext[Any]) -> str:
        await asyncio.sleep(0)
        return body(ctx)

    return handler


@pytest.mark.parametrize("timeout", [None, 30.0])
@pytest.mark.parametrize("is_async", [False, True])
def test_a_failed_attempt_changes_to_data_are_discarded(
    make_engine: EngineFactory, is_async: bool, timeout: float | None
) -> None:
    engine = make_engine()
    seen: list[dict[str, Any]] = []
    flow = (
        create_workflow("r")
        .step("prepare", lambda ctx: ctx.data.update(items=[0]))
        .step("work", _mutate_then_fail_once(seen, is_async=is_async), retries=1, timeout=timeout)
    )
    result = engine.execute_sync(flow, id="d1")
    assert result.status == "completed", result.error
    assert seen == [{"items": [0], "keys": ["items"]}, {"items": [0], "keys": ["items"]}]
    assert result.data == {"items": [0, 2], "attempt2": True}
    assert make_engine().get_sync("d1").data == {"items": [0, 2], "attempt2": True}


def test_a_step_that_fails_for_good_leaves_data_as_before_it(make_engine: EngineFactory) -> None:
    engine = make_engine()

    def fail(ctx: WorkflowContext[Any]) -> None:
        ctx.data["x"] = "dirty"
        raise FatalError("no")

    flow = create_workflow("r").step("a", lambda ctx: ctx.data.update(x="clean")).step("b", fail)
    assert engine.execute_sync(flow, id="d2").data == {"x": "clean"}
    assert make_engine().get_sync("d2").data == {"x": "clean"}


# ------------------------------------------------------------------ timeouts


def test_an_async_handler_is_cancelled_at_its_timeout(make_engine: EngineFactory) -> None:
    engine = make_engine()
    after_await: list[int] = []
    cancelled: list[int] = []

    async def main() -> Any:
        gate = asyncio.Event()

        async def slow(ctx: WorkflowContext[Any]) -> str:
            try:
                await gate.wait()
            except asyncio.CancelledError:
                cancelled.append(ctx.attempt)
                raise
            after_await.append(ctx.attempt)
            return "late"

        flow = create_workflow("t").step("slow", slow, timeout=0.05, retries=1)
        result = await engine.execute(flow, id="t1")
        # Open the gate: an attempt that had not really been cancelled would go on now.
        gate.set()
        for _ in range(10):
            await asyncio.sleep(0)
        return result

    result = asyncio.run(main())
    assert cancelled == [1, 2]
    assert after_await == []
    assert result.status == "failed"
    assert result.error_type == "StepTimeoutError"
    assert result.error is not None and "'slow'" in result.error and "'t1'" in result.error
    assert result.history[0].attempts == 2
    assert "slow" not in result.outputs


def test_a_sync_handler_is_abandoned_at_its_timeout_and_told_so(make_engine: EngineFactory) -> None:
    engine = make_engine()
    release = threading.Event()
    finished = threading.Event()
    seen: list[tuple[int, bool]] = []

    def slow(ctx: WorkflowContext[Any]) -> str:
        if ctx.attempt == 1:
            while not ctx.cancelled:  # attempt 2 waits until this one returned (SPEC §5)
                release.wait(0.005)
            seen.append((ctx.attempt, ctx.cancelled))
            ctx.data["late"] = "written after the timeout"
            finished.set()
            return "too late"
        seen.append((ctx.attempt, ctx.cancelled))
        ctx.data["second"] = True
        return "in time"

    flow = (
        create_workflow("t")
        .step("prepare", lambda ctx: ctx.data.update(x=1))
        .step("slow", slow, timeout=0.3, retries=1)  # room for attempt 2 on a busy machine
    )
    try:
        result = engine.execute_sync(flow, id="t2")
    finally:
        release.set()
    assert finished.wait(PATIENCE)
    assert sorted(seen) == [(1, True), (2, False)]
    assert result.status == "completed", result.error
    assert result.outputs["slow"] == "in time"
    assert result.history[1].attempts == 2
    assert engine.get_sync("t2").data == {"x": 1, "second": True}


def test_a_sync_handler_that_times_out_for_good_fails_with_step_timeout(make_engine: EngineFactory) -> None:
    engine = make_engine()
    release = threading.Event()
    finished = threading.Event()

    def slow(ctx: WorkflowContext[Any]) -> None:
        release.wait(PATIENCE)
        ctx.data["late"] = True
        finished.set()

    flow = create_workflow("t").step("slow", slow, timeout=0.05, retries=0)
    try:
        result = engine.execute_sync(flow, id="t3")
    finally:
        release.set()
    assert finished.wait(PATIENCE)
    assert (result.status, result.error_type) == ("failed", "StepTimeoutError")
    assert engine.get_sync("t3").data == {}


@pytest.mark.parametrize("is_async", [False, True])
def test_a_handler_raising_its_own_timeout_error_keeps_its_error_type(
    make_engine: EngineFactory, is_async: bool
) -> None:
    engine = make_engine()
    calls: list[int] = []

    def sync_handler(ctx: WorkflowContext[Any]) -> None:
        calls.append(ctx.attempt)
        raise TimeoutError("the upstream API timed out")

    async def async_handler(ctx: WorkflowContext[Any]) -> None:
        sync_handler(ctx)

    flow = create_workflow("t").step(
        "call", async_handler if is_async else sync_handler, timeout=30.0, retries=1
    )
    result = engine.execute_sync(flow)
    assert result.error_type == "TimeoutError"
    assert result.error == "the upstream API timed out"
    assert calls == [1, 2]


def test_an_inner_wait_for_timeout_is_the_handler_s_own_error(memory_engine: FluxEngine) -> None:
    async def handler(ctx: WorkflowContext[Any]) -> None:
        await asyncio.wait_for(asyncio.Event().wait(), 0.01)

    result = memory_engine.execute_sync(create_workflow("t").step("call", handler, timeout=30.0, retries=0))
    assert result.error_type == "TimeoutError"


def test_a_lambda_returning_a_coroutine_is_timed_out_too(memory_engine: FluxEngine) -> None:
    """`.step("fetch", lambda ctx: fetch(ctx.input["id"]))` with an async `fetch` is common."""
    finished: list[bool] = []

    async def fetch(ctx: WorkflowContext[Any]) -> None:
        await asyncio.Event().wait()
        finished.append(True)

    async def main() -> Any:
        flow = create_workflow("t").step("s", lambda ctx: fetch(ctx), timeout=0.05, retries=0)
        try:
            # The guard only matters if the step's timeout is ignored: the run then never ends.
            return await asyncio.wait_for(memory_engine.execute(flow), 5.0)
        except asyncio.TimeoutError:
            return None

    result = asyncio.run(main())
    assert result is not None, "the step's timeout was not applied to the coroutine"
    assert (result.status, result.error_type) == ("failed", "StepTimeoutError")
    assert finished == []


def test_the_engine_default_timeout_applies(make_engine: EngineFactory) -> None:
    engine = make_engine(default_timeout=0.05, default_retries=0)

    async def main() -> Any:
        async def never(ctx: WorkflowContext[Any]) -> None:
            await asyncio.Event().wait()

        return await engine.execute(create_workflow("t").step("never", never))

    assert asyncio.run(main()).error_type == "StepTimeoutError"


def test_a_sync_handler_with_a_timeout_does_not_block_the_event_loop(memory_engine: FluxEngine) -> None:
    """A sync handler with a timeout runs in a worker thread, so other coroutines go on
    meanwhile. (Without a timeout it runs inline: a thread hop costs more than a trivial
    step; the README says so.)"""
    seen: list[bool] = []

    async def main() -> Any:
        loop_ran = threading.Event()

        def blocking(ctx: WorkflowContext[Any]) -> None:
            seen.append(loop_ran.wait(5.0))  # bounded: without a thread this deadlocks

        async def other() -> None:
            loop_ran.set()

        flow = create_workflow("t").step("blocking", blocking, timeout=10.0)
        result, _ = await asyncio.gather(memory_engine.execute(flow), other())
        return result

    assert asyncio.run(main()).status == "completed"
    assert seen == [True]


# ------------------------------------------------------------------ when


def test_when_false_skips_the_step(make_engine: EngineFactory) -> None:
    sink = MemoryTraceSink()
    engine = make_engine(trace=sink)
    calls: list[str] = []
    flow = (
        create_workflow("w")
        .step("route", lambda ctx: ctx.data.update(route="manual"))
        .step("auto", lambda ctx: calls.append("auto"), when=lambda ctx: ctx.data["route"] == "auto")
        .step("manual", lambda ctx: calls.append("manual"), when=lambda ctx: ctx.data["route"] == "manual")
    )
    result = engine.execute_sync(flow, id="w1")
    assert calls == ["manual"]
    assert result.status == "completed"
    assert [h.status for h in result.history] == ["completed", "skipped", "completed"]
    assert result.history[1].attempts == 0
    assert "auto" not in result.outputs
    [skipped] = _of(sink, "step:skipped")
    assert (skipped["stepName"], skipped["stepIndex"], skipped["status"]) == ("auto", 1, "skipped")
    assert make_engine().get_sync("w1").history[1].status is StepStatus.SKIPPED


def test_when_is_evaluated_once_per_step(memory_engine: FluxEngine) -> None:
    evaluated: list[int] = []

    def when(ctx: WorkflowContext[Any]) -> bool:
        evaluated.append(ctx.attempt)
        return True

    def flaky(ctx: WorkflowContext[Any]) -> None:
        if ctx.attempt < 3:
            raise ConnectionError("again")

    memory_engine.execute_sync(create_workflow("w").step("s", flaky, retries=3, when=when))
    assert evaluated == [1]


def test_a_when_that_raises_fails_the_step(make_engine: EngineFactory) -> None:
    sink = MemoryTraceSink()
    engine = make_engine(trace=sink)
    calls: list[str] = []

    def when(ctx: WorkflowContext[Any]) -> bool:
        return bool(ctx.data["missing"])

    flow = (
        create_workflow("w")
        .step("s", lambda ctx: calls.append("s"), when=when)
        .step("after", lambda ctx: calls.append("after"))
    )
    result = engine.execute_sync(flow)
    assert calls == []
    assert result.status == "failed"
    assert result.error_type == "KeyError"
    assert result.failed_step == "s"
    assert result.history[0].status == "failed"
    assert _of(sink, "step:error")[0]["stepName"] == "s"
    assert _types(sink)[-1] == "workflow:error"


# ------------------------------------------------------------------ saga


class Saga:
    """A five-step order saga whose compensations record the order they ran in."""

    def __init__(self, *, failing_compensation: str | None = None, fail_times: int | None = None) -> None:
        self.log: list[str] = []
        self.failing_compensation = failing_compensation
        self.compensation_failures = 0
        self.fail_times = fail_times  # None: the compensation always fails

    def do(self, name: str) -> Callable[[WorkflowContext[Any]], str]:
        def handler(ctx: WorkflowContext[Any]) -> str:
            self.log.append(f"do {name}")
            ctx.data.setdefault("done", []).append(name)
            return name.upper()

        return handler

    def undo(self, name: str) -> Callable[[WorkflowContext[Any]], None]:
        def handler(ctx: WorkflowContext[Any]) -> None:
            self.log.append(f"undo {name}")
            if name == self.failing_compensation:
                self.compensation_failures += 1
                if self.fail_times is None:
                    raise ConnectionError(f"cannot undo {name}")
                if self.compensation_failures <= self.fail_times:
                    raise ConnectionError(f"blip undoing {name}")
            ctx.data.setdefault("undone", []).append(name)

        return handler

    def fail(self, ctx: WorkflowContext[Any]) -> None:
        self.log.append("do charge")
        raise FatalError("card declined")

    def flow(self, retries: int = 0) -> Any:
        return (
            create_workflow("saga")
            .step("reserve", self.do("reserve"), compensate=self.undo("reserve"), retries=retries)
            .step("note", self.do("note"))
            .step("gift", self.do("gift"), compensate=self.undo("gift"), when=lambda ctx: False)
            .step("hold", self.do("hold"), compensate=self.undo("hold"), retries=retries)
            .step("charge", self.fail, compensate=self.undo("charge"))
            .step("ship", self.do("ship"), compensate=self.undo("ship"))
        )


def test_compensations_run_in_reverse_order_of_completion(make_engine: EngineFactory) -> None:
    sink = MemoryTraceSink()
    saga = Saga()
    engine = make_engine(trace=sink, on={"workflow_error": lambda ctx, error: saga.log.append("hook")})
    result = engine.execute_sync(saga.flow(), id="s1")
    assert saga.log == ["do reserve", "do note", "do hold", "do charge", "undo hold", "undo reserve", "hook"]
    assert result.status is RunStatus.ROLLED_BACK
    assert (result.error, result.error_type, result.failed_step) == ("card declined", "FatalError", "charge")
    assert {h.name: h.status.value for h in result.history} == {
        "reserve": "compensated",
        "note": "completed",
        "gift": "skipped",
        "hold": "compensated",
        "charge": "failed",
        "ship": "pending",
    }
    assert [e["stepName"] for e in _of(sink, "step:compensate")] == ["hold", "reserve"]
    types = _types(sink)
    assert types.index("workflow:rollback_start") < types.index("step:compensate")
    assert types[-2:] == ["workflow:rollback_complete", "workflow:error"]
    assert sink.events[-1]["status"] == "rolled_back"
    assert sink.events[-1]["errorType"] == "FatalError"
    stored = make_engine().get_sync("s1")
    assert stored.status is RunStatus.ROLLED_BACK
    assert [h.status.value for h in stored.history] == [h.status.value for h in result.history]


def test_compensations_are_retried_like_steps(memory_engine: FluxEngine) -> None:
    sink = MemoryTraceSink()
    memory_engine.trace = sink
    saga = Saga(failing_compensation="hold", fail_times=1)
    result = memory_engine.execute_sync(saga.flow(retries=1))
    assert result.status is RunStatus.ROLLED_BACK
    assert saga.log[-3:] == ["undo hold", "undo hold", "undo reserve"]
    [retry] = _of(sink, "step:compensate_error")
    assert (retry["stepName"], retry["attempt"], retry["error"]) == ("hold", 1, "blip undoing hold")


def test_a_compensation_that_fails_for_good_ends_in_rollback_failed(make_engine: EngineFactory) -> None:
    sink = MemoryTraceSink()
    hooks: list[tuple[str, str]] = []
    engine = make_engine(
        trace=sink, on={"workflow_error": lambda ctx, error: hooks.append((type(error).__name__, str(error)))}
    )
    saga = Saga(failing_compensation="hold")
    result = engine.execute_sync(saga.flow(), id="s2")
    assert result.status is RunStatus.ROLLBACK_FAILED
    # The other compensations still run.
    assert saga.log[-2:] == ["undo hold", "undo reserve"]
    statuses = {h.name: h.status for h in result.history}
    assert statuses["hold"] is StepStatus.COMPENSATION_FAILED
    assert statuses["reserve"] is StepStatus.COMPENSATED
    # The run's error stays the step's failure; the hook and the last event say so.
    assert (result.error_type, result.failed_step) == ("FatalError", "charge")
    assert hooks == [("FatalError", "card declined")]
    failed = [e for e in _of(sink, "step:compensate_error") if e.get("status") == "compensation_failed"]
    assert [e["stepName"] for e in failed] == ["hold"]
    assert sink.events[-1]["type"] == "workflow:error"
    assert sink.events[-1]["status"] == "rollback_failed"
    assert make_engine().get_sync("s2").status is RunStatus.ROLLBACK_FAILED


def test_nothing_to_compensate_ends_in_failed(make_engine: EngineFactory) -> None:
    sink = MemoryTraceSink()
    hooks: list[str] = []
    engine = make_engine(trace=sink, on={"workflow_error": lambda ctx, error: hooks.append(str(error))})

    def boom(ctx: WorkflowContext[Any]) -> None:
        raise FatalError("stop")

    flow = (
        create_workflow("saga")
        .step("plain", lambda ctx: None)
        .step(
            "skipped", lambda ctx: None, compensate=lambda ctx: hooks.append("undo"), when=lambda ctx: False
        )
        .step("boom", boom, compensate=lambda ctx: hooks.append("undo boom"))
    )
    result = engine.execute_sync(flow)
    assert result.status is RunStatus.FAILED
    assert hooks == ["stop"]
    assert "workflow:rollback_start" not in _types(sink)
    assert sink.events[-1]["type"] == "workflow:error"
    assert sink.events[-1]["status"] == "failed"
    assert sink.events[-1]["stepName"] == "boom"


def test_a_compensation_sees_the_run_data(memory_engine: FluxEngine) -> None:
    seen: list[Any] = []

    def fail(ctx: WorkflowContext[Any]) -> None:
        ctx.data["from_failed_step"] = True
        raise FatalError("no")

    flow = (
        create_workflow("saga")
        .step(
            "reserve",
            lambda ctx: ctx.data.update(reservation="R-1") or {"id": "R-1"},
            compensate=lambda ctx: seen.append((ctx.step_name, dict(ctx.data), ctx.outputs.get("reserve"))),
        )
        .step("fail", fail)
    )
    memory_engine.execute_sync(flow)
    # A compensation sees the output of the step it undoes (a refund needs the charge id).
    assert seen == [("reserve", {"reservation": "R-1"}, {"id": "R-1"})]
