"""The parts of a run's fold (``viewer.timeline``) that concern waiting: a wait for a
signal and its timeout, a durable sleep and its wake-up (SPEC §10), a cancellation (§9),
and how an attempt is closed with its stack. Pure, like the rest of the fold."""

from __future__ import annotations

from typing import Any

from flux.events import EventType

from . import branches
from .folder import Folder
from .folder import num as _num
from .folder import text as _text
from .runview import Attempt, Frame, Mark, StepRow, Wait

#: Frames of a stack shown; the engine writes at most 20.
MAX_FRAMES = 50


def stack(value: Any) -> list[Frame] | None:
    if not isinstance(value, list) or not value:
        return None
    frames = []
    for item in value[-MAX_FRAMES:]:
        if isinstance(item, dict):
            frames.append(
                Frame(
                    _text(item.get("file")) or "?",
                    _text(item.get("line")) or "?",
                    _text(item.get("function")) or "?",
                )
            )
    return frames or None


def close(f: Folder, row: StepRow, ev: dict[str, Any], ts: float | None, outcome: str) -> Attempt:
    """Close the open attempt (or place one from its duration), in this execution."""
    opened = f.open_attempt(row)
    attempt = f.close_attempt(row, ev, ts, outcome)
    if opened is None:
        attempt.execution = f.view.execution
    branches.wall_time(row, attempt)
    if outcome in ("retry", "error"):
        attempt.stack = stack(ev.get("stack"))
    return attempt


def on_step_suspend(f: Folder, ev: dict[str, Any], ts: float | None) -> None:
    row = f.row(ev)
    if f.open_attempt(row) is not None:
        close(f, row, ev, ts, "suspended")
    signal = _text(ev.get("signal"))
    row.status, row.wait = "suspended", Wait(signal, ts, wake_at=_num(ev.get("wakeAt")))
    f.view.status, f.view.waiting_for = "suspended", signal or row.name
    if "data" in ev:
        f.view.has_latest_data, f.view.latest_data = True, ev["data"]


def on_signal(f: Folder, ev: dict[str, Any], ts: float | None) -> None:
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
    name = _text(ev.get("signal")) or "signal"
    f.view.marks.append(Mark("signal", ts, name, f"signal {name} received by {row.name}"))


def on_cancel(f: Folder, ev: dict[str, Any], ts: float | None) -> None:
    # The saga's events and a workflow:error with status cancelled follow.
    reason = _text(ev.get("reason"))
    f.view.cancel_reason = reason
    if f.view.error is None:
        f.view.error = reason
    f.view.marks.append(Mark("cancel", ts, "cancel", f"cancelled: {reason}" if reason else "cancelled"))


def on_step_sleep(f: Folder, ev: dict[str, Any], ts: float | None) -> None:
    row = f.row(ev)
    if f.open_attempt(row) is not None:
        close(f, row, ev, ts, "suspended")
    row.status, row.wait = "suspended", Wait(None, ts, wake_at=_num(ev.get("wakeAt")), sleep=True)
    f.view.status, f.view.waiting_for = "suspended", None
    if "data" in ev:
        f.view.has_latest_data, f.view.latest_data = True, ev["data"]


def end_wait(f: Folder, ev: dict[str, Any], ts: float | None) -> StepRow:
    """A sleep's wake, or a wait's timeout: the wait ends, the step goes on."""
    row = f.row(ev)
    if row.wait is None:
        row.wait = Wait(_text(ev.get("signal")), ts, sleep=ev.get("type") == EventType.STEP_WAKE)
    row.wait.end = ts
    if row.status == "suspended":
        row.status = "running"
    if f.view.status == "suspended":
        f.view.status = "running"
    f.view.waiting_for = None
    return row


def on_wake(f: Folder, ev: dict[str, Any], ts: float | None) -> None:
    row = end_wait(f, ev, ts)
    f.view.marks.append(Mark("wake", ts, "wake", f"{row.name} woke up"))


def on_signal_timeout(f: Folder, ev: dict[str, Any], ts: float | None) -> None:
    row = end_wait(f, ev, ts)
    wait = row.wait
    assert wait is not None
    wait.timed_out = True
    if wait.wake_at is None:
        wait.wake_at = _num(ev.get("wakeAt"))
    name = _text(ev.get("signal")) or wait.signal or "signal"
    if "error" in ev or "errorType" in ev:
        wait.timeout_error, wait.timeout_error_type = _text(ev.get("error")), _text(ev.get("errorType"))
        # The step fails (not retried; the saga follows); a step:error may confirm it.
        row.status, row.error, row.error_type = "failed", wait.timeout_error, wait.timeout_error_type
        title = f"{row.name}: no {name} in time: {wait.timeout_error_type or 'error'}"
    else:
        row.status, row.finished = "completed", True
        if "output" in ev:
            row.has_output, row.output = True, ev["output"]
        title = f"{row.name}: no {name} in time: went on with its default"
    f.view.marks.append(Mark("timeout", ts, "timeout", title))
