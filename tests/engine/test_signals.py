"""flux.signals: `Flux.wait` suspends a run; `engine.signal` continues it."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import pytest

from flux import (
    Flux,
    FluxEngine,
    FluxResult,
    MemoryTraceSink,
    RunNotFoundError,
    RunStateError,
    RunStatus,
    SerializationError,
    StepStatus,
    WaitRequest,
    WorkflowContext,
    WorkflowDefinitionError,
    create_workflow,
)

EngineFactory = Callable[..., FluxEngine]


class Approval:
    def __init__(self) -> None:
        self.calls: list[str] = []
        self.seen: list[Any] = []

    def flow(self) -> Any:
        def prepare(ctx: WorkflowContext[Any]) -> str:
            self.calls.append("prepare")
            ctx.data["prepared"] = True
            return "ready"

        def ask(ctx: WorkflowContext[Any]) -> WaitRequest:
            self.calls.append("ask")
            ctx.data["asked"] = True
            return Flux.wait("approval")

        def ship(ctx: WorkflowContext[Any]) -> str:
            self.calls.append("ship")
            self.seen.append((ctx.outputs["ask"], dict(ctx.data)))
            return "shipped"

        return create_workflow("approve").step("prepare", prepare).step("ask", ask).step("ship", ship)


def _frozen(result: FluxResult) -> Any:
    """What a result says, without the duration that grows while a run is not finished."""
    return (
        dataclasses.replace(result, duration=0.0),
        [(h.name, h.status, h.attempts, h.output) for h in result.history],
    )


def test_wait_suspends_the_run(make_engine: EngineFactory) -> None:
    sink = MemoryTraceSink()
    app = Approval()
    result = make_engine(trace=sink).execute_sync(app.flow(), {"order": 1}, id="AP-1")
    assert result.status is RunStatus.SUSPENDED
    assert result.waiting_for == "approval"
    assert [h.status for h in result.history] == [
        StepStatus.COMPLETED,
        StepStatus.SUSPENDED,
        StepStatus.PENDING,
    ]
    assert app.calls == ["prepare", "ask"]
    assert result.data == {"prepared": True, "asked": True}
    stored = make_engine().get_sync("AP-1")
    assert (stored.status, stored.waiting_for) == (RunStatus.SUSPENDED, "approval")
    [suspend] = [e for e in sink.events if e["type"] == "step:suspend"]
    assert (suspend["stepName"], suspend["signal"]) == ("ask", "approval")
    assert sink.events[-1]["type"] == "step:suspend"


def test_executing_a_suspended_run_again_leaves_it_waiting(make_engine: EngineFactory) -> None:
    app = Approval()
    make_engine().execute_sync(app.flow(), {"order": 1}, id="AP-2")
    again = make_engine().execute_sync(app.flow(), {"order": 1}, id="AP-2")
    assert (again.status, again.waiting_for) == (RunStatus.SUSPENDED, "approval")
    assert app.calls == ["prepare", "ask"]


def test_a_signal_continues_with_its_payload_as_the_step_output(make_engine: EngineFactory) -> None:
    sink = MemoryTraceSink()
    app = Approval()
    make_engine().execute_sync(app.flow(), {"order": 1}, id="AP-3")
    # Delivered by another engine, as from another process.
    result = make_engine(trace=sink).signal_sync(app.flow(), "AP-3", "approval", {"by": "ann", "ok": True})
    assert result.status is RunStatus.COMPLETED
    assert result.waiting_for is None
    assert result.outputs["ask"] == {"by": "ann", "ok": True}
    assert app.calls == ["prepare", "ask", "ship"]
    assert app.seen == [({"by": "ann", "ok": True}, {"prepared": True, "asked": True})]
    assert [h.status for h in result.history] == ["completed"] * 3
    [received] = [e for e in sink.events if e["type"] == "signal:received"]
    assert (received["stepName"], received["signal"], received["output"]) == (
        "ask",
        "approval",
        {"by": "ann", "ok": True},
    )
    assert sink.events[-1]["type"] == "workflow:complete"
    assert make_engine().get_sync("AP-3").outputs["ask"] == {"by": "ann", "ok": True}


def test_a_signal_without_payload_gives_none(memory_engine: FluxEngine) -> None:
    app = Approval()
    memory_engine.execute_sync(app.flow(), id="AP-4")
    assert memory_engine.signal_sync(app.flow(), "AP-4", "approval").outputs["ask"] is None


def test_a_run_can_wait_twice(memory_engine: FluxEngine) -> None:
    flow = (
        create_workflow("two")
        .step("first", lambda ctx: Flux.wait("one"))
        .step("second", lambda ctx: Flux.wait("two"))
        .step("end", lambda ctx: [ctx.outputs["first"], ctx.outputs["second"]])
    )
    assert memory_engine.execute_sync(flow, id="T").waiting_for == "one"
    with pytest.raises(RunStateError):
        memory_engine.signal_sync(flow, "T", "two")
    assert memory_engine.signal_sync(flow, "T", "one", 1).waiting_for == "two"
    assert memory_engine.signal_sync(flow, "T", "two", 2).outputs["end"] == [1, 2]


def test_a_signal_with_another_name_changes_nothing(make_engine: EngineFactory) -> None:
    engine = make_engine()
    app = Approval()
    engine.execute_sync(app.flow(), id="AP-5")
    before = engine.get_sync("AP-5")
    with pytest.raises(RunStateError) as info:
        engine.signal_sync(app.flow(), "AP-5", "rejection", {"x": 1})
    assert (
        "'rejection'" in str(info.value) and "'approval'" in str(info.value) and "'AP-5'" in str(info.value)
    )
    assert _frozen(engine.get_sync("AP-5")) == _frozen(before)
    assert app.calls == ["prepare", "ask"]


def test_a_signal_to_a_finished_run_changes_nothing(make_engine: EngineFactory) -> None:
    engine = make_engine()
    app = Approval()
    engine.execute_sync(app.flow(), id="AP-6")
    engine.signal_sync(app.flow(), "AP-6", "approval", 1)
    before = engine.get_sync("AP-6")
    with pytest.raises(RunStateError, match="completed"):
        engine.signal_sync(app.flow(), "AP-6", "approval", 2)
    assert _frozen(engine.get_sync("AP-6")) == _frozen(before)
    assert app.calls == ["prepare", "ask", "ship"]


def test_a_signal_to_an_unknown_run_raises(make_engine: EngineFactory) -> None:
    engine = make_engine()
    with pytest.raises(RunNotFoundError, match="'ghost'"):
        engine.signal_sync(Approval().flow(), "ghost", "approval")
    assert engine.list_sync() == []


def test_a_signal_for_another_workflow_is_refused(make_engine: EngineFactory) -> None:
    engine = make_engine()
    app = Approval()
    engine.execute_sync(app.flow(), id="AP-7")
    other = create_workflow("other").step("ask", lambda ctx: Flux.wait("approval"))
    with pytest.raises(RunStateError):
        engine.signal_sync(other, "AP-7", "approval")
    assert engine.get_sync("AP-7").status is RunStatus.SUSPENDED


def test_an_unserialisable_payload_is_refused_and_changes_nothing(make_engine: EngineFactory) -> None:
    engine = make_engine()
    app = Approval()
    engine.execute_sync(app.flow(), id="AP-8")
    before = engine.get_sync("AP-8")
    with pytest.raises(SerializationError) as info:
        engine.signal_sync(app.flow(), "AP-8", "approval", {"who": object()})
    assert info.value.path == "signal.payload.who"
    assert _frozen(engine.get_sync("AP-8")) == _frozen(before)


@pytest.mark.parametrize("name", ["", None, 3])
def test_wait_needs_a_signal_name(name: Any) -> None:
    with pytest.raises(WorkflowDefinitionError):
        Flux.wait(name)


def test_the_signalled_step_is_not_run_again(memory_engine: FluxEngine) -> None:
    app = Approval()
    memory_engine.execute_sync(app.flow(), id="AP-9")
    memory_engine.signal_sync(app.flow(), "AP-9", "approval", "yes")
    assert app.calls.count("ask") == 1


def test_the_step_complete_hook_sees_the_signal_payload(make_engine: EngineFactory) -> None:
    calls: list[tuple[str, Any]] = []
    engine = make_engine(on={"step_complete": lambda step, ctx, result: calls.append((step, result))})
    app = Approval()
    engine.execute_sync(app.flow(), id="AP-10")
    engine.signal_sync(app.flow(), "AP-10", "approval", {"ok": True})
    assert calls == [("prepare", "ready"), ("ask", {"ok": True}), ("ship", "shipped")]
