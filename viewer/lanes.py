"""What each timeline row draws: its attempts, back-offs, waits and sleeps as
segments placed on the run's axis, labelled where a label fits. Pure: a folded run
and an axis in, segments out; the templates only write them down.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

from .axis import Axis, span_label
from .runview import Attempt, RunView, StepRow
from .templating import fmt_time

#: The width a track is assumed to have when deciding whether a label fits inside its
#: bar (the run page at a laptop's width). Narrower screens clip; the tooltip remains.
TRACK_PX = 700.0
#: Average width of a label's character at the bars' font size, and the bar's padding.
CHAR_PX = 6.2
PAD_PX = 8.0

_OUTCOME_WORDS = {
    "ok": "succeeded",
    "retry": "failed, retried",
    "error": "failed",
    "suspended": "asked to wait",
    "running": "running",
    "lost": "lost (its end never came)",
    "cancelled": "cancelled",
}


@dataclass(frozen=True)
class Segment:
    """One bar: ``cls`` follows ``bar``; ``out`` places a label that does not fit inside
    beside it (``right`` or ``left``), empty when it fits."""

    cls: str
    left: float
    width: float
    label: str
    title: str
    out: str = ""
    attrs: tuple[tuple[str, str], ...] = field(default=())


def fits(width_pct: float, label: str) -> bool:
    return width_pct / 100.0 * TRACK_PX >= CHAR_PX * len(label) + PAD_PX


def _placed(
    cls: str, left: float, width: float, label: str, title: str, attrs: tuple[tuple[str, str], ...] = ()
) -> Segment:
    if not label or fits(width, label):
        return Segment(cls, left, width, label, title, "", attrs)
    side = "right" if left + width + (CHAR_PX * len(label) + PAD_PX) / TRACK_PX * 100.0 <= 100.0 else "left"
    return Segment(cls, left, width, label, title, side, attrs)


def attempt_ms(a: Attempt) -> float | None:
    if a.duration is not None:
        return a.duration
    if a.start is not None and a.end is not None:
        return a.end - a.start
    return None


def ordinal(n: int) -> str:
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


def row_segments(row: StepRow, axis: Axis, view: RunView) -> list[Segment]:
    """The bars of one step (or compensation) row, in time order; a label that fits
    neither inside its bar nor beside it without covering another is left to the tooltip."""
    return unclash(list(_row_segments(row, axis, view)))


def _label_span(seg: Segment) -> tuple[float, float]:
    size = (CHAR_PX * len(seg.label) + PAD_PX) / TRACK_PX * 100.0
    if seg.out == "right":
        return seg.left + seg.width, seg.left + seg.width + size
    return seg.left - size, seg.left


def unclash(segments: list[Segment]) -> list[Segment]:
    taken = [(s.left, s.left + s.width) for s in segments]
    out: list[Segment] = []
    for i, seg in enumerate(segments):
        if seg.out and seg.label:
            a, b = _label_span(seg)
            others = [span for j, span in enumerate(taken) if j != i]
            if any(a < y and x < b for x, y in others):
                seg = Segment(seg.cls, seg.left, seg.width, "", seg.title, "", seg.attrs)
            else:
                taken.append((a, b))
        out.append(seg)
    return out


def _row_segments(row: StepRow, axis: Axis, view: RunView) -> Iterator[Segment]:
    executions = {a.execution for a in row.attempts}
    several = len(row.attempts) > 1
    previous: Attempt | None = None
    for a in row.attempts:
        if (
            previous is not None
            and previous.execution == a.execution
            and previous.outcome == "retry"
            and previous.end is not None
            and a.start is not None
            and a.start > previous.end
        ):
            gap = a.start - previous.end
            bar = axis.bar(previous.end, a.start)
            words = f"back-off before attempt {a.number}: {span_label(gap)}"
            yield _placed("backoff", bar.left, bar.width, f"back-off {span_label(gap)}", words)
        first_of_execution = previous is not None and previous.execution != a.execution
        previous = a
        bar = axis.bar(a.start, a.end)
        ms = attempt_ms(a)
        took = span_label(ms) if ms is not None else "…"
        label = f"#{a.number} {took}" if several else took
        if len(executions) > 1:
            label = f"run {a.execution} · {label}" if first_of_execution else label
        what = _OUTCOME_WORDS.get(a.outcome, a.outcome)
        title = f"attempt {a.number}: {what}, {took}"
        if len(executions) > 1 or view.execution > 1:
            title = f"{ordinal(a.execution)} run of the workflow, {title}"
        if a.error:
            title += f" — {a.error_type + ': ' if a.error_type else ''}{a.error}"
        cls = f"{'undo ' if row.compensation else ''}outcome-{a.outcome}{' open' if bar.open else ''}"
        cls += " first-of-run" if first_of_execution else ""
        numbers = (("data-execution", str(a.execution)), ("data-attempt", str(a.number)))
        yield _placed(cls, bar.left, bar.width, label, title, numbers)
    wait = row.wait
    if wait is not None:
        end = wait.end
        open_ = end is None
        if open_ and wait.sleep and wait.wake_at is not None and wait.wake_at > axis.now:
            end = wait.wake_at  # drawn up to its wake time; the time left ticks
        bar = axis.bar(wait.start, end)
        cls = "wait" + (" sleep" if wait.sleep else "") + (" timed-out" if wait.timed_out else "")
        cls += " open" if open_ else ""
        attrs: tuple[tuple[str, str], ...] = ()
        if wait.sleep:
            label = "sleep"
            title = "sleeping" if open_ else "slept"
            if wait.wake_at is not None:
                title += f" until {_when(wait.wake_at)}"
        else:
            label = wait.signal or "signal"
            title = f"waiting for signal {label}" if open_ else f"waited for signal {label}"
            if wait.wake_at is not None:
                title += f"; times out at {_when(wait.wake_at)}"
        if wait.timed_out:
            label += " · timed out"
            title += " — timed out" + (
                f": {wait.timeout_error_type}" if wait.timeout_error_type else ", went on with its default"
            )
        elif open_ and wait.wake_at is not None and wait.wake_at <= axis.now:
            label += f" · due {span_label(axis.now - wait.wake_at)} ago"
        elif open_ and wait.wake_at is not None:
            label += f" · {span_label(wait.wake_at - axis.now)} left"
            attrs = (("data-countdown", num_attr(wait.wake_at)),)
        elif wait.start is not None and wait.end is not None:
            label += f" · {span_label(wait.end - wait.start)}"
        yield _placed(cls, bar.left, bar.width, label, title, attrs)


def run_segment(view: RunView, axis: Axis, total_label: str) -> Segment:
    """The whole run's bar, at the top of the timeline."""
    bar = axis.bar(view.started_at, view.ended_at if view.terminal else None)
    runs = f" in {view.execution} runs" if view.execution > 1 else ""
    return _placed(
        f"run-bar status-{view.status}{' open' if bar.open else ''}",
        bar.left,
        bar.width,
        total_label,
        f"the whole run{runs}: {total_label}",
    )


def busy_spans(view: RunView, now: float) -> list[tuple[float, float]]:
    """When something ran or happened: what compressing idle time keeps to scale."""
    spans: list[tuple[float, float]] = []
    for row in [*view.steps, *view.compensations]:
        for a in row.attempts:
            if a.start is not None:
                spans.append((a.start, a.end if a.end is not None else now))
        if row.skipped_at is not None:
            spans.append((row.skipped_at, row.skipped_at))
        if row.wait is not None:
            for ts in (row.wait.start, row.wait.end):
                if ts is not None:
                    spans.append((ts, ts))
    for mark in view.marks:
        if mark.at is not None:
            spans.append((mark.at, mark.at))
    for ts in (view.started_at, view.ended_at):
        if ts is not None:
            spans.append((ts, ts))
    return spans


def num_attr(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(value)


def _when(ms: float) -> str:
    return fmt_time(ms)


def span_left(at: float, now: float) -> str:
    """``in 59 min`` before ``at``, ``passed 2 s ago`` after it."""
    if at >= now:
        return f"in {span_label(at - now)}"
    return f"passed {span_label(now - at)} ago"
