"""SPEC §9 cancellation, in one process: `engine.cancel` on pending, suspended and running
runs, with the saga, the trace, and `RunStateError` for a finished run."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from flux import (
    Flux,
    FluxEngine,
    FluxSilentLogger,
    MemoryTraceSink,
    RunStateError,
    RunStatus,
    StepStatus,
    WorkflowContext,
    create_workflow,
)

undone: list[str] = []


def book(ctx: WorkflowContext[Any]) -> str:
    return "booked"


def unbook(ctx: WorkflowContext[Any]) -> None:
    undone.append(ctx.step_name)


@pytest.fixture
def engine() -> FluxEngine:
    undone.clear()
    return FluxEngine(logger=FluxSilentLogger(), trace=MemoryTraceSink())


def test_a_pending_run_is_cancelled_at_once(engine: FluxEngine) -> None:
    flow = create_workflow("queued").step("a", book)

    async def scenario() -> None:
        run_id = await engine.start(flow, {}, id="Q-1")
        result = await engine.cancel(run_id, reason="not needed")
        assert result.status is RunStatus.CANCELLED and result.error == "not needed"
        assert (await engine.get(run_id)).status is RunStatus.CANCELLED
        assert await engine.work([flow], burst=True) == 0  # nothing left for a worker

    asyncio.run(scenario())


def test_a_suspended_run_is_cancelled_and_its_completed_steps_compensated(engine: FluxEngine) -> None:
    flow = (
        create_workflow("approve")
        .step("reserve", book, compensate=unbook)
        .step("approval", lambda ctx: Flux.wait("approval"))
    )
    assert engine.execute_sync(flow, {}, id="A-1").status is RunStatus.SUSPENDED
    result = engine.cancel_sync("A-1", reason="customer asked")
    assert result.status is RunStatus.CANCELLED
    assert result.error == "customer asked" and result.error_type == "RunCancelledError"
    assert undone == ["reserve"]
    steps = {s.name: s.status for s in result.history}
    assert steps == {"reserve": StepStatus.COMPENSATED, "approval": StepStatus.CANCELLED}
    with pytest.raises(RunStateError, match="not suspended"):
        engine.signal_sync(flow, "A-1", "approval", {})
    sink = engine.trace
    assert isinstance(sink, MemoryTraceSink)
    types = [e["type"] for e in sink.events if e["workflowId"] == "A-1"]
    assert types[-5:] == [
        "workflow:cancel",
        "workflow:rollback_start",
        "step:compensate",
        "workflow:rollback_complete",
        "workflow:error",
    ]
    cancel = next(e for e in sink.events if e["type"] == "workflow:cancel")
    assert cancel["reason"] == "customer asked"
    last = sink.events[-1]
    assert last["type"] == "workflow:error" and last["status"] == "cancelled"


def test_a_running_async_step_is_cancelled_where_it_awaits(engine: FluxEngine) -> None:
    entered = asyncio.Event()
    after_await: list[str] = []

    async def slow(ctx: WorkflowContext[Any]) -> str:
        entered.set()
        await asyncio.Event().wait()  # never set: only a cancel ends it
        after_await.append("ran on")
        return "never"

    flow = create_workflow("slow").step("reserve", book, compensate=unbook).step("wait", slow)
    flow = flow.step("never", book)

    async def scenario() -> None:
        run = asyncio.ensure_future(engine.execute(flow, {}, id="S-1"))
        await entered.wait()
        cancelled = await engine.cancel("S-1", reason="stop")
        result = await run
        assert result.status is RunStatus.CANCELLED and cancelled.status is RunStatus.CANCELLED
        assert after_await == [] and undone == ["reserve"]
        assert "never" not in result.outputs

    asyncio.run(scenario())


def test_cancelling_a_finished_run_raises_and_changes_nothing(engine: FluxEngine) -> None:
    flow = create_workflow("done").step("a", book)
    engine.execute_sync(flow, {}, id="D-1")
    with pytest.raises(RunStateError, match="already completed"):
        engine.cancel_sync("D-1")
    assert engine.get_sync("D-1").status is RunStatus.COMPLETED


def test_retry_step_runs_a_cancelled_run_again(engine: FluxEngine) -> None:
    flow = create_workflow("again").step("a", book).step("approval", lambda ctx: Flux.wait("approval"))
    engine.execute_sync(flow, {}, id="R-1")
    engine.cancel_sync("R-1")
    result = engine.retry_step_sync(flow, "R-1", "approval")
    assert result.status is RunStatus.SUSPENDED  # the old cancel request does not come back


@pytest.mark.parametrize("bad", ["a\x00b", "lone \ud800 half"])
def test_a_run_id_a_database_cannot_store_is_refused_before_anything_is_stored(
    engine: FluxEngine, bad: str
) -> None:
    flow = create_workflow("ids").step("a", book)
    with pytest.raises(RunStateError, match="a database can store"):
        engine.execute_sync(flow, {}, id=bad)
    assert engine.list_sync() == []
