"""Fold one run's events into what the run page draws. Pure: events in, a view out.

Both vocabularies are read. Flux writes a ``step:start`` per attempt; the
TypeScript engine writes one per step and only a ``step:retry`` between attempts,
so an attempt may also be opened implicitly by a retry and adopted by a later
``step:start``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from flux.events import EventType

from . import branches, waits
from .folder import Folder
from .folder import num as _num
from .folder import text as _text
from .runview import Attempt, Execution, Mark, RunView, StepRow
from .summary import ERROR_STATUSES
from .waits import close, stack

#: Row states the page shows that are not a stored ``StepStatus``: a step between a failed
#: attempt and its next one.
DISPLAY_ONLY = ("retrying",)
#: Row states in which a step is still under way, and a cancelled run cancels it.
_UNDER_WAY = frozenset({"running", "retrying", "suspended"})


def order_events(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Flux's ``seq`` when every event has one, else file order (the list's)."""
    if events and all(type(ev.get("seq")) is int for ev in events):
        return sorted(events, key=lambda ev: ev["seq"])  # stable: ties keep file order
    return list(events)


def fold_run(run_id: str, events: list[dict[str, Any]], upto: int | None = None) -> RunView:
    """The run as it stood after its first ``upto`` events (all when None).

    ``events`` must already be in order (see ``order_events``).
    """
    total = len(events)
    k = total if upto is None else max(0, min(upto, total))
    folder = Folder(RunView(id=run_id, upto=k, total=total))
    view = folder.view
    for ev in events[:k]:
        typ = ev.get("type")
        ts = _num(ev.get("timestamp"))
        if not view.workflow and isinstance(ev.get("workflowName"), str):
            view.workflow = ev["workflowName"]
        if ts is not None and (view.started_at is None or ts < view.started_at):
            view.started_at = ts
        handler = _HANDLERS.get(typ) if isinstance(typ, str) else None
        if handler is not None:
            handler(folder, ev, ts)
    view.last_event = events[k - 1] if k else None
    branches.nest(view)
    return view


def _on_workflow_start(f: Folder, ev: dict[str, Any], ts: float | None) -> None:
    view = f.view
    if "input" in ev:
        view.has_input, view.input = True, ev["input"]
    meta = ev.get("meta")
    if isinstance(meta, dict):
        schedule = meta.get("schedule")
        if isinstance(schedule, dict):
            view.schedule_id, view.schedule_slot = _text(schedule.get("id")), _text(schedule.get("slot"))
        view.deadline = _num(meta.get("deadline"))
    if not view.executions:
        view.executions.append(Execution(1, ts))
    branches.note_parent(view, ev)
    _go_on(f, ev)


def _go_on(f: Folder, ev: dict[str, Any]) -> None:
    f.define(ev.get("meta"))
    view = f.view
    view.status = "running"
    view.ended_at = view.duration = None
    view.error = view.error_type = view.waiting_for = view.stack = view.error_step = None


def _on_workflow_resume(f: Folder, ev: dict[str, Any], ts: float | None) -> None:
    view = f.view
    raw = ev.get("meta")
    meta: dict[str, Any] = raw if isinstance(raw, dict) else {}
    reason = _text(meta.get("reason")) or "resume"
    from_step = _text(meta.get("fromStep"))
    if not view.executions:
        view.executions.append(Execution(1, view.started_at))
    view.executions[-1].end = view.executions[-1].end or ts
    number = len(view.executions) + 1
    view.executions.append(Execution(number, ts, reason, from_step))
    where = f" from {from_step}" if from_step else ""
    view.marks.append(Mark("resume", ts, reason.replace("_", " "), f"run {number}: {reason}{where}"))
    _go_on(f, ev)


def _on_step_start(f: Folder, ev: dict[str, Any], ts: float | None) -> None:
    row = f.row(ev)
    number = ev.get("attempt")
    if type(ev.get("maxRetries")) is int:
        row.max_retries = ev["maxRetries"]
    attempt = f.open_attempt(row)
    if attempt is not None and attempt.implicit:
        attempt.start, attempt.implicit = ts, False
    else:
        if attempt is not None:  # a start with the previous one never closed
            attempt.end, attempt.outcome = ts, "lost"
        row.attempts.append(Attempt(len(row.attempts) + 1, ts))
        attempt = row.attempts[-1]
    if type(number) is int:
        attempt.number = number
    attempt.execution = f.view.execution
    row.status = "running"


def _on_step_retry(f: Folder, ev: dict[str, Any], ts: float | None) -> None:
    row = f.row(ev)
    close(f, row, ev, ts, "retry")
    if "v" not in ev:
        # @gravito/flux writes no step:start for the next attempt: it begins
        # here, backoff included. Flux's own step:start will open it.
        row.attempts.append(Attempt(len(row.attempts) + 1, ts, implicit=True, execution=f.view.execution))
    row.status = "retrying"


def _on_step_complete(f: Folder, ev: dict[str, Any], ts: float | None) -> None:
    row = f.row(ev)
    close(f, row, ev, ts, "ok")
    row.status, row.finished = "completed", True
    row.error = row.error_type = row.stack = None
    if "output" in ev:
        row.has_output, row.output = True, ev["output"]
    if "data" in ev:
        row.changes = f.data_changes(row.index, ev["data"])
        f.view.has_latest_data, f.view.latest_data = True, ev["data"]


def _on_step_error(f: Folder, ev: dict[str, Any], ts: float | None) -> None:
    row = f.row(ev)
    cancelled = branches.is_cancelled(ev)
    attempt = close(f, row, ev, ts, "cancelled" if cancelled and row.group is not None else "error")
    row.status = "cancelled" if cancelled else "failed"
    if row.wait is not None and row.wait.end is None:
        row.wait.end = ts
    row.error, row.error_type = _text(ev.get("error")), _text(ev.get("errorType"))
    row.stack = attempt.stack
    if not (cancelled and row.group is not None):  # a sibling's failure is the run's error
        f.view.error, f.view.error_type = row.error, row.error_type
    if "v" not in ev:  # @gravito/flux writes no workflow:error
        f.view.status, f.view.ended_at = "failed", ts


def _on_step_skipped(f: Folder, ev: dict[str, Any], ts: float | None) -> None:
    row = f.row(ev)
    attempt = f.open_attempt(row)
    if attempt is not None:  # @gravito/flux starts a step before skipping it
        row.attempts.pop()
    row.status, row.skipped_at, row.finished = "skipped", ts, True


def _on_rollback_start(f: Folder, ev: dict[str, Any], ts: float | None) -> None:
    f.view.status = "rolling_back"


def _compensation_row(f: Folder, ev: dict[str, Any]) -> StepRow:
    name = _text(ev.get("stepName")) or "?"
    if (item := branches.item_undo(f, name)) is not None:
        return item
    for row in reversed(f.view.compensations):
        if row.name == name and row.status == "compensating":
            return row
    step = f.rows.get(name)
    row = StepRow(name, index=step.index if step else None, compensation=True)
    row.status = "compensating"
    f.view.compensations.append(row)
    return row


def _on_compensate(f: Folder, ev: dict[str, Any], ts: float | None) -> None:
    row = _compensation_row(f, ev)
    close(f, row, ev, ts, "ok")
    row.status = "compensated"
    if (step := f.rows.get(row.name)) is not None:
        step.status = "compensated"
    branches.spread_undo(f, row)


def _on_compensate_error(f: Folder, ev: dict[str, Any], ts: float | None) -> None:
    row = _compensation_row(f, ev)
    final = ev.get("status") == "compensation_failed"
    attempt = close(f, row, ev, ts, "error" if final else "retry")
    row.error, row.error_type = _text(ev.get("error")), _text(ev.get("errorType"))
    row.stack = attempt.stack
    if final:
        row.status = "compensation_failed"
        if (step := f.rows.get(row.name)) is not None:
            step.status = "compensation_failed"
    branches.spread_undo(f, row)


def _on_rollback_complete(f: Folder, ev: dict[str, Any], ts: float | None) -> None:
    if ev.get("status") in ERROR_STATUSES:
        f.view.status = ev["status"]


def _finish(f: Folder, ev: dict[str, Any], ts: float | None) -> None:
    view = f.view
    view.ended_at, view.duration = ts, _num(ev.get("duration"))
    view.waiting_for = None
    if "data" in ev:
        view.has_data, view.data = True, ev["data"]
        view.has_latest_data, view.latest_data = True, ev["data"]
    if view.executions:
        view.executions[-1].end = ts


def _on_workflow_error(f: Folder, ev: dict[str, Any], ts: float | None) -> None:
    status = ev.get("status")
    f.view.status = status if status in ERROR_STATUSES else "failed"
    if status == "cancelled":
        for row in branches.every_row(f.view):
            if row.status in _UNDER_WAY:
                if f.open_attempt(row) is not None:
                    f.close_attempt(row, {}, ts, "cancelled")
                if row.wait is not None and row.wait.end is None:
                    row.wait.end = ts
                row.status = "cancelled"
    if "error" in ev:
        f.view.error, f.view.error_type = _text(ev.get("error")), _text(ev.get("errorType"))
    f.view.stack = stack(ev.get("stack"))
    f.view.error_step = _text(ev.get("stepName"))
    _finish(f, ev, ts)


def _on_workflow_complete(f: Folder, ev: dict[str, Any], ts: float | None) -> None:
    f.view.status = "completed"
    f.view.error = f.view.error_type = None
    _finish(f, ev, ts)


def action_text(ev: dict[str, Any]) -> str:
    """``retried from pay by dashboard``: what a ``workflow:action`` did, and who did it."""
    by = _text(ev.get("by")) or "someone"
    action, step, signal = (
        _text(ev.get("action")) or "acted",
        _text(ev.get("stepName")),
        _text(ev.get("signal")),
    )
    reason = _text(ev.get("reason"))
    if action == "retry":
        return f"retried from {step} by {by}" if step else f"retried by {by}"
    if action == "resume":
        return f"resumed by {by}"
    if action == "cancel":
        return f"cancelled by {by}" + (f": {reason}" if reason else "")
    if action == "signal":
        return f"signal {signal} sent by {by}" if signal else f"signalled by {by}"
    return f"{action} by {by}"


def _on_workflow_action(f: Folder, ev: dict[str, Any], ts: float | None) -> None:
    # Shown as a mark on the axis and as a row of its own (templates/_timeline.html).
    f.view.marks.append(Mark("action", ts, _text(ev.get("action")) or "action", action_text(ev)))


_Handler = Callable[[Folder, dict[str, Any], float | None], None]
_HANDLERS: dict[str, _Handler] = {
    EventType.WORKFLOW_START: _on_workflow_start,
    EventType.WORKFLOW_RESUME: _on_workflow_resume,
    EventType.STEP_START: _on_step_start,
    EventType.STEP_RETRY: _on_step_retry,
    EventType.STEP_COMPLETE: _on_step_complete,
    EventType.STEP_ERROR: _on_step_error,
    EventType.STEP_SKIPPED: _on_step_skipped,
    EventType.STEP_SUSPEND: waits.on_step_suspend,
    EventType.SIGNAL_RECEIVED: waits.on_signal,
    EventType.WORKFLOW_ROLLBACK_START: _on_rollback_start,
    EventType.STEP_COMPENSATE: _on_compensate,
    EventType.STEP_COMPENSATE_ERROR: _on_compensate_error,
    EventType.WORKFLOW_ROLLBACK_COMPLETE: _on_rollback_complete,
    EventType.WORKFLOW_ERROR: _on_workflow_error,
    EventType.WORKFLOW_COMPLETE: _on_workflow_complete,
    EventType.WORKFLOW_CANCEL: waits.on_cancel,
    EventType.STEP_SLEEP: waits.on_step_sleep,
    EventType.STEP_WAKE: waits.on_wake,
    EventType.SIGNAL_TIMEOUT: waits.on_signal_timeout,
    EventType.WORKFLOW_ACTION: _on_workflow_action,
}
