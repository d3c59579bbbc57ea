"""The workflow the serverless examples run, and what their handlers share.

    validate ──▶ reserve ──▶ approval ──▶ charge (commit) ──▶ notify
                 ↺ release   Flux.wait("approval")
                             for orders of 1000.00 or more

An order is validated, its items reserved, and (when it is large) the run waits for a
manager's approval signal; then the card is charged once, with the step's idempotency key,
and the customer notified. A rejected order fails at `charge` and its reservation is
released (saga compensation).

The services are simulated in memory, so that the examples run anywhere; a real function
would call its warehouse and payment APIs in the same places.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, TypedDict

try:
    import flux  # noqa: F401
except ModuleNotFoundError:  # a source checkout without `pip install -e .`
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from flux import (
    Backoff,
    FatalError,
    Flux,
    FluxEngine,
    FluxError,
    FluxResult,
    InputValidationError,
    RunConflictError,
    RunNotFoundError,
    RunStateError,
    RunStatus,
    WaitRequest,
    WorkflowContext,
    create_workflow,
)

#: Orders from this amount (in cents) on wait for a manager.
APPROVAL_LIMIT = 100_000

FAST = Backoff(initial=0.05, factor=2.0, max=1.0, jitter=0)

#: A run in one of these states is over: a redelivered message must not start it again.
FINISHED = frozenset(
    {RunStatus.COMPLETED, RunStatus.FAILED, RunStatus.ROLLED_BACK, RunStatus.ROLLBACK_FAILED}
)


class OrderInput(TypedDict):
    order_id: str
    customer: str
    amount_cents: int
    items: list[str]


# ---------------------------------------------------------------- simulated services


class Services:
    """The warehouse, the payment provider and the mailer, in memory."""

    def __init__(self) -> None:
        self.reserved: dict[str, list[str]] = {}
        self.released: list[str] = []
        #: Charges by idempotency key: a retried or replayed charge is not charged again.
        self.charges: dict[str, int] = {}
        self.charge_calls = 0
        self.mails: list[str] = []


services = Services()


def reset_services() -> Services:
    global services
    services = Services()
    return services


# ---------------------------------------------------------------- the workflow


def validate(ctx: WorkflowContext[OrderInput]) -> dict[str, Any]:
    order = ctx.input
    if order["amount_cents"] <= 0:
        raise FatalError(f"order {order['order_id']}: the amount must be positive")
    if not order["items"]:
        raise FatalError(f"order {order['order_id']}: no items")
    return {"items": len(order["items"])}


def reserve(ctx: WorkflowContext[OrderInput]) -> dict[str, Any]:
    services.reserved[ctx.id] = list(ctx.input["items"])
    ctx.data["reservation"] = f"R-{ctx.input['order_id']}"
    return {"reservation": ctx.data["reservation"]}


def release(ctx: WorkflowContext[OrderInput]) -> None:
    services.reserved.pop(ctx.id, None)
    services.released.append(str(ctx.data.get("reservation")))


def request_approval(ctx: WorkflowContext[OrderInput]) -> dict[str, Any] | WaitRequest:
    if ctx.input["amount_cents"] < APPROVAL_LIMIT:
        return {"approved": True, "by": "policy"}
    return Flux.wait("approval")  # the signal's payload becomes this step's output


def charge(ctx: WorkflowContext[OrderInput]) -> dict[str, Any]:
    decision: dict[str, Any] = ctx.outputs["approval"]
    if not decision.get("approved"):
        raise FatalError(f"order {ctx.input['order_id']} rejected by {decision.get('by', 'unknown')}")
    services.charge_calls += 1
    services.charges.setdefault(ctx.idempotency_key, ctx.input["amount_cents"])
    return {"charged_cents": ctx.input["amount_cents"], "payment": ctx.idempotency_key}


def notify(ctx: WorkflowContext[OrderInput]) -> str:
    services.mails.append(f"{ctx.input['customer']}: order {ctx.input['order_id']} confirmed")
    return "sent"


order_flow = (
    create_workflow("serverless-order", OrderInput)
    .step("validate", validate, retries=0)
    .step("reserve", reserve, compensate=release, backoff=FAST)
    .step("approval", request_approval)
    .commit("charge", charge, retries=2, backoff=FAST)
    .step("notify", notify, backoff=FAST)
)


# ---------------------------------------------------------------- what the handlers share


def start_once_sync(engine: FluxEngine, run_id: str, order: Any) -> FluxResult:
    """Start the run `run_id` for a queue message, once: a redelivered message gets the
    run as it stands (completed, failed or waiting) and does not start it again; a run that
    a dead invocation left unfinished goes on from its first unfinished step."""
    try:
        existing = engine.get_sync(run_id)
    except RunNotFoundError:
        existing = None
    if existing is not None and existing.status in FINISHED:
        return existing
    return engine.execute_sync(order_flow, order, id=run_id)


async def start_once(engine: FluxEngine, run_id: str, order: Any) -> FluxResult:
    """`start_once_sync` for async handlers."""
    try:
        existing = await engine.get(run_id)
    except RunNotFoundError:
        existing = None
    if existing is not None and existing.status in FINISHED:
        return existing
    return await engine.execute(order_flow, order, id=run_id)


def describe(result: FluxResult) -> dict[str, Any]:
    """A run as a JSON-ready dict, for a response body."""
    return {
        "id": result.id,
        "status": result.status.value,
        "waiting_for": result.waiting_for,
        "error": result.error,
        "outputs": json.loads(json.dumps(dict(result.outputs), default=str)),
    }


def status_code(result: FluxResult) -> int:
    """200 when the order went through, 202 while it waits or runs elsewhere, 422 when it failed."""
    if result.status is RunStatus.COMPLETED:
        return 200
    if result.status in (RunStatus.SUSPENDED, RunStatus.RUNNING, RunStatus.ROLLING_BACK, RunStatus.PENDING):
        return 202
    return 422


def error_code(exc: FluxError) -> int:
    """The HTTP status of an error the engine raised for a request."""
    if isinstance(exc, InputValidationError):
        return 400
    if isinstance(exc, RunNotFoundError):
        return 404
    if isinstance(exc, (RunConflictError, RunStateError)):
        return 409
    return 500
