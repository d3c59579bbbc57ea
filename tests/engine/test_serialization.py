"""flux.serialization: what input, data and outputs may hold, and how a bad value is named."""

from __future__ import annotations

import dataclasses
import datetime as dt
import uuid
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import pytest

from flux import FluxEngine, RunStatus, SerializationError, WorkflowContext, create_workflow
from flux import serialization as ser

EngineFactory = Callable[..., FluxEngine]

try:
    import pydantic
except ImportError:  # the pydantic tests skip themselves
    pydantic = None  # type: ignore[assignment]


@dataclasses.dataclass
class Client:
    name: str
    since: dt.date


@dataclasses.dataclass(frozen=True)
class Invoice:
    id: uuid.UUID
    total: Decimal
    issued: dt.datetime
    client: Client
    pdf: bytes
    lines: list[str] = dataclasses.field(default_factory=list)


if pydantic is not None:

    class Money(pydantic.BaseModel):
        amount: Decimal
        currency: str

    class Payment(pydantic.BaseModel):
        id: uuid.UUID
        paid_at: dt.datetime
        money: Money


INVOICE = Invoice(
    id=uuid.UUID("12345678-1234-5678-1234-567812345678"),
    total=Decimal("10.50"),
    issued=dt.datetime(2024, 5, 1, 12, 30, 15, 123456, tzinfo=dt.timezone.utc),
    client=Client("ACME", dt.date(2020, 1, 31)),
    pdf=b"%PDF\x00\xff",
    lines=["a", "b"],
)

VALUES: list[Any] = [
    None,
    True,
    0,
    -7,
    2**70,
    1.5,
    "text é ✓",
    [1, "a", None],
    {"a": {"b": [1, 2]}},
    b"\x00\x01\xfe\xff",
    b"",
    dt.datetime(2024, 5, 1, 12, 30),
    dt.datetime(2024, 5, 1, 12, 30, tzinfo=dt.timezone(dt.timedelta(hours=2))),
    dt.date(1999, 12, 31),
    Decimal("0.1"),
    Decimal("1.10"),
    Decimal("-1E+3"),
    uuid.UUID("12345678-1234-5678-1234-567812345678"),
    INVOICE,
    {"nested": [INVOICE, {"when": dt.date(2024, 1, 1)}]},
]


@pytest.mark.parametrize("value", VALUES, ids=lambda v: type(v).__name__)
def test_supported_values_round_trip_exactly(value: Any) -> None:
    back = ser.loads(ser.dumps(value, path="data"))
    assert back == value
    assert type(back) is type(value)


def test_a_datetime_keeps_its_timezone_and_a_naive_one_stays_naive() -> None:
    aware = dt.datetime(2024, 1, 1, tzinfo=dt.timezone(dt.timedelta(hours=-5)))
    assert ser.loads(ser.dumps(aware, path="x")).utcoffset() == dt.timedelta(hours=-5)
    assert ser.loads(ser.dumps(dt.datetime(2024, 1, 1), path="x")).tzinfo is None


def test_bytearray_and_memoryview_come_back_as_bytes() -> None:
    assert ser.loads(ser.dumps(bytearray(b"ab"), path="x")) == b"ab"
    assert ser.loads(ser.dumps(memoryview(b"cd"), path="x")) == b"cd"


def test_a_rebuilt_dataclass_has_typed_fields() -> None:
    back = ser.loads(ser.dumps(INVOICE, path="x"))
    assert isinstance(back, Invoice)
    assert isinstance(back.client, Client)
    assert isinstance(back.client.since, dt.date)
    assert isinstance(back.total, Decimal)


def test_pydantic_models_round_trip() -> None:
    pytest.importorskip("pydantic")
    payment = Payment(
        id=uuid.uuid4(),
        paid_at=dt.datetime(2024, 2, 29, 23, 59, tzinfo=dt.timezone.utc),
        money=Money(amount=Decimal("99.99"), currency="EUR"),
    )
    back = ser.loads(ser.dumps({"payment": payment}, path="data"))
    assert back == {"payment": payment}
    assert isinstance(back["payment"].money, Money)


@pytest.mark.parametrize(
    "value",
    [
        {"__flux_type__": "bytes", "value": "aGk="},
        {"__flux_type__": "uuid", "value": "not a uuid"},
        {"__flux_type__": "dataclass", "class": f"{__name__}:Client", "value": {"name": "x", "since": "y"}},
    ],
)
def test_a_user_dict_that_looks_like_a_tag_round_trips_unchanged(value: Any) -> None:
    # Plain JSON objects are allowed in data; one that happens to use the tag key must not
    # be decoded into something else (nor make decoding import a module named in the data).
    assert ser.loads(ser.dumps(value, path="data")) == value


class Opaque:
    pass


def _lambda() -> Any:
    return lambda: 1


@pytest.mark.parametrize(
    ("value", "path", "why"),
    [
        (object(), "data", "object is not serialisable"),
        ({"order": {"client": Opaque()}}, "data.order.client", "Opaque is not serialisable"),
        ({"tags": {1, 2}}, "data.tags", "set is not serialisable"),
        ({"cb": _lambda()}, "data.cb", "function is not serialisable"),
        ({"items": [1, {"x": frozenset()}]}, "data.items[1].x", "frozenset"),
        ({"ratio": float("nan")}, "data.ratio", "not a finite number"),
        ({"ratio": float("inf")}, "data.ratio", "not a finite number"),
        (
            {"inv": dataclasses.replace(INVOICE, lines=[Opaque()])},  # type: ignore[list-item]
            "data.inv.lines[0]",
            "Opaque",
        ),
        ({"k": {(1, 2): "tuple key"}}, "data.k", "key (1, 2)"),
        ({"dt": dt.timedelta(seconds=1)}, "data.dt", "timedelta"),
    ],
)
def test_an_unserialisable_value_is_named_by_its_path(value: Any, path: str, why: str) -> None:
    with pytest.raises(SerializationError) as info:
        ser.dumps(value, path="data", step="fetch")
    assert info.value.path == path
    assert info.value.step == "fetch"
    assert path in str(info.value) and "'fetch'" in str(info.value) and why in str(info.value)


def test_a_circular_reference_is_named_by_its_path() -> None:
    data: dict[str, Any] = {"order": {"lines": []}}
    data["order"]["lines"].append(data["order"])
    with pytest.raises(SerializationError) as info:
        ser.dumps(data, path="data", step="s")
    assert info.value.path == "data.order.lines[0]"
    assert "circular" in str(info.value)


def test_a_shared_but_acyclic_value_is_not_circular() -> None:
    shared = {"x": 1}
    assert ser.loads(ser.dumps({"a": shared, "b": [shared, shared]}, path="d")) == {
        "a": {"x": 1},
        "b": [{"x": 1}, {"x": 1}],
    }


# ------------------------------------------------------------------ through the engine


def test_values_of_every_supported_type_survive_the_storage(make_engine: EngineFactory) -> None:
    engine = make_engine()

    def produce(ctx: WorkflowContext[Any]) -> Any:
        ctx.data["invoice"] = INVOICE
        ctx.data["when"] = dt.date(2024, 1, 2)
        return {"blob": b"\x00\xff", "amount": Decimal("3.30"), "id": INVOICE.id}

    def consume(ctx: WorkflowContext[Any]) -> Any:
        return [type(ctx.data["invoice"]).__name__, type(ctx.outputs["produce"]["amount"]).__name__]

    flow = create_workflow("types").step("produce", produce).step("consume", consume)
    result = engine.execute_sync(flow, {"at": dt.datetime(2024, 1, 1, 9, 0)}, id="t-1")
    assert result.status == "completed", result.error
    assert result.outputs["consume"] == ["Invoice", "Decimal"]
    stored = make_engine().get_sync("t-1")
    assert stored.input == {"at": dt.datetime(2024, 1, 1, 9, 0)}
    assert stored.data == {"invoice": INVOICE, "when": dt.date(2024, 1, 2)}
    assert stored.outputs["produce"] == {"blob": b"\x00\xff", "amount": Decimal("3.30"), "id": INVOICE.id}


def test_pydantic_values_survive_the_storage(make_engine: EngineFactory) -> None:
    pytest.importorskip("pydantic")
    payment = Payment(
        id=uuid.uuid4(),
        paid_at=dt.datetime(2024, 1, 1, tzinfo=dt.timezone.utc),
        money=Money(amount=Decimal("5"), currency="USD"),
    )
    flow = create_workflow("pay").step("a", lambda ctx: payment)
    make_engine().execute_sync(flow, id="p-1")
    assert make_engine().get_sync("p-1").outputs["a"] == payment


@pytest.mark.parametrize(
    ("output", "why"),
    [(object(), "object"), ({1, 2}, "set"), (_lambda(), "function"), (float("nan"), "finite")],
)
def test_an_unserialisable_output_fails_the_step_without_retry(
    make_engine: EngineFactory, output: Any, why: str
) -> None:
    engine = make_engine()
    calls = []

    def fetch(ctx: WorkflowContext[Any]) -> Any:
        calls.append(ctx.attempt)
        return output

    after = []
    flow = create_workflow("ser").step("fetch", fetch, retries=3).step("next", lambda ctx: after.append(1))
    result = engine.execute_sync(flow, id="s-1")
    assert result.status is RunStatus.FAILED
    assert result.error_type == "SerializationError"
    assert result.error is not None
    assert "outputs.fetch" in result.error and "'fetch'" in result.error and why in result.error
    assert calls == [1]
    assert after == []
    assert result.history[0].status == "failed"
    assert make_engine().get_sync("s-1").error_type == "SerializationError"


def test_execute_returns_the_values_as_stored(make_engine: EngineFactory) -> None:
    """What execute returns, what later steps see and what get returns after a resume
    must agree, or code works on a fresh run and breaks on a resumed one."""
    engine = make_engine()
    seen: list[Any] = []

    def produce(ctx: WorkflowContext[Any]) -> Any:
        ctx.data["pair"] = ("x", 1)
        return {"pair": (1, 2), "by_id": {7: "seven"}}

    flow = (
        create_workflow("stored")
        .step("produce", produce)
        .step("consume", lambda ctx: seen.append((ctx.outputs["produce"], ctx.data["pair"])))
    )
    result = engine.execute_sync(flow, id="st-1")
    stored = make_engine().get_sync("st-1")
    assert dict(result.outputs) == dict(stored.outputs)
    assert result.data == stored.data
    assert seen == [(stored.outputs["produce"], stored.data["pair"])]


def test_unserialisable_data_fails_the_step_naming_the_data_path(make_engine: EngineFactory) -> None:
    engine = make_engine()

    def fetch(ctx: WorkflowContext[Any]) -> None:
        ctx.data["order"] = {"client": Opaque()}

    flow = create_workflow("ser").step("fetch", fetch)
    result = engine.execute_sync(flow)
    assert result.status == "failed"
    assert result.error_type == "SerializationError"
    assert result.error is not None and "data.order.client" in result.error and "'fetch'" in result.error
    # The bad value was not kept.
    assert result.data == {}


def test_circular_data_fails_the_step(memory_engine: FluxEngine) -> None:
    def loop(ctx: WorkflowContext[Any]) -> None:
        ctx.data["self"] = ctx.data

    result = memory_engine.execute_sync(create_workflow("ser").step("loop", loop))
    assert result.error_type == "SerializationError"
    assert result.error is not None and "data.self" in result.error


def test_an_unserialisable_input_is_refused_before_anything_is_stored(memory_engine: FluxEngine) -> None:
    flow = create_workflow("ser").step("a", lambda ctx: None)
    with pytest.raises(SerializationError) as info:
        memory_engine.execute_sync(flow, {"order": {"client": Opaque()}}, id="in-1")
    assert info.value.path == "input.order.client"
    assert memory_engine.list_sync() == []


# ------------------------------------------------------------------ values that would hurt a run


def _nested(depth: int, leaf: Any = 1) -> Any:
    value = leaf
    for i in range(depth):
        value = {"a": value} if i % 2 else [value]
    return value


def test_data_nested_100_000_deep_is_named_not_a_recursion_error() -> None:
    with pytest.raises(SerializationError) as info:
        ser.dumps({"deep": _nested(100_000)}, path="data", step="s")
    assert info.value.step == "s"
    assert info.value.path.startswith("data.deep")
    assert "more levels" in info.value.path  # shortened, not 100,000 segments
    assert len(str(info.value)) < 400
    assert "deep" in str(info.value) and "'s'" in str(info.value)


def test_a_very_deep_list_alone_is_named_too() -> None:
    with pytest.raises(SerializationError) as info:
        ser.dumps(_nested(100_000, leaf=[]), path="outputs.x", step="x")
    assert info.value.path.startswith("outputs.x.a[0].a[0]")
    assert "more levels>" in info.value.path


@pytest.mark.parametrize(
    ("value", "path", "why"),
    [
        ({1: "a", "1": "b"}, "data", "'1'"),
        ({True: 1, "true": 2}, "data", "'true'"),
        ({None: 1, "null": 2}, "data", "'null'"),
        ({"x": [0, {1.5: "a", "1.5": "b"}]}, "data.x[1]", "'1.5'"),
        ({"c": Client(name={2: 1, "2": 1}, since=dt.date(2020, 1, 1))}, "data.c.name", "'2'"),  # type: ignore[arg-type]
    ],
)
def test_keys_that_collide_once_encoded_are_refused(value: Any, path: str, why: str) -> None:
    with pytest.raises(SerializationError) as info:
        ser.dumps(value, path="data", step="s")
    assert info.value.path == path
    assert info.value.step == "s"
    assert "collide" in str(info.value) and why in str(info.value)


def test_int_keys_that_do_not_collide_still_round_trip_as_strings() -> None:
    assert ser.loads(ser.dumps({1: "a", "2": "b", None: 0, 1.5: 2}, path="d")) == {
        "1": "a",
        "2": "b",
        "null": 0,
        "1.5": 2,
    }


@pytest.mark.parametrize(
    ("value", "path"),
    [
        ({"s": "ok \ud800"}, "data.s"),
        ({"list": ["fine", "\udfff"]}, "data.list[1]"),
        ({"k": {"\ud83d": 1}}, "data.k"),
        ({"c": Client(name="\ud800", since=dt.date(2020, 1, 1))}, "data.c.name"),
    ],
)
def test_a_lone_surrogate_is_refused_here_not_by_the_storage_later(value: Any, path: str) -> None:
    with pytest.raises(SerializationError) as info:
        ser.dumps(value, path="data", step="s")
    assert info.value.path == path
    assert "surrogate" in str(info.value)
    str(info.value).encode("utf-8")  # the message itself can be stored


def test_a_surrogate_pair_written_properly_is_fine() -> None:
    assert ser.loads(ser.dumps({"emoji": "\U0001f600"}, path="d")) == {"emoji": "\U0001f600"}


@pytest.mark.parametrize(
    ("value", "path"),
    [({"n": 10**5000}, "data.n"), ({"xs": [1, -(10**5000)]}, "data.xs[1]"), ({"k": {10**5000: 1}}, "data.k")],
)
def test_an_int_too_large_for_the_decoder_is_refused(value: Any, path: str) -> None:
    with pytest.raises(SerializationError) as info:
        ser.dumps(value, path="data", step="s")
    assert info.value.path == path
    assert "digits" in str(info.value)


def test_loads_of_text_deeper_than_the_decoder_takes_is_a_serialisation_error() -> None:
    with pytest.raises(SerializationError) as info:
        ser.loads("[" * 100_000 + "]" * 100_000)
    assert "deep" in str(info.value)


def test_loads_of_an_int_past_the_digit_limit_is_a_serialisation_error() -> None:
    with pytest.raises(SerializationError) as info:
        ser.loads('{"n": ' + "7" * 5000 + "}")
    assert "digits" in str(info.value)


@pytest.mark.parametrize(
    "bad",
    [_nested(100_000), {1: "a", "1": "b"}, "lone \ud800", 10**5000],
    ids=["deep", "collision", "surrogate", "huge-int"],
)
def test_a_hurtful_output_fails_the_step_and_nothing_is_stored(make_engine: EngineFactory, bad: Any) -> None:
    engine = make_engine()

    def produce(ctx: WorkflowContext[Any]) -> Any:
        ctx.data["seen"] = True
        return bad

    flow = create_workflow("hurt").step("produce", produce, retries=2).step("after", lambda ctx: 1)
    result = engine.execute_sync(flow, id="h-1")
    assert result.status is RunStatus.FAILED
    assert result.error_type == "SerializationError"
    assert result.error is not None and "outputs.produce" in result.error and "'produce'" in result.error
    stored = make_engine().get_sync("h-1")
    assert stored.status is RunStatus.FAILED
    assert stored.data == {}
    assert "produce" not in stored.outputs
    assert stored.history[0].attempts == 1


@pytest.mark.parametrize(
    "bad",
    [{1: "a", "1": "b"}, "\ud800", 10**5000, _nested(100_000)],
    ids=["collision", "surrogate", "int", "deep"],
)
def test_a_hurtful_input_is_refused_before_anything_is_stored(make_engine: EngineFactory, bad: Any) -> None:
    engine = make_engine()
    with pytest.raises(SerializationError) as info:
        engine.execute_sync(create_workflow("hurt").step("a", lambda ctx: None), {"x": bad}, id="in-2")
    assert info.value.path.startswith("input.x")
    assert engine.list_sync() == []


def test_loads_of_text_that_is_not_json_is_a_serialisation_error() -> None:
    with pytest.raises(SerializationError) as info:
        ser.loads("{broken", path="data")
    assert info.value.path == "data" and "not valid JSON" in str(info.value)
