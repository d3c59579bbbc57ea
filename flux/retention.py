"""Retention: which runs `engine.prune` removes, from its arguments (a pure core).

`older_than` is a `timedelta` or seconds; `status` is None (the finished states), one state,
or an iterable of states. A run's age is the time since its last change (`updated_at`): for a
finished run, since it finished. `parse_age` reads the CLI's `30d`, `12h`, `90m`, `45s`, `2w`.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from datetime import timedelta

from .errors import FluxError
from .status import RUN_TERMINAL, RunStatus

#: What `prune` removes unless told otherwise: runs that nobody will execute again.
FINISHED: tuple[RunStatus, ...] = tuple(s for s in RunStatus if s in RUN_TERMINAL)
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def age_seconds(older_than: object) -> float:
    """`older_than` as seconds >= 0, or a `FluxError` naming it."""
    if isinstance(older_than, timedelta):
        seconds = older_than.total_seconds()
    elif isinstance(older_than, (int, float)) and not isinstance(older_than, bool):
        try:
            seconds = float(older_than)
        except OverflowError:
            seconds = math.inf
    else:
        raise FluxError(f"prune(older_than={older_than!r}): give a timedelta or a number of seconds")
    if not math.isfinite(seconds) or seconds < 0:
        raise FluxError(f"prune(older_than={older_than!r}): must be finite and >= 0")
    return seconds


def statuses(status: object) -> tuple[RunStatus, ...]:
    """The states to prune: FINISHED for None, else the named ones (a `FluxError` for others)."""
    if status is None:
        return FINISHED
    wanted = [status] if isinstance(status, str) else status
    if not isinstance(wanted, Iterable):
        raise FluxError(f"prune(status={status!r}): give a status, a list of statuses or None")
    found: list[RunStatus] = []
    for s in wanted:
        try:
            value = RunStatus(s)
        except ValueError:
            raise FluxError(
                f"prune(status={s!r}): unknown status; use one of {[r.value for r in RunStatus]}"
            ) from None
        if value not in found:
            found.append(value)
    return tuple(found)


def parse_age(text: str) -> float:
    """`30d` (or `12h`, `90m`, `45s`, `2w`, a bare number of seconds) as seconds."""
    raw = text.strip().lower()
    unit = raw[-1:] if raw[-1:] in _UNITS else "s"
    number = raw[:-1] if raw[-1:] in _UNITS else raw
    if not number.isascii() or not number.replace(".", "", 1).isdigit():
        raise FluxError(f"--older-than {text!r}: use a number and a unit, e.g. 30d, 12h, 90m, 45s, 2w")
    seconds = float(number) * _UNITS[unit]
    if not math.isfinite(seconds):
        raise FluxError(f"--older-than {text!r}: too large")
    return seconds
