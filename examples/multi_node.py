"""Multi-node notification: one alert goes out over email, Slack and a webhook, in turn.

    compose ──▶ email ──▶ slack ──▶ webhook ──▶ summary
                          flaky:
                          retried

Each node writes its delivery receipt into ``ctx.data["deliveries"]``, so later nodes
(and the final result) see what the earlier ones did. The Slack client drops the
connection on its first call: the step is retried (``step:retry`` in the trace) and the
failed attempt's changes to ``ctx.data`` are discarded, so the receipt is written once.

Run it from the repository root::

    python examples/multi_node.py
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import uuid
from pathlib import Path
from typing import Any, TypedDict

try:
    import flux  # noqa: F401
except ModuleNotFoundError:  # a source checkout without `pip install -e .`
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from flux import (
    Backoff,
    FluxConsoleLogger,
    FluxEngine,
    FluxResult,
    JsonFileTraceSink,
    WorkflowContext,
    create_workflow,
)

TRACE_PATH = os.environ.get("FLUX_TRACE", "./.flux/trace.ndjson")

FAST = Backoff(initial=0.05, factor=2.0, jitter=0)


class Alert(TypedDict):
    title: str
    message: str
    severity: str  # "info", "warning", "critical"
    email_to: list[str]
    slack_channel: str
    webhook_url: str


# ---------------------------------------------------------------- simulated services


class EmailService:
    def __init__(self) -> None:
        self.outbox: list[dict[str, Any]] = []

    async def send(self, to: list[str], subject: str, body: str) -> str:
        await asyncio.sleep(0)
        self.outbox.append({"to": to, "subject": subject, "body": body})
        return f"<{len(self.outbox)}.alert@mail.example>"


class SlackClient:
    """Drops the connection on its first `flaky_calls` calls, then posts."""

    def __init__(self, flaky_calls: int = 1) -> None:
        self.flaky_calls = flaky_calls
        self.calls = 0
        self.posts: list[tuple[str, str]] = []

    async def post(self, channel: str, text: str) -> str:
        await asyncio.sleep(0)
        self.calls += 1
        if self.calls <= self.flaky_calls:
            raise ConnectionResetError(f"slack: connection reset by peer (call {self.calls})")
        self.posts.append((channel, text))
        return f"1714000000.{len(self.posts):06d}"


class WebhookClient:
    def __init__(self) -> None:
        self.deliveries: list[tuple[str, dict[str, Any]]] = []

    async def post(self, url: str, payload: dict[str, Any], idempotency_key: str) -> int:
        await asyncio.sleep(0)
        self.deliveries.append((url, {**payload, "idempotency_key": idempotency_key}))
        return 202


email = EmailService()
slack = SlackClient()
webhook = WebhookClient()


def reset_services() -> None:
    global email, slack, webhook
    email = EmailService()
    slack = SlackClient(flaky_calls=1)
    webhook = WebhookClient()


# ---------------------------------------------------------------- the workflow

ICONS = {"info": "i", "warning": "!", "critical": "!!!"}


def compose(ctx: WorkflowContext[Alert]) -> dict[str, str]:
    alert = ctx.input
    subject = f"[{alert['severity'].upper()}] {alert['title']}"
    ctx.data["subject"] = subject
    ctx.data["deliveries"] = {}
    return {"subject": subject}


async def send_email(ctx: WorkflowContext[Alert]) -> dict[str, Any]:
    message_id = await email.send(ctx.input["email_to"], ctx.data["subject"], ctx.input["message"])
    receipt = {"message_id": message_id, "recipients": len(ctx.input["email_to"])}
    ctx.data["deliveries"]["email"] = receipt
    return receipt


async def post_slack(ctx: WorkflowContext[Alert]) -> dict[str, Any]:
    # Written before the call: if the call fails, the engine discards this change.
    ctx.data["deliveries"]["slack"] = {"attempt": ctx.attempt, "state": "sending"}
    text = f"{ICONS.get(ctx.input['severity'], '')} {ctx.data['subject']}: {ctx.input['message']}"
    ts = await slack.post(ctx.input["slack_channel"], text)
    receipt = {"ts": ts, "channel": ctx.input["slack_channel"], "attempt": ctx.attempt}
    ctx.data["deliveries"]["slack"] = receipt
    return receipt


async def call_webhook(ctx: WorkflowContext[Alert]) -> dict[str, Any]:
    payload = {
        "title": ctx.input["title"],
        "severity": ctx.input["severity"],
        "already_notified": sorted(ctx.data["deliveries"]),
    }
    status = await webhook.post(ctx.input["webhook_url"], payload, ctx.idempotency_key)
    receipt = {"status": status, "url": ctx.input["webhook_url"]}
    ctx.data["deliveries"]["webhook"] = receipt
    return receipt


def summary(ctx: WorkflowContext[Alert]) -> dict[str, Any]:
    deliveries: dict[str, Any] = ctx.data["deliveries"]
    return {"channels": sorted(deliveries), "slack_attempts": ctx.history[2].attempts}


notify_flow = (
    create_workflow("multi-node-notify", Alert)
    .step("compose", compose, retries=0)
    .step("email", send_email, retries=2, timeout=5.0, backoff=FAST)
    .step("slack", post_slack, retries=3, timeout=5.0, backoff=FAST, retry_on=(ConnectionError, TimeoutError))
    .step("webhook", call_webhook, retries=2, timeout=5.0, backoff=FAST)
    .step("summary", summary, retries=0)
)


# ---------------------------------------------------------------- the scenario


async def run(engine: FluxEngine) -> list[FluxResult]:
    """One alert over three channels; the Slack node fails once and is retried."""
    reset_services()
    alert = Alert(
        title="Disk almost full on db-1",
        message="/var/lib/postgresql is 93% full",
        severity="warning",
        email_to=["ops@example.com", "dba@example.com"],
        slack_channel="#ops-alerts",
        webhook_url="https://hooks.example.com/incidents",
    )
    return [await engine.execute(notify_flow, alert, id=f"ALERT-{uuid.uuid4().hex[:6]}")]


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
    for node, receipt in result.data.get("deliveries", {}).items():
        print(f"  data.deliveries.{node}: {_json(receipt)}")
    print(f"  outputs.summary: {_json(result.outputs.get('summary'))}")


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
    print(f"slack: {slack.calls} calls, {len(slack.posts)} post(s)")
    print(f"trace: {TRACE_PATH}")


def main() -> None:
    asyncio.run(_main())


if __name__ == "__main__":
    main()
