"""Fold one run's events into what the run page draws. Pure: events in, a view out.

Both vocabularies are read. Flux writes a ``step:start`` per attempt; the
TypeScript engine writes one per step and only a ``step:retry`` between attempts,
so an attempt may also be opened implicitly by a retry and adopted by a later
``step:start``.
"""

from __future__ import annotations

from typing import Any

from .diff import Change, diff
from .runview import Attempt, RunView, StepRow, Wait
from .summary import ERROR_STATUSES


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
    folder = _Folder(RunView(id=run_id, upto=k, total=total))
    for ev in events[:k]:
        folder.apply(ev)
    view = folder.view
    view.last_event = events[k - 1] if k else None
    return view


def _num(value: Any) -> float | None:
    return float(value) if type(value) in (int, float) else None


def _text(value: Any) -> str | None:
    return None if value is None else str(value)


class _Folder:
    def __init__(self, view: RunView) -> None:
        self.view = view
        self.rows: dict[str, StepRow] = {}
        # ``data`` after each step:complete, by step index, to diff against.
        self.snapshots: list[tuple[int | None, Any]] = []

    def row(self, ev: dict[str, Any]) -> StepRow:
        name = _text(ev.get("stepName")) or "?"
        row = self.rows.get(name)
        if row is None:
            row = self.rows[name] = StepRow(name)
            self.view.steps.append(row)
        index = ev.get("stepIndex")
        if type(index) is int:
            row.index = index
        if ev.get("commit") is True:
            row.commit = True
        return row

    def define(self, meta: Any) -> None:
        if not isinstance(meta, dict) or not isinstance(meta.get("steps"), list):
            return
        if isinstance(meta.get("version"), str):
            self.view.version = meta["version"]
        known = []
        for i, spec in enumerate(meta["steps"]):
            if isinstance(spec, dict) and isinstance(spec.get("name"), str):
                ev = {"stepName": spec["name"], "stepIndex": i, "commit": spec.get("commit")}
                known.append(self.row(ev))
        # Definition order first; steps the definition does not name keep
        # their order of appearance after it.
        ids = {id(row) for row in known}
        rest = [row for row in self.view.steps if id(row) not in ids]
        self.view.steps = known + rest

    def apply(self, ev: dict[str, Any]) -> None:
        view = self.view
        typ = ev.get("type")
        ts = _num(ev.get("timestamp"))
        if not view.workflow and isinstance(ev.get("workflowName"), str):
            view.workflow = ev["workflowName"]
        if ts is not None and (view.started_at is None or ts < view.started_at):
            view.started_at = ts
        handler = _HANDLERS.get(typ) if isinstance(typ, str) else None
        if handler is not None:
            handler(self, ev, ts)

    def open_attempt(self, row: StepRow) -> Attempt | None:
        if row.attempts and row.attempts[-1].end is None:
            return row.attempts[-1]
        return None

    def close_attempt(self, row: StepRow, ev: dict[str, Any], ts: float | None, outcome: str) -> Attempt:
        attempt = self.open_attempt(row)
        duration = _num(ev.get("duration"))
        if attempt is None:
            # No start event (a trace that begins mid-run): place the bar from
            # its duration.
            number = ev.get("attempt")
            start = ts - duration if ts is not None and duration is not None else ts
            attempt = Attempt(number if type(number) is int else len(row.attempts) + 1, start)
            row.attempts.append(attempt)
        attempt.end = ts if ts is not None else attempt.start
        attempt.outcome = outcome
        attempt.duration = duration
        if outcome in ("retry", "error"):
            attempt.error = _text(ev.get("error"))
            attempt.error_type = _text(ev.get("errorType"))
        return attempt

    def data_changes(self, index: int | None, data: Any) -> list[Change]:
        before: Any = {}
        for snap_index, snap in reversed(self.snapshots):
            if index is None or snap_index is None or snap_index < index:
                before = snap
                break
        self.snapshots.append((index, data))
        return diff(before, data)


def _on_workflow_start(f: _Folder, ev: dict[str, Any], ts: float | None) -> None:
    if "input" in ev:
        f.view.has_input, f.view.input = True, ev["input"]
    _on_workflow_resume(f, ev, ts)


def _on_workflow_resume(f: _Folder, ev: dict[str, Any], ts: float | None) -> None:
    f.define(ev.get("meta"))
    view = f.view
    view.status = "running"
    view.ended_at = view.duration = None
    view.error = view.error_type = view.waiting_for = None


def _on_step_start(f: _Folder, ev: dict[str, Any], ts: float | None) -> None:
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
    row.status = "running"


def _on_step_retry(f: _Folder, ev: dict[str, Any], ts: float | None) -> None:
    row = f.row(ev)
    f.close_attempt(row, ev, ts, "retry")
    if "v" not in ev:
        # @gravito/flux writes no step:start for the next attempt: it begins
        # here, backoff included. Flux's own step:start will open it.
        row.attempts.append(Attempt(len(row.attempts) + 1, ts, implicit=True))
    row.status = "retrying"


def _on_step_complete(f: _Folder, ev: dict[str, Any], ts: float | None) -> None:
    row = f.row(ev)
    f.close_attempt(row, ev, ts, "ok")
    row.status, row.finished = "completed", True
    row.error = row.error_type = None
    if "output" in ev:
        row.has_output, row.output = True, ev["output"]
    if "data" in ev:
        row.changes = f.data_changes(row.index, ev["data"])


def _on_step_error(f: _Folder, ev: dict[str, Any], ts: float | None) -> None:
    row = f.row(ev)
    f.close_attempt(row, ev, ts, "error")
    row.status = "failed"
    row.error, row.error_type = _text(ev.get("error")), _text(ev.get("errorType"))
    f.view.error, f.view.error_type = row.error, row.error_type
    if "v" not in ev:  # @gravito/flux writes no workflow:error
        f.view.status, f.view.ended_at = "failed", ts


def _on_step_skipped(f: _Folder, ev: dict[str, Any], ts: float | None) -> None:
    row = f.row(ev)
    attempt = f.open_attempt(row)
    if attempt is not None:  # @gravito/flux starts a step before skipping it
        row.attempts.pop()
    row.status, row.skipped_at, row.finished = "skipped", ts, True


def _on_step_suspend(f: _Folder, ev: dict[str, Any], ts: float | None) -> None:
    row = f.row(ev)
    if f.open_attempt(row) is not None:
        f.close_attempt(row, ev, ts, "suspended")
    signal = _text(ev.get("signal"))
    row.status, row.wait = "suspended", Wait(signal, ts)
    f.view.status, f.view.waiting_for = "suspended", signal or row.name


def _on_signal(f: _Folder, ev: dict[str, Any], ts: float | None) -> None:
    row = f.row(ev)
    if row.wait is None:
        row.wait = Wait(_text(ev.get("signal")), ts)
    row.wait.end = ts
    row.status, row.finished = "completed", True
    if "output" in ev:
        row.has_output, row.output = True, ev["output"]
    if f.view.status == "suspended":
        f.view.status = "running"
    f.view.waiting_for = None


def _on_rollback_start(f: _Folder, ev: dict[str, Any], ts: float | None) -> None:
    f.view.status = "rolling_back"


def _compensation_row(f: _Folder, ev: dict[str, Any]) -> StepRow:
    name = _text(ev.get("stepName")) or "?"
    for row in reversed(f.view.compensations):
        if row.name == name and row.status == "compensating":
            return row
    step = f.rows.get(name)
    row = StepRow(name, index=step.index if step else None, compensation=True)
    row.status = "compensating"
    f.view.compensations.append(row)
    return row


def _on_compensate(f: _Folder, ev: dict[str, Any], ts: float | None) -> None:
    row = _compensation_row(f, ev)
    f.close_attempt(row, ev, ts, "ok")
    row.status = "compensated"
    if (step := f.rows.get(row.name)) is not None:
        step.status = "compensated"


def _on_compensate_error(f: _Folder, ev: dict[str, Any], ts: float | None) -> None:
    row = _compensation_row(f, ev)
    final = ev.get("status") == "compensation_failed"
    f.close_attempt(row, ev, ts, "error" if final else "retry")
    row.error, row.error_type = _text(ev.get("error")), _text(ev.get("errorType"))
    if final:
        row.status = "compensation_failed"
        if (step := f.rows.get(row.name)) is not None:
            step.status = "compensation_failed"


def _on_rollback_complete(f: _Folder, ev: dict[str, Any], ts: float | None) -> None:
    if ev.get("status") in ERROR_STATUSES:
        f.view.status = ev["status"]


def _finish(f: _Folder, ev: dict[str, Any], ts: float | None) -> None:
    view = f.view
    view.ended_at, view.duration = ts, _num(ev.get("duration"))
    view.waiting_for = None
    if "data" in ev:
        view.has_data, view.data = True, ev["data"]


def _on_workflow_error(f: _Folder, ev: dict[str, Any], ts: float | None) -> None:
    status = ev.get("status")
    f.view.status = status if status in ERROR_STATUSES else "failed"
    if "error" in ev:
        f.view.error, f.view.error_type = _text(ev.get("error")), _text(ev.get("errorType"))
    _finish(f, ev, ts)


def _on_workflow_complete(f: _Folder, ev: dict[str, Any], ts: float | None) -> None:
    f.view.status = "completed"
    f.view.error = f.view.error_type = None
    _finish(f, ev, ts)


_HANDLERS = {
    "workflow:start": _on_workflow_start,
    "workflow:resume": _on_workflow_resume,
    "step:start": _on_step_start,
    "step:retry": _on_step_retry,
    "step:complete": _on_step_complete,
    "step:error": _on_step_error,
    "step:skipped": _on_step_skipped,
    "step:suspend": _on_step_suspend,
    "signal:received": _on_signal,
    "workflow:rollback_start": _on_rollback_start,
    "step:compensate": _on_compensate,
    "step:compensate_error": _on_compensate_error,
    "workflow:rollback_complete": _on_rollback_complete,
    "workflow:error": _on_workflow_error,
    "workflow:complete": _on_workflow_complete,
}
