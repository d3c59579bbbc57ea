"""Trial reminders: a 14-day trial that welcomes, waits, reminds, and converts or expires.

    welcome ──▶ trial ──▶ reminder ──▶ upgrade ─────────────▶ finish
                Flux.sleep(11 days)    Flux.wait("upgrade", timeout=3 days,
                                                 default={"upgraded": False})

    .deadline(15 days): a run still unfinished then is cancelled (DeadlineExceededError)

The run sleeps durably: it is stored ``suspended`` with its wake time and nothing holds it;
whichever process works the storage (``engine.work()``, ``flux worker``,
``flux_lifespan(..., work=True)``) wakes it on time, even after a restart. The wait for an
``upgrade`` signal ends at its timeout with the default: the trial expires.

The scenario runs on a ``VirtualClock``, so fourteen days pass in a moment: ``ada``
upgrades on day 12 and is converted; ``bob`` never does, and his trial expires on day 14.

Run it from the repository root::

    python examples/trial_reminders.py

Runs are stored in SQLite at ``$FLUX_DB`` (default ``./.flux/examples.db``); the trace goes
to ``$FLUX_TRACE`` (default ``./.flux/trace.ndjson``).
"""

from __future__ import annotations

import asyncio
import datetime as dt
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
    Flux,
    FluxConsoleLogger,
    FluxEngine,
    FluxResult,
    JsonFileTraceSink,
    SleepRequest,
    WaitRequest,
    WorkflowContext,
    create_workflow,
)
from flux.testing import VirtualClock

#: The clock `run` moves on (fourteen days pass at once).
Clock = VirtualClock

TRACE_PATH = os.environ.get("FLUX_TRACE", "./.flux/trace.ndjson")
DB_PATH = os.environ.get("FLUX_DB", "./.flux/examples.db")

DAY = 86400.0
TRIAL_DAYS = 14
REMIND_BEFORE_DAYS = 3


class Trial(TypedDict):
    user: str
    email: str


class Mailer:
    """Where the e-mails go (a real one would send them), with the day each was sent."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, str]] = []

    def send(self, to: str, subject: str) -> None:
        self.sent.append((to, subject))


mailer = Mailer()


def welcome(ctx: WorkflowContext[Trial]) -> str:
    mailer.send(ctx.input["email"], f"Welcome, {ctx.input['user']}: your {TRIAL_DAYS}-day trial starts now")
    return "sent"


def trial(ctx: WorkflowContext[Trial]) -> SleepRequest:
    return Flux.sleep((TRIAL_DAYS - REMIND_BEFORE_DAYS) * DAY)


def reminder(ctx: WorkflowContext[Trial]) -> str:
    mailer.send(
        ctx.input["email"], f"Your trial ends in {REMIND_BEFORE_DAYS} days: upgrade to keep your work"
    )
    return "sent"


def upgrade(ctx: WorkflowContext[Trial]) -> WaitRequest:
    # The signal's payload, or the default once the trial is over, is this step's output.
    return Flux.wait("upgrade", timeout=REMIND_BEFORE_DAYS * DAY, default={"upgraded": False})


def finish(ctx: WorkflowContext[Trial]) -> dict[str, Any]:
    decision: dict[str, Any] = ctx.outputs["upgrade"]
    if decision.get("upgraded"):
        mailer.send(ctx.input["email"], f"Thank you: you are on the {decision.get('plan', 'pro')} plan")
        return {"outcome": "converted", "plan": decision.get("plan", "pro")}
    mailer.send(ctx.input["email"], "Your trial has ended")
    return {"outcome": "expired"}


trial_flow = (
    create_workflow("trial-reminders", Trial)
    .deadline((TRIAL_DAYS + 1) * DAY)
    .step("welcome", welcome)
    .step("trial", trial)
    .step("reminder", reminder)
    .step("upgrade", upgrade)
    .step("finish", finish)
)


async def run(engine: FluxEngine, clock: Clock | None = None, tag: str | None = None) -> list[FluxResult]:
    """Two trials: ada upgrades on day 12, bob never does. Returns ada's and bob's results at
    the start (suspended, asleep), then, when the engine runs on a `VirtualClock` (`clock`),
    at the end (completed). On the real clock the two runs are left asleep (`flux dev --demo`
    shows them so); a worker wakes them in eleven days."""
    global mailer
    mailer = Mailer()
    tag = tag or uuid.uuid4().hex[:6]
    ada = await engine.execute(trial_flow, Trial(user="ada", email="ada@example.com"), id=f"trial-ada-{tag}")
    bob = await engine.execute(trial_flow, Trial(user="bob", email="bob@example.com"), id=f"trial-bob-{tag}")
    if clock is None and isinstance(engine.clock, VirtualClock):
        clock = engine.clock
    if clock is None:
        return [ada, bob]
    await clock.advance(12 * DAY)  # the reminders went out on day 11
    await engine.signal(trial_flow, ada.id, "upgrade", {"upgraded": True, "plan": "team"})
    await clock.advance(3 * DAY)  # bob's wait times out on day 14
    return [ada, bob, await engine.get(ada.id), await engine.get(bob.id)]


def show(result: FluxResult, start: dt.datetime) -> None:
    print(f"{result.name} {result.id}: {result.status.value}")
    for step in result.history:
        day = (
            ""
            if step.completed_at is None
            else f"  day {(step.completed_at - start).total_seconds() / DAY:g}"
        )
        print(f"  {step.name:<9} {step.status.value}{day}")
    print(f"  outcome: {result.outputs.get('finish')}")


async def _scenario() -> None:
    start = dt.datetime.now(dt.timezone.utc).replace(microsecond=0)
    clock = VirtualClock(start=start)
    Path(DB_PATH).parent.mkdir(parents=True, exist_ok=True)
    engine = FluxEngine(
        storage=f"sqlite:///{DB_PATH}",
        clock=clock,
        trace=JsonFileTraceSink(TRACE_PATH, reset=False),
        logger=FluxConsoleLogger(),
    )
    try:
        results = await run(engine, clock)
    finally:
        await engine.close()
    for result in results[2:]:
        show(result, start)
    for to, subject in mailer.sent:
        print(f"mail to {to}: {subject}")
    print(f"fourteen days passed on a VirtualClock; trace: {TRACE_PATH}")


if __name__ == "__main__":
    asyncio.run(_scenario())
