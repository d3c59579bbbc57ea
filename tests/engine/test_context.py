"""flux.context: what a handler sees while it runs."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from flux import FatalError, FluxEngine, StepExecution, StepStatus, WorkflowContext, create_workflow

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
