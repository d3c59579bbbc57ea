"""Retry a failed step: the mail provider is down, later it recovers; re-run from there.

    load_customer ──▶ render_invoice ──▶ send_invoice ──▶ archive
                                         provider down:
                                         3 attempts, then failed

``send_invoice`` fails on every attempt while the mail provider is down; after its
retries the run ends ``failed`` (nothing to compensate). Once the provider is back,
``engine.retry_step(flow, id, "send_invoice")`` runs that step again, and the steps
after it, with ``ctx.data`` as it was before the step first ran. The steps before it are
not repeated: the call counters printed at the end show ``load_customer`` and
``render_invoice`` ran once. ``ctx.idempotency_key`` is the same in every attempt, before
and after the retry, so the provider can recognise a repeated send.

Run it from the repository root::

    python examples/retry_failed_step.py

Runs are stored in SQLite at ``$FLUX_DB`` (default ``./.flux/examples.db``); the trace
goes to ``$FLUX_TRACE`` (default ``./.flux/trace.ndjson``).
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import uuid
from collections import Counter
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
DB_PATH = os.environ.get("FLUX_DB", "./.flux/examples.db")

FAST = Backoff(initial=0.05, factor=2.0, jitter=0)


class InvoiceJob(TypedDict):
    invoice_id: str
    customer_id: str
    amount: Decimal


# ---------------------------------------------------------------- simulated services


class ProviderDown(ConnectionError):
    """The mail provider does not answer."""


class MailProvider:
    def __init__(self) -> None:
        self.up = False
        self.sent: dict[str, str] = {}  # idempotency key -> message id
        self.keys_seen: list[str] = []

    def send(self, key: str, to: str, subject: str) -> str:
        self.keys_seen.append(key)
        if not self.up:
            raise ProviderDown("mail provider: connection refused (smtp.example.com:587)")
        if key not in self.sent:  # a repeated send with the same key is not sent twice
            self.sent[key] = f"<{len(self.sent) + 1}.invoice@mail.example>"
        return self.sent[key]


CUSTOMERS = {"C-7": {"name": "Ada Lovelace", "email": "ada@example.com"}}

mail = MailProvider()
#: How many times each step's handler was called.
calls: Counter[str] = Counter()


def reset_services() -> None:
    global mail
    mail = MailProvider()
    calls.clear()


# ---------------------------------------------------------------- the workflow


def load_customer(ctx: WorkflowContext[InvoiceJob]) -> dict[str, str]:
    calls["load_customer"] += 1
    customer = CUSTOMERS.get(ctx.input["customer_id"])
    if customer is None:
        raise FatalError(f"no customer {ctx.input['customer_id']!r}")
    ctx.data["email"] = customer["email"]
    return customer


def render_invoice(ctx: WorkflowContext[InvoiceJob]) -> dict[str, Any]:
    calls["render_invoice"] += 1
    job = ctx.input
    document = (
        f"INVOICE {job['invoice_id']}\nTo: {ctx.outputs['load_customer']['name']}\n"
        f"Amount due: {job['amount']:.2f} EUR\n"
    )
    ctx.data["document"] = f"{job['invoice_id']}.txt"
    return {"document": ctx.data["document"], "bytes": len(document.encode())}


def send_invoice(ctx: WorkflowContext[InvoiceJob]) -> dict[str, str]:
    calls["send_invoice"] += 1
    ctx.data["send_attempts"] = ctx.data.get("send_attempts", 0) + 1  # discarded on failure
    message_id = mail.send(ctx.idempotency_key, ctx.data["email"], f"Invoice {ctx.input['invoice_id']}")
    return {"message_id": message_id, "idempotency_key": ctx.idempotency_key}


def archive(ctx: WorkflowContext[InvoiceJob]) -> dict[str, str]:
    calls["archive"] += 1
    return {"archived": f"s3://invoices/2026/{ctx.data['document']}"}


invoice_flow = (
    create_workflow("invoice-delivery", InvoiceJob)
    .step("load_customer", load_customer, retries=1, backoff=FAST)
    .step("render_invoice", render_invoice, retries=1, backoff=FAST)
    .step("send_invoice", send_invoice, retries=2, backoff=FAST, retry_on=(ConnectionError,))
    .step("archive", archive, retries=1, backoff=FAST)
)


# ---------------------------------------------------------------- the scenario


async def run(engine: FluxEngine) -> list[FluxResult]:
    """The run fails while the provider is down; `retry_step` completes it once it is up.
    Returns both results of the run: failed, then completed."""
    reset_services()
    job = InvoiceJob(invoice_id="INV-2026-0042", customer_id="C-7", amount=Decimal("1200.00"))
    failed = await engine.execute(invoice_flow, job, id=f"INV-{uuid.uuid4().hex[:6]}")
    mail.up = True  # the provider recovers
    retried = await engine.retry_step(invoice_flow, failed.id, "send_invoice")
    return [failed, retried]


# ---------------------------------------------------------------- running it


def _json(value: Any) -> str:
    return json.dumps(value, default=str, ensure_ascii=False)


def show(result: FluxResult) -> None:
    print(f"{result.name} {result.id}: {result.status.value}")
    for step in result.history:
        extra = f" ({step.attempts} attempts)" if step.attempts > 1 else ""
        print(f"  {step.name:<15} {step.status.value}{extra}")
    if result.error:
        print(f"  error:   {result.error_type} in '{result.failed_step}': {result.error}")
    print(f"  data:    {_json(result.data)}")
    print(f"  outputs: {_json(dict(result.outputs))}")


async def _main() -> None:
    Path(DB_PATH).parent.mkdir(parents=True, exist_ok=True)
    engine = FluxEngine(
        storage=f"sqlite:///{DB_PATH}",
        trace=JsonFileTraceSink(TRACE_PATH, reset=False),
        logger=FluxConsoleLogger(),
    )
    try:
        failed, retried = await run(engine)
        print("while the mail provider is down:")
        show(failed)
        print("after it recovers, retry_step(..., 'send_invoice'):")
        show(retried)
    finally:
        await engine.close()
    print("handler calls: " + ", ".join(f"{name}={n}" for name, n in calls.items()))
    print(f"idempotency keys used by send_invoice: {sorted(set(mail.keys_seen))}")
    print(f"trace: {TRACE_PATH}")


def main() -> None:
    asyncio.run(_main())


if __name__ == "__main__":
    main()
