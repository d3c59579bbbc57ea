"""Several trace sinks at once, and sensitive keys masked in what each of them receives.

```python
engine = FluxEngine(
    trace=CompositeTraceSink(
        JsonFileTraceSink("./.flux/trace.ndjson"),
        OpenTelemetryTraceSink(),
        redact=("password", "card_number"),
    )
)
```

Redaction replaces the value of every key named in `redact` (compared without regard to
case, at any depth of dicts and lists) in the `input`, `data` and `output` of each event.
It works on copies: the event the engine passed in, and the run's stored state, are left
as they are. A sink that raises is logged on the `flux` logger and the other sinks still
receive the event.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable
from typing import Any

from .errors import FluxError
from .events import PAYLOAD_KEYS
from .serialization import loads_plain
from .trace import FluxTraceSink, TraceEvent

__all__ = ["REDACTED", "CompositeTraceSink", "RedactingTraceSink"]

_log = logging.getLogger("flux")

#: What a redacted value becomes.
REDACTED = "[redacted]"


def _key_set(redact: Iterable[str] | str) -> frozenset[str]:
    keys = (redact,) if isinstance(redact, str) else tuple(redact)
    for key in keys:
        if not isinstance(key, str) or not key:
            raise FluxError(f"redact: every key must be a non-empty string, got {key!r}")
    return frozenset(key.casefold() for key in keys)


def _mask(value: Any, keys: frozenset[str], mask: str) -> Any:
    """A copy of `value` with the values of `keys` replaced; containers that hold no such
    key are returned as they are (an event's payloads are never mutated, only rebuilt)."""
    if isinstance(value, dict):
        out: dict[Any, Any] | None = None
        for key, item in value.items():
            if isinstance(key, str) and key.casefold() in keys:
                new: Any = mask
            else:
                new = _mask(item, keys, mask)
            if new is not item and out is None:
                out = dict(value)
            if out is not None:
                out[key] = new
        return value if out is None else out
    if isinstance(value, list):
        items = [_mask(item, keys, mask) for item in value]
        return value if all(a is b for a, b in zip(items, value, strict=True)) else items
    return value


def _decode(raw: dict[str, str]) -> dict[str, Any]:
    return {key: loads_plain(text) for key, text in raw.items()}


class CompositeTraceSink:
    """Sends every event to each of `sinks`, in order, each getting its own copy.

    `redact` names keys whose values are replaced by `mask` in the input, data and output
    of every copy.
    """

    def __init__(self, *sinks: FluxTraceSink, redact: Iterable[str] | str = (), mask: str = REDACTED) -> None:
        for sink in sinks:
            if not callable(getattr(sink, "emit", None)):
                raise FluxError(f"CompositeTraceSink: {sink!r} has no emit(event) method")
        self.sinks: tuple[FluxTraceSink, ...] = sinks
        self.redact = _key_set(redact)
        self.mask = mask
        self._failed: set[int] = set()
        self._lock = threading.Lock()
        self._closed = False

    def redacted(self, event: TraceEvent) -> TraceEvent:
        """A shallow copy of `event` with its payloads redacted (the event is not changed)."""
        copy = dict(event)
        if self.redact:
            for key in PAYLOAD_KEYS:
                if key in copy:
                    copy[key] = _mask(copy[key], self.redact, self.mask)
        return copy

    def emit(self, event: TraceEvent) -> None:
        base = self.redacted(event)
        for index, sink in enumerate(self.sinks):
            try:
                sink.emit(dict(base) if index else base)
            except Exception as exc:
                self._report(index, sink, "emit", exc)

    def emit_raw(self, event: TraceEvent, raw: dict[str, str]) -> None:
        """`emit` with some values still JSON text (the engine's fast path): the text goes as
        it is to the sinks that take it (their own `emit_raw`) and is decoded once for the
        others. With `redact`, every sink gets the decoded, redacted values."""
        if self.redact:
            self.emit({**event, **_decode(raw)})
            return
        decoded: TraceEvent | None = None
        for index, sink in enumerate(self.sinks):
            try:
                splice = getattr(sink, "emit_raw", None)
                if callable(splice):
                    splice(dict(event), raw)
                    continue
                if decoded is None:
                    decoded = {**event, **_decode(raw)}
                sink.emit(dict(decoded))
            except Exception as exc:
                self._report(index, sink, "emit", exc)

    def flush(self) -> None:
        """Flush the sinks that buffer (such as `JsonFileTraceSink`): call it before a
        serverless function returns, since the platform may freeze the process right after."""
        for index, sink in enumerate(self.sinks):
            flush = getattr(sink, "flush", None)
            if callable(flush):
                try:
                    flush()
                except Exception as exc:
                    self._report(index, sink, "flush", exc)

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
        for index, sink in enumerate(self.sinks):
            try:
                sink.close()
            except Exception as exc:
                self._report(index, sink, "close", exc)

    def _report(self, index: int, sink: FluxTraceSink, what: str, exc: Exception) -> None:
        # The first failure of a sink is logged with its traceback; later ones in one line,
        # so that a broken sink does not bury the application's log in tracebacks.
        with self._lock:
            first = index not in self._failed
            self._failed.add(index)
        _log.error(
            "flux: trace sink %r failed in %s(): %r; the other sinks go on",
            sink,
            what,
            exc,
            exc_info=exc if first else None,
        )

    def __repr__(self) -> str:
        return f"{type(self).__name__}({', '.join(map(repr, self.sinks))}, redact={sorted(self.redact)})"


class RedactingTraceSink(CompositeTraceSink):
    """One sink, with `redact` keys masked in the input, data and output of its events."""

    def __init__(self, sink: FluxTraceSink, *, redact: Iterable[str] | str, mask: str = REDACTED) -> None:
        super().__init__(sink, redact=redact, mask=mask)
        self.sink = sink
