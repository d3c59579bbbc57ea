"""`ctx.history` and `FluxResult.history`: the steps of a run as `StepExecution`s."""

from __future__ import annotations

import datetime as dt
from typing import Any

from .context import StepExecution
from .records import StepRecord


def as_utc(ts: float | None) -> dt.datetime | None:
    return None if ts is None else dt.datetime.fromtimestamp(ts, dt.timezone.utc)


def build_history(steps: list[StepRecord], outputs: dict[str, Any]) -> list[StepExecution]:
    out = []
    for rec in steps:
        duration = (
            rec.completed_at - rec.started_at
            if rec.completed_at is not None and rec.started_at is not None
            else None
        )
        out.append(
            StepExecution(
                name=rec.name,
                status=rec.status,
                attempts=rec.attempts,
                started_at=as_utc(rec.started_at),
                completed_at=as_utc(rec.completed_at),
                duration=duration,
                output=outputs.get(rec.name),
                error=rec.error,
                error_type=rec.error_type,
                commit=rec.kind == "commit",
            )
        )
    return out
