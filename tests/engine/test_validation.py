"""flux.validation: `.input(T)` checks the input at execute, before anything runs or is stored."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, Literal, Optional, TypedDict

import pytest

from flux import (
    FluxEngine,
    InputValidationError,
    MemoryTraceSink,
    WorkflowContext,
    create_workflow,
)

EngineFactory = Callable[..., FluxEngine]


class Address(TypedDict):
    city: str
    zip: str


class Line(TypedDict):
    sku: str
    qty: int


class Order(TypedDict):
    client: str
    qty: int
    lines: list[Line]


class OrderInput(TypedDict, total=False):
    order: Order
    note: Optional[str]  # noqa: UP045 - Optional is what is under test here
    tier: Literal["gold", "silver"]
    tags: list[int]
    ship_to: Address
    price: float
    gift: bool


class Required(TypedDict):
    order_id: str
    amount: int


@dataclasses.dataclass
class Customer:
    name: str
    vip: bool = False


@dataclasses.dataclass
class Booking:
    id: str
    seats: int
    customer: Customer
    notes: list[str] = dataclasses.field(default_factory=list)


@dataclasses.dataclass
class Party:
    host: Customer
    guests: list[Customer]
    backup: Optional[Customer] = None  # noqa: UP045
    by_table: dict[str, Customer] = dataclasses.field(default_factory=dict)


class Invitation(TypedDict):
    guest: Customer


def _engine_with_sink() -> tuple[FluxEngine, MemoryTraceSink]:
    sink = MemoryTraceSink()
    return FluxEngine(trace=sink), sink


def _reject(tp: Any, value: Any) -> InputValidationError:
    """Execute a one-step workflow with a bad input: nothing runs, nothing is stored."""
    calls: list[object] = []
    flow = create_workflow("orders").input(tp).step("a", lambda ctx: calls.append(ctx.input))
    engine, sink = _engine_with_sink()
    with engine, pytest.raises(InputValidationError) as info:
        engine.execute_sync(flow, value, id="run-1")
    with FluxEngine(storage=engine.storage) as reader:
        assert reader.list_sync() == []
    assert sink.events == []
    assert calls == []
    assert "'orders'" in str(info.value)
    assert info.value.field is not None and info.value.field in str(info.value)
    return info.value


GOOD: dict[str, Any] = {"order": {"client": "ACME", "qty": 2, "lines": [{"sku": "A", "qty": 1}]}}


@pytest.mark.parametrize(
    ("value", "field"),
    [
        ({"order_id": "1"}, "input.amount"),
        ({"amount": 1}, "input.order_id"),
        ({"order_id": 1, "amount": 1}, "input.order_id"),
        ({"order_id": "1", "amount": "1"}, "input.amount"),
        ({"order_id": "1", "amount": 1.5}, "input.amount"),
        ({"order_id": "1", "amount": True}, "input.amount"),
        ({"order_id": "1", "amount": 1, "extra": 0}, "input.extra"),
        (None, "input"),
        (["order_id", "amount"], "input"),
    ],
)
def test_typeddict_top_level_errors_name_the_field(value: Any, field: str) -> None:
    assert _reject(Required, value).field == field


@pytest.mark.parametrize(
    ("value", "field"),
    [
        ({"order": {"client": "ACME", "lines": []}}, "input.order.qty"),
        ({"order": {"client": "ACME", "qty": "2", "lines": []}}, "input.order.qty"),
        ({"order": {"client": 7, "qty": 2, "lines": []}}, "input.order.client"),
        ({"order": {"client": "ACME", "qty": 2, "lines": [], "rush": True}}, "input.order.rush"),
        (
            {"order": {"client": "A", "qty": 2, "lines": [{"sku": "A", "qty": "1"}]}},
            "input.order.lines[0].qty",
        ),
        (
            {"order": {"client": "A", "qty": 2, "lines": [{"sku": "A", "qty": 1}, {"qty": 1}]}},
            "input.order.lines[1].sku",
        ),
        ({"order": {"client": "A", "qty": 2, "lines": "A"}}, "input.order.lines"),
        ({"note": 3}, "input.note"),
        ({"tier": "bronze"}, "input.tier"),
        ({"tags": [1, "2", 3]}, "input.tags[1]"),
        ({"tags": 1}, "input.tags"),
        ({"ship_to": {"city": "Oslo"}}, "input.ship_to.zip"),
        ({"price": "9.5"}, "input.price"),
        ({"gift": 1}, "input.gift"),
    ],
)
def test_typeddict_nested_errors_name_the_dotted_path(value: Any, field: str) -> None:
    assert _reject(OrderInput, value).field == field


@pytest.mark.parametrize(
    "value",
    [
        {},
        GOOD,
        {"note": None},
        {"note": "leave at door"},
        {"tier": "gold"},
        {"tags": []},
        {"tags": [1, 2]},
        {"price": 3},
        {"price": 2.5},
        {"gift": False},
    ],
)
def test_valid_typeddict_inputs_reach_the_handler_unchanged(memory_engine: FluxEngine, value: Any) -> None:
    seen: list[Any] = []
    flow = create_workflow("orders").input(OrderInput).step("a", lambda ctx: seen.append(ctx.input))
    result = memory_engine.execute_sync(flow, value)
    assert result.status == "completed"
    assert seen == [value]
    assert result.input == value


def test_a_dict_input_becomes_the_dataclass(make_engine: EngineFactory) -> None:
    engine = make_engine()
    seen: list[Any] = []

    def handler(ctx: WorkflowContext[Booking]) -> str:
        seen.append(ctx.input)
        return ctx.input.customer.name

    flow = create_workflow("booking").input(Booking).step("a", handler)
    result = engine.execute_sync(flow, {"id": "B1", "seats": 2, "customer": {"name": "Ada"}})
    assert result.status == "completed", result.error
    assert seen == [Booking("B1", 2, Customer("Ada"))]
    assert isinstance(seen[0].customer, Customer)
    assert result.outputs["a"] == "Ada"
    assert engine.get_sync(result.id).input == Booking("B1", 2, Customer("Ada"))


def test_nested_dataclasses_in_containers_are_built_too(memory_engine: FluxEngine) -> None:
    seen: list[Any] = []
    flow = create_workflow("party").input(Party).step("a", lambda ctx: seen.append(ctx.input))
    value = {
        "host": {"name": "Ada"},
        "guests": [{"name": "Grace", "vip": True}],
        "backup": {"name": "Alan"},
        "by_table": {"t1": {"name": "Edsger"}},
    }
    result = memory_engine.execute_sync(flow, value)
    assert result.status == "completed", result.error
    assert seen == [
        Party(
            host=Customer("Ada"),
            guests=[Customer("Grace", vip=True)],
            backup=Customer("Alan"),
            by_table={"t1": Customer("Edsger")},
        )
    ]


def test_a_dataclass_inside_a_typeddict_is_built(memory_engine: FluxEngine) -> None:
    seen: list[Any] = []
    flow = create_workflow("invite").input(Invitation).step("a", lambda ctx: seen.append(ctx.input))
    assert memory_engine.execute_sync(flow, {"guest": {"name": "Ada"}}).status == "completed"
    assert seen == [{"guest": Customer("Ada")}]


def test_a_dataclass_instance_is_accepted_as_it_is(memory_engine: FluxEngine) -> None:
    booking = Booking("B2", 1, Customer("Grace", vip=True), ["window"])
    seen: list[Any] = []
    flow = create_workflow("booking").input(Booking).step("a", lambda ctx: seen.append(ctx.input))
    assert memory_engine.execute_sync(flow, booking).status == "completed"
    assert seen == [booking]


@pytest.mark.parametrize(
    ("value", "field"),
    [
        ({"id": "B1", "customer": {"name": "Ada"}}, "input.seats"),
        ({"id": "B1", "seats": "2", "customer": {"name": "Ada"}}, "input.seats"),
        ({"id": "B1", "seats": 2, "customer": {"name": "Ada"}, "color": "red"}, "input.color"),
        ({"id": "B1", "seats": 2, "customer": {}}, "input.customer.name"),
        ({"id": "B1", "seats": 2, "customer": {"name": "Ada", "vip": "yes"}}, "input.customer.vip"),
        ({"id": "B1", "seats": 2, "customer": "Ada"}, "input.customer"),
        ({"id": "B1", "seats": 2, "customer": {"name": "Ada"}, "notes": [1]}, "input.notes[0]"),
        ("B1", "input"),
    ],
)
def test_dataclass_errors_name_the_field(value: Any, field: str) -> None:
    assert _reject(Booking, value).field == field


def test_a_pydantic_model_validates_and_converts_the_input(memory_engine: FluxEngine) -> None:
    base_model: Any = pytest.importorskip("pydantic").BaseModel

    class Item(base_model):  # type: ignore[misc]
        sku: str
        qty: int

    class PurchaseInput(base_model):  # type: ignore[misc]
        order_id: str
        items: list[Item]

    seen: list[Any] = []
    flow = create_workflow("purchase").input(PurchaseInput).step("a", lambda ctx: seen.append(ctx.input))
    result = memory_engine.execute_sync(flow, {"order_id": "P1", "items": [{"sku": "A", "qty": 2}]})
    assert result.status == "completed", result.error
    assert isinstance(seen[0], PurchaseInput)
    assert seen[0].items[0].qty == 2

    error = _reject(PurchaseInput, {"order_id": "P1", "items": [{"sku": "A", "qty": "many"}]})
    # The same path style as for TypedDicts and dataclasses: list items as [i].
    assert error.field == "input.items[0].qty"
    assert _reject(PurchaseInput, {"items": []}).field == "input.order_id"


def test_a_pydantic_instance_is_accepted_as_it_is(memory_engine: FluxEngine) -> None:
    base_model: Any = pytest.importorskip("pydantic").BaseModel

    class Ping(base_model):  # type: ignore[misc]
        n: int

    seen: list[Any] = []
    flow = create_workflow("ping").input(Ping).step("a", lambda ctx: seen.append(ctx.input))
    ping = Ping(n=3)
    assert memory_engine.execute_sync(flow, ping).status == "completed"
    assert seen == [ping]


def test_without_an_input_type_any_serialisable_input_is_taken(memory_engine: FluxEngine) -> None:
    flow = create_workflow("free").step("a", lambda ctx: ctx.input)
    for value in (None, 1, "x", [1, 2], {"a": {"b": [None]}}):
        assert memory_engine.execute_sync(flow, value).outputs["a"] == value
