"""The columns of the SQL storages, and records to and from their rows (shared by SQLite
and PostgreSQL, which differ only in placeholders and in what each adds after these)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from ..records import Lease, RunRecord, StepRecord
from ..status import RunStatus, StepStatus
from ._compact import MARK, MIN_SIZE, against, before_base, decode
from ._text import from_column, to_column

RUN_COLUMNS = (
    "id, name, status, input, data, shape, version, error, error_type, error_step, waiting_for, "
    "created_at, updated_at, completed_at, seq, lease_owner, lease_host, lease_pid, lease_expires_at, "
    "cancel_reason, lease_identity, wake_at, timer, deadline, due_at, schedule, parent_id"
)
STEP_COLUMNS = (
    "run_id, idx, name, kind, status, attempts, started_at, completed_at, output, error, "
    "error_type, data_before, waiting_for, compensation_attempts, compensated_at, crashes, delta, items"
)
RUN_WIDTH = 27
STEP_WIDTH = 18


def run_values(run: RunRecord) -> tuple[Any, ...]:
    lease = run.lease
    return (
        run.id, run.name, run.status.value, run.input_json, run.data_json, json.dumps(run.shape),
        run.version, to_column(run.error), to_column(run.error_type), to_column(run.error_step),
        to_column(run.waiting_for), run.created_at, run.updated_at, run.completed_at, run.seq,
        lease.owner if lease else None, lease.host if lease else None,
        lease.pid if lease else None, lease.expires_at if lease else None,
        to_column(run.cancel_reason), (lease.identity or None) if lease else None,
        run.wake_at, to_column(run.timer), run.deadline, run.due_at(),
        json.dumps(list(run.schedule)) if run.schedule else None, run.parent_id,
    )  # fmt: skip


def step_values(run_id: str, idx: int, s: StepRecord, prev: StepRecord | None = None) -> tuple[Any, ...]:
    """The row of step `idx`; `prev` is step `idx - 1` (its `data_before` is the base of
    this one's compact form, see `_compact`)."""
    before = stored_before(s, prev)
    return (
        run_id, idx, s.name, s.kind, s.status.value, s.attempts, s.started_at, s.completed_at,
        s.output_json, to_column(s.error), to_column(s.error_type), before, to_column(s.waiting_for),
        s.compensation_attempts, s.compensated_at, s.crashes, s.delta_json, s.items_json,
    )  # fmt: skip


def stored_before(s: StepRecord, prev: StepRecord | None) -> str | None:
    """The `data_before` column of step `s`, whose previous step is `prev`."""
    before = s.data_before
    if before is not None and len(before) >= MIN_SIZE:
        return against(before, before_base(prev))
    return before


def step_from_values(r: Sequence[Any]) -> StepRecord:
    return StepRecord(
        name=r[2], kind=r[3], status=StepStatus(r[4]), attempts=r[5], started_at=r[6],
        completed_at=r[7], output_json=r[8], error=from_column(r[9]), error_type=from_column(r[10]),
        data_before=r[11], waiting_for=from_column(r[12]), compensation_attempts=r[13],
        compensated_at=r[14], crashes=r[15], delta_json=r[16], items_json=r[17],
    )  # fmt: skip


def run_from_values(row: Sequence[Any], step_rows: Sequence[Sequence[Any]]) -> RunRecord:
    """A run from its row and its step rows. Steps that never ran have no row: they are
    laid in as pending from the stored shape."""
    (id_, name, status, input_, data, shape_json, version, error, error_type, error_step, waiting_for,
     created_at, updated_at, completed_at, seq, owner, host, pid, expires, cancel_reason,
     identity, wake_at, timer, deadline, _due_at, schedule, parent_id) = row[:RUN_WIDTH]  # fmt: skip
    shape = json.loads(shape_json)
    steps = [StepRecord(step_name, kind) for step_name, kind in shape]
    compact = False
    for r in step_rows:
        if r[1] < len(steps):
            steps[r[1]] = step = step_from_values(r)
        elif r[1] == len(steps):  # the items of a map, after the definition's steps, in order
            steps.append(step := step_from_values(r))
        else:  # pragma: no cover - a gap: rows beyond it belong to nothing
            continue
        compact = compact or (step.data_before is not None and step.data_before.startswith(MARK))
    if compact:  # in order: each is read against the one before it, itself read already
        for i, step in enumerate(steps):
            step.data_before = decode(step.data_before, steps[i - 1].data_before if i else None)
    return RunRecord(
        id=id_, name=name, status=RunStatus(status), input_json=input_, data_json=data,
        shape=shape, version=version, steps=steps, error=from_column(error),
        error_type=from_column(error_type), error_step=from_column(error_step),
        waiting_for=from_column(waiting_for), created_at=created_at, updated_at=updated_at,
        completed_at=completed_at, seq=seq, cancel_reason=from_column(cancel_reason),
        wake_at=wake_at, timer=from_column(timer), deadline=deadline,
        lease=Lease(owner, host or "", pid or 0, expires or 0.0, identity or "") if owner else None,
        schedule=tuple(json.loads(schedule)) if schedule else None, parent_id=parent_id,
    )  # fmt: skip


def steps_values(run_id: str, indexes: Sequence[int], steps: Sequence[StepRecord]) -> list[tuple[Any, ...]]:
    """The rows of the steps at `indexes`, each with the step before it as its base."""
    return [step_values(run_id, i, steps[i], steps[i - 1] if i else None) for i in indexes]


def started_steps(run: RunRecord) -> list[int]:
    """Indexes of the steps that are not in their initial state (a new run has none)."""
    return [
        i
        for i, s in enumerate(run.steps)
        if s.status is not StepStatus.PENDING or s.attempts or s.started_at is not None
    ]
