"""`Flux.wait`, `Flux.sleep`, `Flux.sleep_until`: what a handler returns to suspend its run
until a signal arrives or a moment comes (SPEC §5 signals, §10 durable time)."""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass
from typing import Any

from .errors import WorkflowDefinitionError

_NO_DEFAULT: Any = object()


class RequestError(WorkflowDefinitionError):
    """A `Flux.sleep` / `Flux.wait` given bad arguments inside a handler. The driver raises it
    again as a `WorkflowDefinitionError` naming the workflow, step and run it was written in."""


@dataclass(frozen=True)
class WaitRequest:
    """Returned by a handler: suspend the run until `signal` is delivered, or (with a
    `timeout`) until `timeout` seconds have passed: then the step completes with `default`
    if one was given, else fails with `SignalTimeoutError`."""

    signal: str
    timeout: float | None = None
    default: Any = _NO_DEFAULT

    @property
    def has_default(self) -> bool:
        return self.default is not _NO_DEFAULT


@dataclass(frozen=True)
class SleepRequest:
    """Returned by a handler: the step sleeps durably for `seconds`, or until the epoch time
    `until`; then it completes (its output is None) and the run goes on."""

    seconds: float | None = None
    until: float | None = None


#: The longest sleep, timeout or deadline: a hundred years (a wake time must be a datetime).
MAX_SECONDS = 100 * 366 * 86400.0


def check_seconds(what: str, value: object, *, zero: bool) -> float:
    """`value` as seconds, or a `WorkflowDefinitionError` starting with `what`."""
    return _check_seconds(what, value, zero=zero)


def _check_seconds(what: str, value: object, *, zero: bool) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise RequestError(f"{what}: must be a number of seconds, got {type(value).__name__}")
    bound = ">= 0" if zero else "> 0"
    try:
        seconds = float(value)
    except OverflowError:
        seconds = math.inf
    if not math.isfinite(seconds) or seconds < 0 or (seconds == 0 and not zero):
        raise RequestError(f"{what}: must be a finite number of seconds {bound}")
    if seconds > MAX_SECONDS:
        raise RequestError(f"{what}: more than a hundred years ({MAX_SECONDS:g}s) is not supported")
    return seconds


class Flux:
    """Helpers a handler uses to talk to the engine."""

    @staticmethod
    def wait(signal: str, *, timeout: float | None = None, default: Any = _NO_DEFAULT) -> WaitRequest:
        """Return this from a handler to suspend the run until `engine.signal(..., signal)`.

        With `timeout` (seconds > 0, on the engine's clock), the wait ends then: the step
        completes with `default` if one is given, else fails with `SignalTimeoutError` (not
        retried; the saga follows). A signal that arrives after the timeout raises
        `RunStateError`."""
        if not isinstance(signal, str) or not signal:
            raise RequestError(f"Flux.wait({signal!r}): the signal must be a non-empty string")
        if timeout is not None:
            timeout = _check_seconds(f"Flux.wait({signal!r}, timeout={timeout!r})", timeout, zero=False)
        elif default is not _NO_DEFAULT:
            raise RequestError(
                f"Flux.wait({signal!r}, default=...): a default needs a timeout (timeout=seconds)"
            )
        return WaitRequest(signal, timeout, default)

    @staticmethod
    def sleep(seconds: float) -> SleepRequest:
        """Return this from a handler: the step sleeps durably for `seconds` (>= 0, on the
        engine's clock). The run is stored with its wake time; any process working the
        storage wakes it then."""
        return SleepRequest(seconds=_check_seconds(f"Flux.sleep({seconds!r})", seconds, zero=True))

    @staticmethod
    def sleep_until(when: dt.datetime) -> SleepRequest:
        """Return this from a handler: the step sleeps durably until `when`, an aware
        datetime. A moment already past wakes the step at once."""
        if not isinstance(when, dt.datetime):
            raise RequestError(
                f"Flux.sleep_until({when!r}): pass an aware datetime "
                "(e.g. datetime(..., tzinfo=timezone.utc))"
            )
        if when.tzinfo is None or when.utcoffset() is None:
            raise RequestError(
                f"Flux.sleep_until({when.isoformat()}): a naive datetime is ambiguous; "
                "pass an aware datetime (e.g. datetime(..., tzinfo=timezone.utc))"
            )
        try:
            when.astimezone(dt.timezone.utc)
        except (OverflowError, ValueError):
            raise RequestError(
                f"Flux.sleep_until({when.isoformat()}): the moment is past the year 9999 in UTC; "
                "a wake time must be a datetime"
            ) from None
        return SleepRequest(until=when.timestamp())
