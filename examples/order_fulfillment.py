"""Order fulfillment: validate, charge (retried on a flaky gateway), deduct stock once.

    validate ──▶ payment ──▶ deduct (commit) ──▶ confirm
                 retries=3    at-most-once,
                 timeout=2s   ctx.idempotency_key
                 refund on rollback

Three orders run:

* ``ORD-1001`` completes. The payment gateway answers its first two calls with a
  transient 503, so the payment step is retried twice (``step:retry`` in the trace) and
  then succeeds. The retries use the same ``ctx.idempotency_key``, so the gateway
  charges once.
* ``ORD-1002`` asks for 0 items: ``validate`` raises ``FatalError``, the run fails with
  no retry and nothing to compensate.
* ``ORD-1003`` asks for more than the warehouse holds: the ``deduct`` commit raises
  ``FatalError``, and the payment is refunded by its compensation (``rolled_back``).

Run it from the repository root::

    python examples/order_fulfillment.py

The trace goes to ``$FLUX_TRACE`` (default ``./.flux/trace.ndjson``); ``flux dev`` shows it.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import uuid
from decimal import Decimal
from pathlib import Path
from typing import Any, TypedDict

try:
    import flux  # noqa: F401
except ModuleNotFoundError:  # a source checkout without `pip install -e .`
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from flux import (
    Backoff,
    FatalError,
    FluxConsoleLogger,
    FluxEngine,
    FluxResult,
    JsonFileTraceSink,
    WorkflowContext,
    create_workflow,
)

TRACE_PATH = os.environ.get("FLUX_TRACE", "./.flux/trace.ndjson")

#: Short waits between attempts, so that the example runs in well under a second.
FAST = Backoff(initial=0.05, factor=2.0, jitter=0)


class OrderInput(TypedDict):
    order_id: str
    customer_email: str
    sku: str
    quantity: int
    unit_price: Decimal


# ---------------------------------------------------------------- simulated services


class GatewayUnavailable(Exception):
    """A transient payment gateway error: worth retrying."""


class PaymentGateway:
    """Answers its first `flaky_calls` calls with a 503, then works.

    Charges are keyed by idempotency key: charging the same key twice returns the first
    charge, as real payment APIs do.
    """

    def __init__(self, flaky_calls: int = 2) -> None:
        self.flaky_calls = flaky_calls
        self.calls = 0
        self.charges: dict[str, tuple[str, Decimal]] = {}
        self.refunds: list[str] = []

    async def charge(self, idempotency_key: str, amount: Decimal) -> str:
        await asyncio.sleep(0)  # a network call
        self.calls += 1
        if self.calls <= self.flaky_calls:
            raise GatewayUnavailable(f"payment gateway: 503 Service Unavailable (call {self.calls})")
        if idempotency_key not in self.charges:
            charge_id = f"ch_{len(self.charges) + 1:04d}"
            self.charges[idempotency_key] = (charge_id, amount)
        return self.charges[idempotency_key][0]

    async def refund(self, idempotency_key: str) -> str | None:
        await asyncio.sleep(0)
        charge = self.charges.get(idempotency_key)
        if charge is None:
            return None
        self.refunds.append(charge[0])
        return charge[0]


class Inventory:
    """Stock levels; a deduction is applied once per idempotency key."""

    def __init__(self, stock: dict[str, int]) -> None:
        self.stock = dict(stock)
        self.applied: dict[str, str] = {}

    def deduct(self, idempotency_key: str, sku: str, quantity: int) -> str:
        if idempotency_key in self.applied:
            return self.applied[idempotency_key]
        available = self.stock.get(sku, 0)
        if available < quantity:
            raise FatalError(f"out of stock: {quantity} x {sku} asked, {available} left")
        self.stock[sku] = available - quantity
        reservation = f"res_{len(self.applied) + 1:04d}"
        self.applied[idempotency_key] = reservation
        return reservation


class Mailer:
    def __init__(self) -> None:
        self.sent: list[tuple[str, str]] = []

    def send(self, to: str, subject: str) -> str:
        self.sent.append((to, subject))
        return f"msg_{len(self.sent):04d}"


gateway = PaymentGateway()
inventory = Inventory({"KB-42": 0})
mailer = Mailer()


def reset_services() -> None:
    """Fresh simulated services: every `run()` behaves the same."""
    global gateway, inventory, mailer
    gateway = PaymentGateway(flaky_calls=2)
    inventory = Inventory({"KB-42": 10, "MOUSE-7": 1})
    mailer = Mailer()


# ---------------------------------------------------------------- the workflow


def validate(ctx: WorkflowContext[OrderInput]) -> dict[str, str]:
    order = ctx.input
    if order["quantity"] <= 0:
        raise FatalError(f"order {order['order_id']}: quantity must be at least 1")
    if "@" not in order["customer_email"]:
        raise FatalError(f"order {order['order_id']}: invalid email {order['customer_email']!r}")
    total = order["unit_price"] * order["quantity"]
    ctx.data["total"] = total
    return {"order_id": order["order_id"], "total": str(total)}


async def charge_payment(ctx: WorkflowContext[OrderInput]) -> dict[str, str]:
    total: Decimal = ctx.data["total"]
    charge_id = await gateway.charge(ctx.idempotency_key, total)
    ctx.data["charge_id"] = charge_id
    return {"charge_id": charge_id, "amount": str(total), "attempt": str(ctx.attempt)}


async def refund_payment(ctx: WorkflowContext[OrderInput]) -> None:
    refunded = await gateway.refund(ctx.idempotency_key)
    ctx.data["refunded"] = refunded


def deduct_inventory(ctx: WorkflowContext[OrderInput]) -> dict[str, str]:
    order = ctx.input
    reservation = inventory.deduct(ctx.idempotency_key, order["sku"], order["quantity"])
    return {"reservation": reservation, "idempotency_key": ctx.idempotency_key}


def send_confirmation(ctx: WorkflowContext[OrderInput]) -> dict[str, str]:
    order = ctx.input
    message_id = mailer.send(order["customer_email"], f"Order {order['order_id']} is on its way")
    return {"message_id": message_id}


order_flow = (
    create_workflow("order-fulfillment", OrderInput)
    .step("validate", validate)
    .step(
        "payment",
        charge_payment,
        retries=3,
        timeout=2.0,
        backoff=FAST,
        retry_on=(GatewayUnavailable,),
        compensate=refund_payment,
    )
    .commit("deduct", deduct_inventory, retries=0)
    .step("confirm", send_confirmation, retries=1, backoff=FAST)
)


# ---------------------------------------------------------------- the scenario


def _order(order_id: str, sku: str, quantity: int, price: str) -> OrderInput:
    return OrderInput(
        order_id=order_id,
        customer_email="ada@example.com",
        sku=sku,
        quantity=quantity,
        unit_price=Decimal(price),
    )


async def run(engine: FluxEngine) -> list[FluxResult]:
    """Three orders: one completes after two payment retries, one is invalid, one is
    out of stock and rolled back (the payment is refunded)."""
    reset_services()
    tag = uuid.uuid4().hex[:6]  # unique run ids, so that runs appended to one trace never mix
    orders = [
        _order("ORD-1001", "KB-42", 2, "49.90"),  # completes after two payment retries
        _order("ORD-1002", "KB-42", 0, "49.90"),  # invalid: fails in validate
        _order("ORD-1003", "MOUSE-7", 3, "19.99"),  # out of stock: payment refunded
    ]
    results = []
    for order in orders:
        results.append(await engine.execute(order_flow, order, id=f"{order['order_id']}-{tag}"))
    # A redelivered message with the same id returns the stored result: nothing runs again,
    # the customer is charged once (the gateway still holds two charges, not three).
    await engine.execute(order_flow, orders[0], id=results[0].id)
    return results


# ---------------------------------------------------------------- running it


def _json(value: Any) -> str:
    return json.dumps(value, default=str, ensure_ascii=False)


def show(result: FluxResult) -> None:
    print(f"{result.name} {result.id}: {result.status.value}")
    for step in result.history:
        extra = f" ({step.attempts} attempts)" if step.attempts > 1 else ""
        print(f"  {step.name:<10} {step.status.value}{extra}")
    if result.error:
        print(f"  error:   {result.error_type} in '{result.failed_step}': {result.error}")
    print(f"  data:    {_json(result.data)}")
    print(f"  outputs: {_json(dict(result.outputs))}")


async def _main() -> None:
    engine = FluxEngine(
        trace=JsonFileTraceSink(TRACE_PATH, reset=False),
        logger=FluxConsoleLogger(),
    )
    try:
        for result in await run(engine):
            show(result)
    finally:
        await engine.close()
    print(f"gateway: {gateway.calls} calls, {len(gateway.charges)} charges, refunds {gateway.refunds}")
    print(f"stock left: {inventory.stock}")
    print(f"trace: {TRACE_PATH}")


def main() -> None:
    asyncio.run(_main())


if __name__ == "__main__":
    main()
