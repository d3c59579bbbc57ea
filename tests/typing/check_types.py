"""Static checks of the builder's typing: not a test module, never run or collected.

`.input(T)` types `ctx.input` as `T` for every handler, `when` and compensation of the
workflow, lambdas included. Checked with both type checkers (Python 3.11+ for
`typing.assert_type`):

    mypy --strict --python-version 3.11 tests/typing/check_types.py
    pyright tests/typing/check_types.py

The lines marked `# type: ignore[arg-type]` must be errors: mypy --strict reports an
ignore that is not needed (`warn_unused_ignores`), and so does pyright with the setting
below, so both checkers fail if a wrongly typed handler is ever accepted.
"""

# pyright: strict, reportUnnecessaryTypeIgnoreComment=true

from __future__ import annotations

import dataclasses
from typing import Any, TypedDict, assert_type

import flux
from flux import (
    Flux,
    FluxEngine,
    FluxResult,
    StepExecution,
    WaitRequest,
    Workflow,
    WorkflowContext,
    create_workflow,
)


class OrderInput(TypedDict):
    order_id: str
    qty: int


@dataclasses.dataclass
class BookingInput:
    booking_id: str
    seats: int


# ------------------------------------------------------------------ TypedDict input


def fetch(ctx: WorkflowContext[OrderInput]) -> dict[str, int]:
    assert_type(ctx.input, OrderInput)
    assert_type(ctx.input["qty"], int)
    assert_type(ctx.id, str)
    assert_type(ctx.attempt, int)
    assert_type(ctx.idempotency_key, str)
    assert_type(ctx.cancelled, bool)
    assert_type(ctx.history, list[StepExecution])
    ctx.data["qty"] = ctx.input["qty"]
    return {"qty": ctx.input["qty"]}


async def charge(ctx: WorkflowContext[OrderInput]) -> str:
    assert_type(ctx.input["order_id"], str)
    return ctx.input["order_id"]


def refund(ctx: WorkflowContext[OrderInput]) -> None:
    assert_type(ctx.input, OrderInput)


def ask(ctx: WorkflowContext[OrderInput]) -> WaitRequest:
    return Flux.wait("approval")


orders = (
    create_workflow("orders")
    .input(OrderInput)
    .step("fetch", fetch)
    .step("charge", charge, retries=2, timeout=5.0, compensate=refund)
    .step("ask", ask)
    .step("big", lambda ctx: assert_type(ctx.input, OrderInput), when=lambda ctx: ctx.input["qty"] > 10)
    .commit("ship", lambda ctx: assert_type(ctx.input["order_id"], str))
)
assert_type(orders, Workflow[OrderInput])
assert_type(create_workflow("orders", OrderInput), Workflow[OrderInput])


# ------------------------------------------------------------------ dataclass input


def book(ctx: WorkflowContext[BookingInput]) -> int:
    assert_type(ctx.input, BookingInput)
    return ctx.input.seats


bookings = (
    create_workflow("bookings")
    .input(BookingInput)
    .step("book", book)
    .step("seats", lambda ctx: assert_type(ctx.input.seats, int))
    .version("v2")
)
assert_type(bookings, Workflow[BookingInput])


# ------------------------------------------------------------------ no input type


untyped = create_workflow("free").step("a", lambda ctx: assert_type(ctx.input, Any))
assert_type(untyped, Workflow[Any])


# ------------------------------------------------------------------ the engine


def sqlite_engine() -> FluxEngine:
    # SQLiteStorage is loaded lazily by flux.__getattr__; it must still be typed as itself.
    storage = flux.SQLiteStorage("./runs.db")
    assert_type(storage, flux.SQLiteStorage)
    return FluxEngine(storage)


async def run(engine: FluxEngine) -> None:
    result = await engine.execute(orders, {"order_id": "A1", "qty": 2}, id="A1")
    assert_type(result, FluxResult)
    assert_type(result.history, list[StepExecution])
    assert_type(await engine.list(status="completed"), list[FluxResult])
    assert_type(engine.get_sync("A1"), FluxResult)


# ------------------------------------------------------------------ handlers of the wrong type


def wrong_input(ctx: WorkflowContext[BookingInput]) -> None:
    return None


def not_a_handler(order: OrderInput) -> None:
    return None


create_workflow("orders").input(OrderInput).step("wrong", wrong_input)  # type: ignore[arg-type]
create_workflow("orders").input(OrderInput).commit("wrong", wrong_input)  # type: ignore[arg-type]
create_workflow("orders").input(OrderInput).step("plain", not_a_handler)  # type: ignore[arg-type]
create_workflow("orders").input(OrderInput).step("a", fetch, compensate=wrong_input)  # type: ignore[arg-type]
create_workflow("bookings").input(BookingInput).step("b", fetch)  # type: ignore[arg-type]
