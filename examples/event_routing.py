"""Event routing: classify an incoming event, then take one of three branches.

    classify ──▶ auto_resolve   when route == "auto"
             ──▶ manual_review  when route == "manual"
             ──▶ escalate       when route == "escalate"
             ──▶ record         (always)

``classify`` puts the route into ``ctx.data``; each branch has a ``when`` condition, so
exactly one of the three runs and the two others are ``skipped`` (``step:skipped`` in
the trace, shown as skipped in ``flux dev``). Three events go through, one per route.

Run it from the repository root::

    python examples/event_routing.py
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal, TypedDict

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
    StepStatus,
    WorkflowContext,
    create_workflow,
)

TRACE_PATH = os.environ.get("FLUX_TRACE", "./.flux/trace.ndjson")

FAST = Backoff(initial=0.05, factor=2.0, jitter=0)

Route = Literal["auto", "manual", "escalate"]


class SupportEvent(TypedDict):
    event_id: str
    kind: str  # "password_reset", "refund_request", "outage", ...
    customer: str
    severity: int  # 1 (low) .. 5 (critical)


# ---------------------------------------------------------------- simulated services


class Helpdesk:
    def __init__(self) -> None:
        self.tickets: list[str] = []
        self.pages: list[str] = []
        self.audit: list[tuple[str, str]] = []

    def open_ticket(self, queue: str, subject: str) -> str:
        self.tickets.append(subject)
        return f"{queue.upper()}-{100 + len(self.tickets)}"

    def page_on_call(self, subject: str) -> str:
        self.pages.append(subject)
        return f"PAGE-{len(self.pages)}"


helpdesk = Helpdesk()


def reset_services() -> None:
    global helpdesk
    helpdesk = Helpdesk()


# ---------------------------------------------------------------- the workflow

AUTOMATABLE = {"password_reset", "address_change"}


def classify(ctx: WorkflowContext[SupportEvent]) -> dict[str, str]:
    event = ctx.input
    route: Route
    if event["severity"] >= 4:
        route = "escalate"
    elif event["kind"] in AUTOMATABLE:
        route = "auto"
    else:
        route = "manual"
    ctx.data["route"] = route
    return {"route": route, "reason": f"{event['kind']} with severity {event['severity']}"}


def is_route(route: Route) -> Callable[[WorkflowContext[SupportEvent]], bool]:
    """A `when` condition: does the event take this route?"""

    def condition(ctx: WorkflowContext[SupportEvent]) -> bool:
        return bool(ctx.data.get("route") == route)

    condition.__name__ = f"route_is_{route}"
    return condition


def auto_resolve(ctx: WorkflowContext[SupportEvent]) -> dict[str, str]:
    ctx.data["resolved_by"] = "bot"
    what = ctx.input["kind"].replace("_", " ")
    return {"action": f"sent a {what} link to {ctx.input['customer']}"}


def manual_review(ctx: WorkflowContext[SupportEvent]) -> dict[str, str]:
    ticket = helpdesk.open_ticket("support", f"{ctx.input['kind']} from {ctx.input['customer']}")
    ctx.data["ticket"] = ticket
    return {"ticket": ticket}


def escalate(ctx: WorkflowContext[SupportEvent]) -> dict[str, str]:
    page = helpdesk.page_on_call(f"SEV{6 - ctx.input['severity']}: {ctx.input['kind']}")
    ctx.data["page"] = page
    return {"page": page, "ticket": helpdesk.open_ticket("incident", ctx.input["kind"])}


def record(ctx: WorkflowContext[SupportEvent]) -> dict[str, str]:
    handled_by = [s.name for s in ctx.history if s.status is StepStatus.COMPLETED and s.name != "classify"]
    helpdesk.audit.append((ctx.input["event_id"], ctx.data["route"]))
    return {"event_id": ctx.input["event_id"], "route": ctx.data["route"], "handled_by": ",".join(handled_by)}


routing_flow = (
    create_workflow("event-routing", SupportEvent)
    .step("classify", classify, retries=0)
    .step("auto_resolve", auto_resolve, when=is_route("auto"), retries=1, backoff=FAST)
    .step("manual_review", manual_review, when=is_route("manual"), retries=1, backoff=FAST)
    .step("escalate", escalate, when=is_route("escalate"), retries=1, backoff=FAST)
    .step("record", record, retries=1, backoff=FAST)
)


# ---------------------------------------------------------------- the scenario

EVENTS = [
    SupportEvent(event_id="EVT-1", kind="password_reset", customer="ada@example.com", severity=1),
    SupportEvent(event_id="EVT-2", kind="refund_request", customer="bob@example.com", severity=2),
    SupportEvent(event_id="EVT-3", kind="outage", customer="acme-corp", severity=5),
]


async def run(engine: FluxEngine) -> list[FluxResult]:
    """One event per route: each run shows the two other branches skipped."""
    reset_services()
    tag = uuid.uuid4().hex[:6]
    return [await engine.execute(routing_flow, event, id=f"{event['event_id']}-{tag}") for event in EVENTS]


# ---------------------------------------------------------------- running it


def _json(value: Any) -> str:
    return json.dumps(value, default=str, ensure_ascii=False)


def show(result: FluxResult) -> None:
    print(f"{result.name} {result.id}: {result.status.value} (route: {result.data.get('route')})")
    for step in result.history:
        print(f"  {step.name:<14} {step.status.value}")
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
    print(f"trace: {TRACE_PATH}")


def main() -> None:
    asyncio.run(_main())


if __name__ == "__main__":
    main()
