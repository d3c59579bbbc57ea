"""How a run's summary (``viewer.summary``) follows the events that change its status:
a start or resume, a failure, a wait, a sleep and its wake, a rollback, the end. Pure.

``viewer.trace`` folds the commonest events (a step's start and end) inline, on its
hot path, and hands every other one here.
"""

from __future__ import annotations

from typing import Any

from flux.events import EventType

from .lines import number_or_none, text_or_none
from .summary import ERROR_STATUSES, RunSummary

# Plain strings, compared once per line.
_RETRY = EventType.STEP_RETRY.value
_WORKFLOW_START = EventType.WORKFLOW_START.value
_RESUME = EventType.WORKFLOW_RESUME.value
_STEP_ERROR = EventType.STEP_ERROR.value
_SUSPEND = EventType.STEP_SUSPEND.value
_SLEEP = EventType.STEP_SLEEP.value
_WAKE = EventType.STEP_WAKE.value
_SIGNAL = EventType.SIGNAL_RECEIVED.value
_SIGNAL_TIMEOUT = EventType.SIGNAL_TIMEOUT.value
_ROLLBACK_START = EventType.WORKFLOW_ROLLBACK_START.value
_ROLLBACK_COMPLETE = EventType.WORKFLOW_ROLLBACK_COMPLETE.value
_ERROR = EventType.WORKFLOW_ERROR.value
_WORKFLOW_COMPLETE = EventType.WORKFLOW_COMPLETE.value


def fold_status(run: RunSummary, ev: dict[str, Any], typ: str) -> bool:
    """Fold one event other than a step's start or end into ``run``; True when the run's
    start moved (the runs list's order may change)."""
    # The event's line is the run's last offset (appended by the caller).
    # Flux numbers each run's events; a status event that reaches the file
    # after a later one (two processes, two buffers) must not roll the
    # status back. Lines without ``seq`` (@gravito/flux) are in file order,
    # which is all there is to go by.
    seq = ev.get("seq")
    current, moved = True, False
    if type(seq) is int:
        if seq < run.last_seq:
            current = False
        else:
            run.last_seq = seq
    ts = number_or_none(ev.get("timestamp"))
    if typ == _WORKFLOW_START and ts is not None and (run.started_at is None or ts < run.started_at):
        run.started_at = ts
        moved = True

    if typ == _RETRY:
        run.retries += 1
        if (
            run.seen is not None
            and type(name := ev.get("stepName")) is str
            and type(ev.get("group")) is not str
        ):
            run.seen.add(name)
    elif typ in (_WORKFLOW_START, _RESUME):
        if "input" in ev:
            run.input_at = len(run.offsets) - 1
        meta = ev.get("meta")
        if type(meta) is dict and type(meta.get("steps")) is list:
            # a branch counts in its group's step (SPEC §11)
            run.meta_steps = sum(
                1 for spec in meta["steps"] if not (type(spec) is dict and type(spec.get("group")) is str)
            )
            run.seen = None
        if current:
            run.status = "running"
            run.ended_at = run.duration = None
            run.error = run.error_type = run.waiting_for = run.wake_at = None
    elif not current:
        return moved
    elif typ == _STEP_ERROR:
        run.error = text_or_none(ev.get("error"))
        run.error_type = text_or_none(ev.get("errorType"))
        if "v" not in ev:
            # @gravito/flux writes no workflow:error: a failed step is the end.
            run.status = "failed"
            run.ended_at = ts
    elif typ == _SUSPEND:
        run.status = "suspended"
        run.waiting_for = text_or_none(ev.get("signal")) or text_or_none(ev.get("stepName"))
        run.wake_at = number_or_none(ev.get("wakeAt"))
    elif typ == _SLEEP:
        run.status = "suspended"
        run.waiting_for = None
        run.wake_at = number_or_none(ev.get("wakeAt"))
    elif typ in (_WAKE, _SIGNAL_TIMEOUT):
        if run.status == "suspended":
            run.status = "running"
        run.waiting_for = run.wake_at = None
    elif typ == _SIGNAL:
        if type(name := ev.get("stepName")) is str:
            run.done.add(name)
        if run.status == "suspended":
            run.status = "running"
        run.waiting_for = run.wake_at = None
    elif typ == _ROLLBACK_START:
        run.status = "rolling_back"
    elif typ == _ROLLBACK_COMPLETE:
        status = ev.get("status")
        if status in ERROR_STATUSES:
            run.status = status
    elif typ == _ERROR:
        status = ev.get("status")
        run.status = status if status in ERROR_STATUSES else "failed"
        if "error" in ev:
            run.error = text_or_none(ev.get("error"))
            run.error_type = text_or_none(ev.get("errorType"))
        run.ended_at = ts
        run.duration = number_or_none(ev.get("duration"))
        run.waiting_for = run.wake_at = None
        if "data" in ev:
            run.data_at = len(run.offsets) - 1
    elif typ == _WORKFLOW_COMPLETE:
        if "data" in ev:
            run.data_at = len(run.offsets) - 1
        run.status = "completed"
        run.ended_at = ts
        run.duration = number_or_none(ev.get("duration"))
        run.error = run.error_type = run.waiting_for = run.wake_at = None
    return moved
