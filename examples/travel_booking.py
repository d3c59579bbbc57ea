"""Travel booking: a saga. Book a flight, a hotel and a car; if paying fails, undo them.

    flight ──▶ hotel ──▶ car ──▶ payment
    cancel     cancel    cancel   (FatalError: card declined)
    flight     hotel     car

Each booking has a ``compensate=`` handler that cancels it. When a later step fails for
good, the engine runs the compensations of the completed steps in reverse order
(car, hotel, flight) and the run ends ``rolled_back``. If a compensation itself fails
for good (after its retries), the run ends ``rollback_failed`` and that step is
``compensation_failed``: someone has to look at it.

Three trips:

* ``TRIP-lisbon`` pays and completes.
* ``TRIP-rome`` is paid with a card that is declined: ``rolled_back``; the car, the
  hotel and the flight are cancelled, in that order.
* ``TRIP-budapest`` is declined too, but the hotel's cancellation API is down for good:
  its compensation is retried, then gives up: ``rollback_failed``.

Run it from the repository root::

    python examples/travel_booking.py
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
)

TRACE_PATH = os.environ.get("FLUX_TRACE", "./.flux/trace.ndjson")

FAST = Backoff(initial=0.05, factor=2.0, jitter=0)

DECLINED_CARD = "4000-0000-0000-0002"


@dataclass
class TripRequest:
    traveler: str
    origin: str
    destination: str
    hotel: str
    nights: int
    card: str


# ---------------------------------------------------------------- simulated services


class CancellationUnavailable(Exception):
    """The provider cannot cancel right now."""


class Provider:
    """A booking API: bookings are keyed by idempotency key; cancellations are logged."""

    def __init__(self, kind: str, prices: dict[str, Decimal], broken_cancel: set[str]) -> None:
        self.kind = kind
        self.prices = prices
        self.broken_cancel = broken_cancel
        self.bookings: dict[str, str] = {}
        self.cancelled: list[str] = []
        self.cancel_calls = 0

    def book(self, key: str, what: str) -> tuple[str, Decimal]:
        if key not in self.bookings:
            self.bookings[key] = f"{self.kind[:3].upper()}-{len(self.bookings) + 1:03d}"
        return self.bookings[key], self.prices.get(what, self.prices["*"])

    def cancel(self, key: str, what: str) -> str | None:
        self.cancel_calls += 1
        if what in self.broken_cancel:
            raise CancellationUnavailable(f"{self.kind} API: cancellations for {what} are down")
        ref = self.bookings.get(key)
        if ref is not None and ref not in self.cancelled:
            self.cancelled.append(ref)
        return ref


class CardProcessor:
    def __init__(self) -> None:
        self.captured: list[tuple[str, Decimal]] = []

    def capture(self, card: str, amount: Decimal) -> str:
        if card == DECLINED_CARD:
            raise FatalError(f"payment declined: card ending {card[-4:]} (insufficient funds)")
        self.captured.append((card, amount))
        return f"pay_{len(self.captured):03d}"


airline = Provider("airline", {"*": Decimal("189.00")}, set())
hotels = Provider("hotel", {"*": Decimal("95.00"), "Hotel Gellert": Decimal("140.00")}, {"Hotel Gellert"})
cars = Provider("car", {"*": Decimal("39.50")}, set())
cards = CardProcessor()

#: The order in which compensations ran, across the scenario: ("TRIP-rome", "car"), ...
undo_log: list[tuple[str, str]] = []


def reset_services() -> None:
    global airline, hotels, cars, cards
    airline = Provider("airline", {"*": Decimal("189.00")}, set())
    hotels = Provider("hotel", {"*": Decimal("95.00"), "Hotel Gellert": Decimal("140.00")}, {"Hotel Gellert"})
    cars = Provider("car", {"*": Decimal("39.50")}, set())
    cards = CardProcessor()
    undo_log.clear()


# ---------------------------------------------------------------- the workflow


def _add_cost(ctx: WorkflowContext[TripRequest], amount: Decimal) -> None:
    ctx.data["total"] = ctx.data.get("total", Decimal("0")) + amount


def _undone(ctx: WorkflowContext[TripRequest], what: str, ref: str | None) -> None:
    undo_log.append((ctx.id, what))
    ctx.data.setdefault("cancelled", []).append(f"{what} {ref}")


def book_flight(ctx: WorkflowContext[TripRequest]) -> dict[str, Any]:
    trip = ctx.input
    ref, price = airline.book(ctx.idempotency_key, f"{trip.origin}-{trip.destination}")
    _add_cost(ctx, price)
    return {"booking": ref, "route": f"{trip.origin} -> {trip.destination}", "price": price}


def cancel_flight(ctx: WorkflowContext[TripRequest]) -> None:
    ref = airline.cancel(ctx.idempotency_key, f"{ctx.input.origin}-{ctx.input.destination}")
    _undone(ctx, "flight", ref)


def book_hotel(ctx: WorkflowContext[TripRequest]) -> dict[str, Any]:
    trip = ctx.input
    ref, price = hotels.book(ctx.idempotency_key, trip.hotel)
    _add_cost(ctx, price * trip.nights)
    return {"booking": ref, "hotel": trip.hotel, "nights": trip.nights, "price": price * trip.nights}


def cancel_hotel(ctx: WorkflowContext[TripRequest]) -> None:
    ref = hotels.cancel(ctx.idempotency_key, ctx.input.hotel)
    _undone(ctx, "hotel", ref)


def book_car(ctx: WorkflowContext[TripRequest]) -> dict[str, Any]:
    trip = ctx.input
    ref, price = cars.book(ctx.idempotency_key, trip.destination)
    _add_cost(ctx, price * trip.nights)
    return {"booking": ref, "days": trip.nights, "price": price * trip.nights}


def cancel_car(ctx: WorkflowContext[TripRequest]) -> None:
    ref = cars.cancel(ctx.idempotency_key, ctx.input.destination)
    _undone(ctx, "car", ref)


def take_payment(ctx: WorkflowContext[TripRequest]) -> dict[str, Any]:
    total: Decimal = ctx.data["total"]
    return {"payment": cards.capture(ctx.input.card, total), "amount": total}


travel_flow = (
    create_workflow("travel-booking", TripRequest)
    .step("flight", book_flight, compensate=cancel_flight, retries=2, backoff=FAST)
    # retries=1 also applies to its compensation: a failed cancellation is tried twice.
    .step("hotel", book_hotel, compensate=cancel_hotel, retries=1, backoff=FAST)
    .step("car", book_car, compensate=cancel_car, retries=2, backoff=FAST)
    .step("payment", take_payment, retries=2, backoff=FAST)
)


# ---------------------------------------------------------------- the scenario


async def run(engine: FluxEngine) -> list[FluxResult]:
    """A trip that completes, one rolled back, and one whose rollback fails."""
    reset_services()
    tag = uuid.uuid4().hex[:6]
    trips = {
        "TRIP-lisbon": TripRequest("Ada Lovelace", "LHR", "LIS", "Hotel Avenida", 3, "4242-4242-4242-4242"),
        "TRIP-rome": TripRequest("Alan Turing", "MAN", "FCO", "Hotel Artemide", 2, DECLINED_CARD),
        "TRIP-budapest": TripRequest("Grace Hopper", "JFK", "BUD", "Hotel Gellert", 4, DECLINED_CARD),
    }
    return [await engine.execute(travel_flow, trip, id=f"{name}-{tag}") for name, trip in trips.items()]


# ---------------------------------------------------------------- running it


def _json(value: Any) -> str:
    return json.dumps(value, default=str, ensure_ascii=False)


def show(result: FluxResult) -> None:
    print(f"{result.name} {result.id}: {result.status.value}")
    for step in result.history:
        extra = f" ({step.attempts} attempts)" if step.attempts > 1 else ""
        error = f"  [{step.error}]" if step.error and step.name != result.failed_step else ""
        print(f"  {step.name:<8} {step.status.value}{extra}{error}")
    if result.error:
        print(f"  error:   {result.error_type} in '{result.failed_step}': {result.error}")
    print(f"  data:    {_json(result.data)}")
    if result.ok:
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
    print("compensations, in the order they ran:")
    for run_id, what in undo_log:
        print(f"  {run_id}: cancel {what}")
    print(f"trace: {TRACE_PATH}")


def main() -> None:
    asyncio.run(_main())


if __name__ == "__main__":
    main()
