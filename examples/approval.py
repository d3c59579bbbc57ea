"""Approval: an expense claim waits for a manager's decision (suspend and signal).

    submit ──▶ approval ──▶ decide ──▶ payout (commit)
               Flux.wait("approval")
               unless small enough to auto-approve

A claim over the auto-approval limit makes the ``approval`` step return
``Flux.wait("approval")``: the run is stored as ``suspended`` with
``waiting_for == "approval"`` and ``execute`` returns at once. Later (in this process or
any other one that shares the storage) ``engine.signal(flow, id, "approval", payload)``
completes the step with the payload as its output, and the run goes on.

The scenario: claim ``EXP-1`` is approved by a signal and paid; ``EXP-2`` is small and
auto-approved; ``EXP-3`` is left waiting for its manager.

Run it from the repository root::

    python examples/approval.py                      # the scenario
    python examples/approval.py approve <run id>     # approve a waiting claim later
    python examples/approval.py reject <run id>      # or reject it

Runs are stored in SQLite at ``$FLUX_DB`` (default ``./.flux/examples.db``), so a claim
left waiting can be approved by a later command; the trace goes to ``$FLUX_TRACE``
(default ``./.flux/trace.ndjson``).
"""

from __future__ import annotations

import argparse
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
    Flux,
    FluxConsoleLogger,
    FluxEngine,
    FluxResult,
    JsonFileTraceSink,
    RunNotFoundError,
    RunStateError,
    WaitRequest,
    WorkflowContext,
    create_workflow,
)

TRACE_PATH = os.environ.get("FLUX_TRACE", "./.flux/trace.ndjson")
DB_PATH = os.environ.get("FLUX_DB", "./.flux/examples.db")

FAST = Backoff(initial=0.05, factor=2.0, jitter=0)

#: Claims up to this amount need no manager.
AUTO_APPROVE_LIMIT = Decimal("100.00")


class ExpenseClaim(TypedDict):
    claim_id: str
    employee: str
    manager: str
    amount: Decimal
    description: str


# ---------------------------------------------------------------- simulated services


class Inbox:
    """Where approval requests go (a real one would e-mail the manager a link)."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, str]] = []

    def ask(self, manager: str, run_id: str, text: str) -> None:
        self.requests.append((manager, f"{text} -> approve run {run_id}"))


class Ledger:
    """Payouts, applied once per idempotency key."""

    def __init__(self) -> None:
        self.transfers: dict[str, tuple[str, Decimal]] = {}

    def pay(self, key: str, employee: str, amount: Decimal) -> str:
        if key not in self.transfers:
            self.transfers[key] = (f"TR-{len(self.transfers) + 1:04d}", amount)
        return self.transfers[key][0]


inbox = Inbox()
ledger = Ledger()


def reset_services() -> None:
    global inbox, ledger
    inbox = Inbox()
    ledger = Ledger()


# ---------------------------------------------------------------- the workflow


def submit(ctx: WorkflowContext[ExpenseClaim]) -> dict[str, Any]:
    claim = ctx.input
    if claim["amount"] <= 0:
        raise FatalError(f"claim {claim['claim_id']}: the amount must be positive")
    ctx.data["claim"] = {"id": claim["claim_id"], "amount": claim["amount"]}
    return {"claim_id": claim["claim_id"], "amount": claim["amount"]}


def request_approval(ctx: WorkflowContext[ExpenseClaim]) -> dict[str, Any] | WaitRequest:
    claim = ctx.input
    if claim["amount"] <= AUTO_APPROVE_LIMIT:
        return {"approved": True, "by": "policy", "note": f"under {AUTO_APPROVE_LIMIT}"}
    inbox.ask(
        claim["manager"], ctx.id, f"{claim['employee']} claims {claim['amount']} for {claim['description']}"
    )
    ctx.data["asked"] = claim["manager"]
    return Flux.wait("approval")  # the signal's payload becomes this step's output


def decide(ctx: WorkflowContext[ExpenseClaim]) -> dict[str, Any]:
    decision: dict[str, Any] = ctx.outputs["approval"]
    by = str(decision.get("by", "unknown"))
    if not decision.get("approved"):
        reason = decision.get("reason", "no reason given")
        raise FatalError(f"claim {ctx.input['claim_id']} rejected by {by}: {reason}")
    ctx.data["approved_by"] = by
    return {"approved_by": by}


def payout(ctx: WorkflowContext[ExpenseClaim]) -> dict[str, Any]:
    claim = ctx.input
    transfer = ledger.pay(ctx.idempotency_key, claim["employee"], claim["amount"])
    return {"transfer": transfer, "amount": claim["amount"], "to": claim["employee"]}


approval_flow = (
    create_workflow("expense-approval", ExpenseClaim)
    .step("submit", submit, retries=0)
    .step("approval", request_approval, retries=1, backoff=FAST)
    .step("decide", decide, retries=0)
    .commit("payout", payout, retries=2, backoff=FAST)
)


# ---------------------------------------------------------------- the scenario


def _claim(claim_id: str, employee: str, amount: str, description: str) -> ExpenseClaim:
    return ExpenseClaim(
        claim_id=claim_id,
        employee=employee,
        manager="maria@example.com",
        amount=Decimal(amount),
        description=description,
    )


async def run(engine: FluxEngine, tag: str | None = None) -> list[FluxResult]:
    """EXP-1 waits, is approved by a signal and paid; EXP-2 is auto-approved; EXP-3 is
    left suspended. Returns each call's result in order: EXP-1 suspended, EXP-1
    completed, EXP-2 completed, EXP-3 suspended. Run ids end with ``tag`` (random if
    not given; ``flux dev --demo`` gives ``demo``, so that its waiting run is ``EXP-3-demo``)."""
    reset_services()
    tag = tag or uuid.uuid4().hex[:6]
    first = await engine.execute(
        approval_flow, _claim("EXP-1", "ada", "420.00", "conference ticket"), id=f"EXP-1-{tag}"
    )
    approved = await engine.signal(
        approval_flow, first.id, "approval", {"approved": True, "by": "maria@example.com"}
    )
    small = await engine.execute(approval_flow, _claim("EXP-2", "alan", "35.50", "taxi"), id=f"EXP-2-{tag}")
    waiting = await engine.execute(
        approval_flow, _claim("EXP-3", "grace", "1250.00", "new laptop"), id=f"EXP-3-{tag}"
    )
    return [first, approved, small, waiting]


# ---------------------------------------------------------------- running it


def _json(value: Any) -> str:
    return json.dumps(value, default=str, ensure_ascii=False)


def show(result: FluxResult) -> None:
    waiting = f" (waiting for '{result.waiting_for}')" if result.waiting_for else ""
    print(f"{result.name} {result.id}: {result.status.value}{waiting}")
    for step in result.history:
        print(f"  {step.name:<9} {step.status.value}")
    if result.error:
        print(f"  error:   {result.error_type} in '{result.failed_step}': {result.error}")
    print(f"  data:    {_json(result.data)}")
    print(f"  outputs: {_json(dict(result.outputs))}")


def _engine() -> FluxEngine:
    Path(DB_PATH).parent.mkdir(parents=True, exist_ok=True)
    return FluxEngine(
        storage=f"sqlite:///{DB_PATH}",
        trace=JsonFileTraceSink(TRACE_PATH, reset=False),
        logger=FluxConsoleLogger(),
    )


async def _scenario() -> None:
    engine = _engine()
    try:
        results = await run(engine)
        for result in results:
            show(result)
    finally:
        await engine.close()
    waiting = results[-1]
    print(f"{waiting.id} is still waiting for its manager. Decide it later with:")
    print(f"  python examples/approval.py approve {waiting.id}")
    print(f"  python examples/approval.py reject {waiting.id}")
    print(f"trace: {TRACE_PATH}")


async def _decide(run_id: str, approved: bool, by: str, reason: str | None) -> None:
    payload: dict[str, Any] = {"approved": approved, "by": by}
    if reason:
        payload["reason"] = reason
    engine = _engine()
    try:
        show(await engine.signal(approval_flow, run_id, "approval", payload))
    except (RunNotFoundError, RunStateError) as exc:  # not waiting (any more), or no such run
        print(f"cannot decide run {run_id}: {exc}", file=sys.stderr)
        raise SystemExit(1) from None
    finally:
        await engine.close()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    sub = parser.add_subparsers(dest="command")
    for name in ("approve", "reject"):
        cmd = sub.add_parser(name, help=f"{name} a claim that waits for approval")
        cmd.add_argument("run_id")
        cmd.add_argument("--by", default="maria@example.com")
        cmd.add_argument("--reason", default=None)
    args = parser.parse_args(argv)
    if args.command is None:
        asyncio.run(_scenario())
    else:
        asyncio.run(_decide(args.run_id, args.command == "approve", args.by, args.reason))


if __name__ == "__main__":
    main()
