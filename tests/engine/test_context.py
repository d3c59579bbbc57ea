"""flux.context: what a handler sees while it runs."""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from flux import (
    FatalError,
    FluxEngine,
    FluxSilentLogger,
    SQLiteStorage,
    StepExecution,
    StepStatus,
    WorkflowContext,
    create_workflow,
)

EngineFactory = Callable[..., FluxEngine]


def test_the_context_carries_the_run_and_the_step(make_engine: EngineFactory) -> None:
    engine = make_engine()
    seen: dict[str, Any] = {}

    def first(ctx: WorkflowContext[Any]) -> dict[str, int]:
        ctx.data["count"] = 1
        return {"n": 41}

    async def second(ctx: WorkflowContext[Any]) -> int:
        seen.update(
            id=ctx.id,
            name=ctx.name,
            input=ctx.input,
            data=dict(ctx.data),
            outputs=dict(ctx.outputs),
            step=ctx.step_name,
            attempt=ctx.attempt,
            key=ctx.idempotency_key,
            cancelled=ctx.cancelled,
        )
        return int(ctx.outputs["first"]["n"]) + 1

    flow = create_workflow("ctx").step("first", first).step("second", second)
    result = engine.execute_sync(flow, {"order": "A1"}, id="run-7")
    assert result.status == "completed"
    assert seen == {
        "id": "run-7",
        "name": "ctx",
        "input": {"order": "A1"},
        "data": {"count": 1},
        "outputs": {"first": {"n": 41}},
        "step": "second",
        "attempt": 1,
        "key": "run-7:second",
        "cancelled": False,
    }
    assert result.outputs == {"first": {"n": 41}, "second": 42}
    assert result.data == {"count": 1}


def test_data_is_shared_and_mutated_by_the_steps_in_order(memory_engine: FluxEngine) -> None:
    def add(item: str) -> Callable[[WorkflowContext[Any]], None]:
        def handler(ctx: WorkflowContext[Any]) -> None:
            ctx.data.setdefault("items", []).append(item)

        return handler

    flow = create_workflow("d").step("a", add("a")).step("b", add("b")).step("c", add("c"))
    assert memory_engine.execute_sync(flow).data == {"items": ["a", "b", "c"]}


def test_outputs_are_read_only(memory_engine: FluxEngine) -> None:
    errors: list[str] = []

    def meddle(ctx: WorkflowContext[Any]) -> None:
        try:
            ctx.outputs["a"] = 2  # type: ignore[index]
        except TypeError:
            errors.append("set")
        try:
            del ctx.outputs["a"]  # type: ignore[attr-defined]
        except TypeError:
            errors.append("del")

    flow = create_workflow("ro").step("a", lambda ctx: 1).step("b", meddle)
    result = memory_engine.execute_sync(flow)
    assert errors == ["set", "del"]
    assert result.outputs["a"] == 1


def test_outputs_assignment_raises_type_error_in_the_handler(memory_engine: FluxEngine) -> None:
    def meddle(ctx: WorkflowContext[Any]) -> None:
        ctx.outputs["a"] = 2  # type: ignore[index]

    result = memory_engine.execute_sync(
        create_workflow("ro").step("a", lambda ctx: 1).step("b", meddle, retries=0)
    )
    assert result.status == "failed"
    assert result.error_type == "TypeError"
    assert result.outputs["a"] == 1


def test_attempt_counts_from_one_and_the_key_is_stable_across_retries(memory_engine: FluxEngine) -> None:
    seen: list[tuple[int, str]] = []

    def flaky(ctx: WorkflowContext[Any]) -> str:
        seen.append((ctx.attempt, ctx.idempotency_key))
        if ctx.attempt < 3:
            raise ConnectionError("try again")
        return "ok"

    result = memory_engine.execute_sync(create_workflow("k").step("pay", flaky, retries=5), id="R1")
    assert result.status == "completed"
    assert seen == [(1, "R1:pay"), (2, "R1:pay"), (3, "R1:pay")]
    assert result.history[0].attempts == 3


def test_history_lists_every_step_as_it_stands(memory_engine: FluxEngine) -> None:
    seen: list[list[StepExecution]] = []

    def look(ctx: WorkflowContext[Any]) -> None:
        seen.append(ctx.history)

    flow = (
        create_workflow("h")
        .step("a", lambda ctx: "A")
        .step("skip", lambda ctx: None, when=lambda ctx: False)
        .step("look", look)
        .step("later", lambda ctx: None)
    )
    result = memory_engine.execute_sync(flow)
    history = seen[0]
    assert [h.name for h in history] == ["a", "skip", "look", "later"]
    assert [h.status for h in history] == [
        StepStatus.COMPLETED,
        StepStatus.SKIPPED,
        StepStatus.RUNNING,
        StepStatus.PENDING,
    ]
    assert history[0].output == "A" and history[0].attempts == 1
    assert history[0].started_at is not None and history[0].completed_at is not None
    assert history[0].duration is not None and history[0].duration >= 0
    assert history[3].started_at is None and history[3].attempts == 0
    # The run's own history at the end.
    assert [h.status for h in result.history] == ["completed", "skipped", "completed", "completed"]


def test_history_records_errors(memory_engine: FluxEngine) -> None:
    def boom(ctx: WorkflowContext[Any]) -> None:
        raise FatalError("unpaid order")

    result = memory_engine.execute_sync(create_workflow("h").step("a", boom))
    step = result.history[0]
    assert (step.status, step.error, step.error_type, step.attempts) == (
        "failed",
        "unpaid order",
        "FatalError",
        1,
    )


def test_the_context_is_the_same_kind_of_object_in_when_and_compensate(memory_engine: FluxEngine) -> None:
    seen: list[tuple[str, str, int]] = []

    def when(ctx: WorkflowContext[Any]) -> bool:
        seen.append(("when", ctx.step_name, ctx.attempt))
        return True

    def undo(ctx: WorkflowContext[Any]) -> None:
        seen.append(("undo", ctx.step_name, ctx.attempt))

    def fail(ctx: WorkflowContext[Any]) -> None:
        raise FatalError("no")

    flow = create_workflow("c").step("a", lambda ctx: None, when=when, compensate=undo).step("b", fail)
    memory_engine.execute_sync(flow)
    assert seen == [("when", "a", 1), ("undo", "a", 1)]


@pytest.mark.parametrize("value", [None, [], "text"])
def test_replacing_data_with_a_non_dict_fails_the_step(memory_engine: FluxEngine, value: Any) -> None:
    def replace(ctx: WorkflowContext[Any]) -> None:
        ctx.data = value

    result = memory_engine.execute_sync(create_workflow("c").step("a", replace, retries=0))
    assert result.status == "failed"
    assert result.error is not None and "ctx.data" in result.error


# ------------------------------------------------------------------ input and outputs cannot be changed


@dataclass
class Line:
    sku: str
    qty: int


@dataclass
class Order:
    id: str
    lines: list[Line]


def _fetch(ctx: WorkflowContext[Any]) -> dict[str, Any]:
    return {"items": [1, 2], "meta": {"source": "db"}}


def _meddle(ctx: WorkflowContext[Any]) -> str:
    """Change everything a handler is handed, in place."""
    ctx.input["x"] = 1
    ctx.input["order"]["lines"].append("extra")
    ctx.outputs["fetch"]["items"].append(99)
    ctx.outputs["fetch"]["meta"]["source"] = "meddled"
    ctx.history[0].output["items"].clear()
    return "meddled"


INPUT = {"order": {"id": "A1", "lines": ["l1"]}}
FETCHED = {"items": [1, 2], "meta": {"source": "db"}}


def test_a_change_in_place_to_input_or_outputs_is_seen_by_no_later_step(make_engine: EngineFactory) -> None:
    seen: list[Any] = []

    def look(ctx: WorkflowContext[Any]) -> None:
        seen.append((copy.deepcopy(ctx.input), copy.deepcopy(dict(ctx.outputs)), ctx.history[0].output))

    flow = create_workflow("ro-values").step("fetch", _fetch).step("meddle", _meddle).step("look", look)
    result = make_engine().execute_sync(flow, copy.deepcopy(INPUT), id="ro-1")
    assert result.status == "completed", result.error
    assert seen == [(INPUT, {"fetch": FETCHED, "meddle": "meddled"}, FETCHED)]
    assert result.input == INPUT
    assert result.outputs["fetch"] == FETCHED
    assert make_engine().get_sync("ro-1").outputs["fetch"] == FETCHED


def test_a_failed_attempt_changes_nothing_that_its_retry_sees(make_engine: EngineFactory) -> None:
    seen: list[Any] = []

    def flaky(ctx: WorkflowContext[Any]) -> None:
        seen.append(copy.deepcopy((ctx.input, ctx.outputs["fetch"])))
        if ctx.attempt == 1:
            _meddle(ctx)
            raise RuntimeError("down")

    flow = create_workflow("ro-retry").step("fetch", _fetch).step("meddle", flaky, retries=1)
    result = make_engine().execute_sync(flow, copy.deepcopy(INPUT))
    assert result.status == "completed", result.error
    assert seen == [(INPUT, FETCHED), (INPUT, FETCHED)]


def test_a_compensation_sees_the_values_as_stored(make_engine: EngineFactory) -> None:
    seen: list[Any] = []

    def refund(ctx: WorkflowContext[Any]) -> None:
        seen.append(copy.deepcopy((ctx.input, ctx.outputs["fetch"])))

    def fail(ctx: WorkflowContext[Any]) -> None:
        _meddle(ctx)
        raise FatalError("unpaid")

    flow = create_workflow("ro-saga").step("fetch", _fetch, compensate=refund).step("fail", fail)
    result = make_engine().execute_sync(flow, copy.deepcopy(INPUT))
    assert result.status == "rolled_back", result.error
    assert seen == [(INPUT, FETCHED)]


def test_a_dataclass_input_changed_in_place_is_not_seen_by_the_next_step(make_engine: EngineFactory) -> None:
    seen: list[int] = []

    def change(ctx: WorkflowContext[Order]) -> None:
        ctx.input.lines[0].qty = 5
        ctx.input.lines.append(Line("x", 9))

    def look(ctx: WorkflowContext[Order]) -> None:
        assert isinstance(ctx.input, Order) and isinstance(ctx.input.lines[0], Line)
        seen.extend(line.qty for line in ctx.input.lines)

    flow = create_workflow("ro-dc").input(Order).step("change", change).step("look", look)
    result = make_engine().execute_sync(flow, Order("A1", [Line("s", 1)]))
    assert result.status == "completed", result.error
    assert seen == [1]


def test_a_resumed_run_sees_what_an_uninterrupted_run_sees(tmp_path: Path) -> None:
    """Same definition, two runs on one SQLite file: one straight through, one that fails
    after the meddling step and is resumed by another engine."""
    seen: dict[str, Any] = {}
    fail_first = {"broken": True}

    def look(ctx: WorkflowContext[Any]) -> dict[str, Any]:
        if ctx.id == "interrupted" and fail_first["broken"]:
            raise FatalError("service down")
        seen[ctx.id] = copy.deepcopy((ctx.input, dict(ctx.outputs), [s.output for s in ctx.history]))
        return {"saw": ctx.outputs["fetch"]["items"]}

    flow = create_workflow("ro-resume").step("fetch", _fetch).step("meddle", _meddle).step("look", look)

    def engine() -> FluxEngine:
        return FluxEngine(storage=SQLiteStorage(tmp_path / "flux.db"), logger=FluxSilentLogger())

    first = engine()
    straight = first.execute_sync(flow, copy.deepcopy(INPUT), id="straight")
    assert first.execute_sync(flow, copy.deepcopy(INPUT), id="interrupted").status == "failed"
    first.close_sync()
    fail_first["broken"] = False
    second = engine()
    resumed = second.resume_sync(flow, "interrupted")
    second.close_sync()
    assert straight.status == resumed.status == "completed"
    assert seen["straight"] == seen["interrupted"]
    assert seen["straight"][1]["fetch"] == FETCHED
    assert straight.outputs == resumed.outputs


# ------------------------------------------------------------------ the context alone


def _context(input: Any = None, outputs: Any = None, **extra: Any) -> WorkflowContext[Any]:
    return WorkflowContext(
        id="r",
        name="w",
        input={"lines": [1]} if input is None else input,
        data={},
        outputs={"fetch": {"items": [1]}, "count": 3} if outputs is None else outputs,
        step_name="s",
        attempt=1,
        history=list,
        **extra,
    )


def test_each_context_has_its_own_copy_and_keeps_it_for_the_step() -> None:
    input, outputs = {"lines": [1]}, {"fetch": {"items": [1]}, "count": 3}
    one, two = _context(input, outputs), _context(input, outputs)
    one.input["lines"].append(2)
    one.outputs["fetch"]["items"].append(2)
    assert one.input == {"lines": [1, 2]} and one.outputs["fetch"] == {"items": [1, 2]}
    assert two.input == {"lines": [1]} and two.outputs["fetch"] == {"items": [1]}
    assert input == {"lines": [1]} and outputs == {"fetch": {"items": [1]}, "count": 3}
    assert one.outputs["count"] == 3 and "fetch" in one.outputs and len(one.outputs) == 2
    assert "missing" not in one.outputs and one.outputs.get("missing") is None


def test_the_copies_are_decoded_from_the_stored_texts_when_given() -> None:
    ctx = _context(input_json='{"lines":[7]}', outputs_json={"fetch": '{"items":[8]}'})
    assert ctx.input == {"lines": [7]}
    assert ctx.outputs["fetch"] == {"items": [8]}
    assert ctx.outputs["count"] == 3  # no text for it: the value itself (immutable)


def test_the_outputs_mapping_cannot_be_assigned_to() -> None:
    ctx = _context()
    with pytest.raises(TypeError):
        ctx.outputs["fetch"] = 1  # type: ignore[index]
    with pytest.raises(AttributeError):
        ctx.input = {}  # type: ignore[misc]
