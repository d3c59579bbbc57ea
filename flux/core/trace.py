"""How the machine words its trace events (the vocabulary itself is `flux.events`)."""

from __future__ import annotations

from typing import Any

from ..events import EventType, timestamp_ms
from ..records import RunRecord, StepRecord
from .messages import Effect, Emit
from .plan import Plan, StepPlan


def emit(
    out: list[Effect],
    run: RunRecord,
    plan: Plan,
    now: float,
    kind: EventType,
    fields: dict[str, Any],
    raw: dict[str, str] | None = None,
) -> None:
    """Add a trace event, numbered now: the run's `seq` is stored by the next save, so a
    resume in any process goes on from it."""
    if not plan.traced:
        return
    if plan.calls and kind.value.startswith("step:") and fields.get("stepName") in plan.calls:
        fields["childId"] = f"{run.id}/{fields['stepName']}"
    run.seq += 1
    out.append(Emit(kind, run.seq, timestamp_ms(now), fields, raw))


def error_text(exc: BaseException) -> str:
    return str(exc) or type(exc).__name__


def error_fields(
    sp: StepPlan, rec: StepRecord, exc: BaseException, duration: float, stack: list[dict[str, Any]] | None
) -> dict[str, Any]:
    fields: dict[str, Any] = {
        "stepName": sp.name,
        "stepIndex": sp.index,
        "commit": sp.commit,
        "attempt": rec.attempts,
        "duration": duration * 1000,
        "error": error_text(exc),
        "errorType": type(exc).__name__,
    }
    if stack:
        fields["stack"] = stack
    return fields
