"""flux.builder: the chainable definition, and every definition error where it is written."""

from __future__ import annotations

from typing import Any, TypedDict

import pytest

from flux import (
    Backoff,
    FluxEngine,
    Workflow,
    WorkflowContext,
    WorkflowDefinitionError,
    create_workflow,
)


def noop(ctx: WorkflowContext[Any]) -> None:
    return None


async def anoop(ctx: WorkflowContext[Any]) -> None:
    return None


class Order(TypedDict):
    qty: int


def test_builder_records_steps_in_order_with_their_options() -> None:
    backoff = Backoff(initial=0.5, jitter=0)
    when = lambda ctx: True  # noqa: E731
    flow = (
        create_workflow("order")
        .input(Order)
        .step("fetch", noop)
        .step(
            "pay",
            anoop,
            retries=2,
            timeout=1.5,
            compensate=noop,
            backoff=backoff,
            retry_on=(ValueError,),
            when=when,
        )
        .commit("ship", noop)
        .version("v2")
    )
    assert isinstance(flow, Workflow)
    assert flow.name == "order"
    assert flow.input_type is Order
    assert flow.version_tag == "v2"
    assert [(s.name, s.kind) for s in flow.steps] == [("fetch", "step"), ("pay", "step"), ("ship", "commit")]
    pay = flow.steps[1]
    assert pay.is_async and not flow.steps[0].is_async
    assert (pay.retries, pay.timeout, pay.compensate, pay.backoff, pay.retry_on, pay.when) == (
        2,
        1.5,
        noop,
        backoff,
        (ValueError,),
        when,
    )
    assert flow.steps[2].commit and not pay.commit
    assert flow.shape() == [["fetch", "step"], ["pay", "step"], ["ship", "commit"]]


def test_create_workflow_takes_the_input_type_as_second_argument() -> None:
    assert create_workflow("w", Order).input_type is Order


def test_a_single_exception_type_is_accepted_as_retry_on() -> None:
    flow = create_workflow("w").step("a", noop, retry_on=KeyError)  # type: ignore[arg-type]
    assert flow.steps[0].retry_on == (KeyError,)


def test_an_async_callable_object_is_an_async_handler() -> None:
    class Handler:
        async def __call__(self, ctx: WorkflowContext[Any]) -> int:
            return 1

    assert create_workflow("w").step("a", Handler()).steps[0].is_async


def test_every_builder_call_returns_a_new_workflow_and_leaves_the_old_one_alone() -> None:
    base = create_workflow("w")
    one = base.step("a", noop)
    other = base.step("b", noop)
    typed = one.input(Order)
    tagged = one.version("v1")
    committed = one.commit("c", noop)
    assert base.steps == ()
    assert [s.name for s in one.steps] == ["a"]
    assert [s.name for s in other.steps] == ["b"]
    assert [s.name for s in committed.steps] == ["a", "c"]
    assert one.input_type is None and typed.input_type is Order
    assert one.version_tag is None and tagged.version_tag == "v1"
    assert len({id(base), id(one), id(other), id(typed), id(tagged), id(committed)}) == 6
    # Options carry over to the new workflows.
    assert typed.version("v3").input_type is Order
    assert tagged.step("d", noop).version_tag == "v1"


@pytest.mark.parametrize("name", ["", "   ", None, 1, b"a"])
def test_a_workflow_name_must_be_a_non_empty_string(name: Any) -> None:
    with pytest.raises(WorkflowDefinitionError, match="workflow name"):
        create_workflow(name)


def _definition_error(build: Any) -> str:
    with pytest.raises(WorkflowDefinitionError) as info:
        build(create_workflow("orders").step("first", noop))
    return str(info.value)


@pytest.mark.parametrize("name", ["", "  ", None, 3, ("a",)])
@pytest.mark.parametrize("method", ["step", "commit"])
def test_a_step_name_must_be_a_non_empty_string(method: str, name: Any) -> None:
    message = _definition_error(lambda flow: getattr(flow, method)(name, noop))
    assert "'orders'" in message
    assert repr(name) in message


@pytest.mark.parametrize("method", ["step", "commit"])
def test_a_step_name_must_be_unique(method: str) -> None:
    message = _definition_error(lambda flow: getattr(flow, method)("first", noop))
    assert "'orders'" in message and "'first'" in message and "already exists" in message


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("handler", None),
        ("handler", "fetch"),
        ("handler", 42),
        ("when", True),
        ("when", "ctx.data['x']"),
        ("compensate", "refund"),
        ("compensate", 0),
        ("retries", -1),
        ("retries", 1.5),
        ("retries", "3"),
        ("retries", True),
        ("timeout", 0),
        ("timeout", -1.0),
        ("timeout", "30"),
        ("timeout", False),
        ("timeout", float("nan")),
        ("backoff", 1.0),
        ("backoff", {"initial": 1}),
        ("retry_on", (ValueError, 1)),
        ("retry_on", [ValueError]),
        ("retry_on", "ValueError"),
        ("retry_on", (int,)),
        ("retry_on", ValueError("not a type")),
    ],
)
@pytest.mark.parametrize("method", ["step", "commit"])
def test_a_bad_step_option_names_workflow_step_and_option(method: str, option: str, value: Any) -> None:
    def build(flow: Workflow[Any]) -> Any:
        if option == "handler":
            return getattr(flow, method)("second", value)
        return getattr(flow, method)("second", noop, **{option: value})

    message = _definition_error(build)
    assert "'orders'" in message
    assert "'second'" in message
    assert option in message or (option == "handler" and "handler" in message)


@pytest.mark.parametrize("tp", [int, dict, list, str, None, "Order", Order(qty=1)])
def test_input_type_must_be_a_typeddict_dataclass_or_pydantic_model(tp: Any) -> None:
    with pytest.raises(WorkflowDefinitionError) as info:
        create_workflow("orders").input(tp)
    assert "'orders'" in str(info.value)
    assert ".input" in str(info.value)


@pytest.mark.parametrize("version", ["", None, 2, ["v1"]])
def test_version_must_be_a_non_empty_string(version: Any) -> None:
    with pytest.raises(WorkflowDefinitionError) as info:
        create_workflow("orders").step("a", noop).version(version)
    assert "'orders'" in str(info.value)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"initial": -1},
        {"factor": 0.5},
        {"max": -2},
        {"jitter": 1.5},
        {"jitter": -0.1},
        {"initial": True},
        {"initial": "1"},
    ],
)
def test_a_bad_backoff_fails_where_it_is_written(kwargs: dict[str, Any]) -> None:
    with pytest.raises(WorkflowDefinitionError) as info:
        Backoff(**kwargs)
    assert next(iter(kwargs)) in str(info.value)


def test_a_workflow_without_steps_fails_at_execute_and_stores_nothing(memory_engine: FluxEngine) -> None:
    with pytest.raises(WorkflowDefinitionError) as info:
        memory_engine.execute_sync(create_workflow("empty"), {})
    assert "'empty'" in str(info.value)
    assert "no steps" in str(info.value)
    assert memory_engine.list_sync() == []


def test_execute_rejects_something_that_is_not_a_workflow(memory_engine: FluxEngine) -> None:
    with pytest.raises(WorkflowDefinitionError, match="create_workflow"):
        memory_engine.execute_sync(noop, {})  # type: ignore[arg-type]
