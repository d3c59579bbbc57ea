"""Checkout with parallel checks: reserve the stock and score the fraud risk at once.

                 ┌─ stock  (reserve; release on rollback) ─┐
    validate ──▶ checks                                    ├──▶ charge (commit) ──▶ confirm
                 └─ fraud  (a slow external scorer)  ──────┘

``.parallel("checks", step("stock", ...), step("fraud", ...))`` runs both branches at the
same time: the checkout waits for the slower one, not for the sum of both. Each branch is
a durable step of its own (stored, retried and traced alone, its events carry
``group="checks"``). Each sees ``ctx.data`` as it stood when the group began; their changes
(``reservation`` from one, ``risk`` from the other) are merged when both have ended.
``ctx.outputs["checks"]`` maps each branch to its output.

Three checkouts:

* ``CHK-ada`` passes both checks, is charged and confirmed: ``completed``.
* ``CHK-mallory`` has a fraud score over the limit: the fraud branch fails for good
  (``FatalError``) after the stock branch has reserved the items, so the saga releases
  that reservation: ``rolled_back``, and the stock is back where it was.
* ``CHK-grace`` asks for more than the warehouse holds: the stock branch fails at once,
  and the fraud check still waiting for its scorer is cancelled (it never finishes, and
  there is nothing to undo): ``failed``.

Runs are stored in SQLite at ``$FLUX_DB`` (default ``./.flux/examples.db``); the trace goes
to ``$FLUX_TRACE`` (default ``./.flux/trace.ndjson``). Run it from the repository root::

    python examples/checkout_parallel.py
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import uuid
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

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
    step,
)

TRACE_PATH = os.environ.get("FLUX_TRACE", "./.flux/trace.ndjson")
DB_PATH = os.environ.get("FLUX_DB", "./.flux/examples.db")

FAST = Backoff(initial=0.05, factor=2.0, jitter=0)

#: A fraud score above this refuses the order.
FRAUD_LIMIT = 80


@dataclass
class Checkout:
    order_id: str
    customer: str
    sku: str
    quantity: int
    unit_price: Decimal


# ---------------------------------------------------------------- simulated services


class Inventory:
    """A warehouse: a reservation takes units out of ``stock`` until it is released."""

    #: A local database: quick.
    latency = 0.02

    def __init__(self) -> None:
        self.stock = {"KB-42": 10, "MOUSE-7": 1}
        self.reservations: dict[str, tuple[str, int]] = {}
        self.released: list[str] = []

    async def reserve(self, key: str, sku: str, quantity: int) -> str:
        await asyncio.sleep(self.latency)
        if key in self.reservations:  # a retried attempt: the same reservation
            return key
        left = self.stock.get(sku, 0)
        if quantity > left:
            raise FatalError(f"out of stock: {quantity} x {sku} asked, {left} left")
        self.stock[sku] = left - quantity
        self.reservations[key] = (sku, quantity)
        return key

    async def release(self, key: str) -> bool:
        await asyncio.sleep(self.latency / 2)
        held = self.reservations.pop(key, None)
        if held is None:
            return False
        sku, quantity = held
        self.stock[sku] += quantity
        self.released.append(key)
        return True


class FraudScorer:
    """An external risk API: slow, and it scores by customer."""

    #: Slower than a reservation by more than any pacing of `flux dev --demo` (at most 160 ms
    #: a step), so that the stock branch always ends first.
    latency = 0.25

    def __init__(self) -> None:
        self.scores = {"ada@example.com": 12, "grace@example.com": 5, "mallory@example.com": 93}
        self.started: list[str] = []
        self.finished: list[str] = []

    async def score(self, order: Checkout) -> int:
        self.started.append(order.order_id)
        await asyncio.sleep(self.latency)  # a cancelled check stops here
        self.finished.append(order.order_id)
        return self.scores.get(order.customer, 50)


class Gateway:
    def __init__(self) -> None:
        self.charges: list[tuple[str, Decimal]] = []

    def charge(self, key: str, amount: Decimal) -> str:
        self.charges.append((key, amount))
        return f"ch_{len(self.charges):04d}"


inventory = Inventory()
scorer = FraudScorer()
gateway = Gateway()
mailer: list[str] = []


def reset_services() -> None:
    global inventory, scorer, gateway
    inventory = Inventory()
    scorer = FraudScorer()
    gateway = Gateway()
    mailer.clear()


# ---------------------------------------------------------------- the workflow


def validate(ctx: WorkflowContext[Checkout]) -> dict[str, Any]:
    order = ctx.input
    if order.quantity < 1:
        raise FatalError(f"order {order.order_id}: quantity must be at least 1, got {order.quantity}")
    total = order.unit_price * order.quantity
    ctx.data["total"] = total
    return {"total": total}


async def reserve_stock(ctx: WorkflowContext[Checkout]) -> dict[str, Any]:
    order = ctx.input
    ref = await inventory.reserve(ctx.idempotency_key, order.sku, order.quantity)
    ctx.data["reservation"] = ref
    return {"reservation": ref, "sku": order.sku, "quantity": order.quantity}


async def release_stock(ctx: WorkflowContext[Checkout]) -> None:
    # The reservation is keyed by the branch's idempotency key, the same in its compensation.
    await inventory.release(ctx.idempotency_key)


async def fraud_check(ctx: WorkflowContext[Checkout]) -> dict[str, Any]:
    score = await scorer.score(ctx.input)
    if score > FRAUD_LIMIT:
        raise FatalError(f"fraud score {score} over the limit of {FRAUD_LIMIT} for {ctx.input.customer}")
    ctx.data["risk"] = score
    return {"score": score}


def charge(ctx: WorkflowContext[Checkout]) -> dict[str, Any]:
    # Both branches' changes are here: the group merged them when it ended.
    total: Decimal = ctx.data["total"]
    return {"charge": gateway.charge(ctx.idempotency_key, total), "amount": total, "risk": ctx.data["risk"]}


def confirm(ctx: WorkflowContext[Checkout]) -> str:
    checks = ctx.outputs["checks"]  # {"stock": ..., "fraud": ...}
    mailer.append(ctx.input.customer)
    return (
        f"{ctx.input.order_id}: {checks['stock']['quantity']} x {checks['stock']['sku']} reserved, "
        f"risk {checks['fraud']['score']}, charged {ctx.outputs['charge']['amount']}"
    )


checkout_flow = (
    create_workflow("checkout-parallel", Checkout)
    .step("validate", validate)
    .parallel(
        "checks",
        step("stock", reserve_stock, compensate=release_stock, retries=2, backoff=FAST),
        step("fraud", fraud_check, retries=2, backoff=FAST),
    )
    .commit("charge", charge)
    .step("confirm", confirm)
)


# ---------------------------------------------------------------- the scenario


async def run(engine: FluxEngine, tag: str | None = None) -> list[FluxResult]:
    """One checkout completes, one is rolled back by its fraud score (the reservation is
    released), one fails out of stock (the fraud check still running is cancelled)."""
    reset_services()
    tag = tag or uuid.uuid4().hex[:6]  # unique run ids, so that runs appended to one trace never mix
    orders = {
        "CHK-ada": Checkout("ORD-2001", "ada@example.com", "KB-42", 2, Decimal("49.90")),
        "CHK-mallory": Checkout("ORD-2002", "mallory@example.com", "KB-42", 3, Decimal("49.90")),
        "CHK-grace": Checkout("ORD-2003", "grace@example.com", "MOUSE-7", 4, Decimal("19.99")),
    }
    return [await engine.execute(checkout_flow, order, id=f"{name}-{tag}") for name, order in orders.items()]


# ---------------------------------------------------------------- running it


def _json(value: Any) -> str:
    return json.dumps(value, default=str, ensure_ascii=False)


def show(result: FluxResult) -> None:
    print(f"{result.name} {result.id}: {result.status.value}")
    for st in result.history:
        extra = f" ({st.attempts} attempts)" if st.attempts > 1 else ""
        print(f"  {st.name:<9} {st.status.value}{extra}")
    if result.error:
        print(f"  error:   {result.error_type} in '{result.failed_step}': {result.error}")
    print(f"  data:    {_json(result.data)}")
    if result.ok:
        print(f"  outputs: {_json(dict(result.outputs))}")


async def _main() -> None:
    Path(DB_PATH).parent.mkdir(parents=True, exist_ok=True)
    engine = FluxEngine(
        storage=f"sqlite:///{DB_PATH}",
        trace=JsonFileTraceSink(TRACE_PATH, reset=False),
        logger=FluxConsoleLogger(),
    )
    try:
        for result in await run(engine):
            show(result)
    finally:
        await engine.close()
    print(f"stock left: {inventory.stock} (released: {len(inventory.released)} reservation)")
    print(f"fraud checks started: {len(scorer.started)}, finished: {len(scorer.finished)}")
    print(f"charges: {len(gateway.charges)}")
    print(f"trace: {TRACE_PATH}")


def main() -> None:
    asyncio.run(_main())


if __name__ == "__main__":
    main()
