"""Trace sinks: where the engine's events go (`@gravito/flux` vocabulary, NDJSON on disk)."""

from __future__ import annotations

import atexit
import json
import logging
import os
import threading
import time
import weakref
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from . import fast_json

TraceEvent = dict[str, Any]

_log = logging.getLogger("flux")

#: How long an event may wait in the buffer before it is written.
FLUSH_INTERVAL = 0.05


@runtime_checkable
class FluxTraceSink(Protocol):
    """Receives every trace event; must not block for long, and may not fail a run."""

    def emit(self, event: TraceEvent) -> None: ...

    def close(self) -> None: ...


class JsonFileTraceSink:
    """Appends one JSON object per line to `path` (emptied first only with `reset=True`).

    Events are buffered and written at most `FLUSH_INTERVAL` after they were emitted, by a
    background thread, in one `write` of whole lines on a file opened in append mode: a
    line is never split, so several processes can share one file.
    """

    def __init__(self, path: str | os.PathLike[str] = "./.flux/trace.ndjson", reset: bool = False) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        flags = os.O_WRONLY | os.O_CREAT | os.O_APPEND | (os.O_TRUNC if reset else 0)
        self._fd: int | None = os.open(self.path, flags, 0o644)
        if not reset:
            self._end_torn_line(self._fd)
        self._buffer: list[str] = []
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._closed = False
        self._encoder = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), default=str)
        self._thread = threading.Thread(target=self._run, name="flux-trace-writer", daemon=True)
        self._thread.start()
        _open_sinks.add(self)

    def _end_torn_line(self, fd: int) -> None:
        """A process killed inside a write leaves a last line without its newline: end it,
        so that the first event written here is a line of its own (readers skip the torn one)."""
        try:
            with open(self.path, "rb") as f:
                if f.seek(0, os.SEEK_END) == 0:
                    return
                f.seek(-1, os.SEEK_END)
                torn = f.read(1) != b"\n"
            if torn:
                # Another live writer's line may be what is not finished yet: the append
                # waits for its write, and then adds only a blank line, which readers skip.
                os.write(fd, b"\n")
        except OSError as exc:
            _log.error("flux: trace sink %s could not check the end of the file: %s", self.path, exc)

    def emit(self, event: TraceEvent) -> None:
        self._append(self._encode(event) + "\n")

    def emit_raw(self, event: TraceEvent, raw: dict[str, str]) -> None:
        """Like `emit`, with some values given as JSON text, spliced in as they are."""
        head = self._encode(event)
        self._append(head[:-1] + "".join(f',"{key}":{text}' for key, text in raw.items()) + "}\n")

    def _encode(self, event: TraceEvent) -> str:
        # orjson, when the `fast` extra is installed, for the events it writes byte for byte
        # as this encoder does (plain JSON values); the others go through this encoder.
        fast = fast_json.encode(event) if fast_json.ENABLED else None
        if fast is not None:
            return fast
        try:
            return self._encoder.encode(event)
        except Exception as exc:  # an int past the text limit, a cycle, a __str__ that raises
            return self._encoder.encode(self._salvage(event, exc))

    def _salvage(self, event: TraceEvent, error: Exception) -> TraceEvent:
        """The event with each value JSON cannot encode replaced by a text saying what it was."""
        out: TraceEvent = {}
        for key, value in event.items():
            try:
                self._encoder.encode(value)
            except Exception as exc:
                value = f"<{type(value).__name__} that JSON cannot encode: {exc}>"
                _log.warning(
                    "flux: trace event %s of run %r: %r replaced, as JSON cannot encode it (%s)",
                    event.get("type"),
                    event.get("workflowId"),
                    key,
                    exc,
                )
            out[str(key)] = value
        return out

    def _append(self, line: str) -> None:
        with self._lock:
            if self._closed:
                return
            self._buffer.append(line)
            first = len(self._buffer) == 1
        if first:
            self._wake.set()

    def flush(self) -> None:
        with self._lock:
            lines, self._buffer = self._buffer, []
            fd = self._fd
        if not lines or fd is None:
            return
        try:
            data = "".join(lines).encode("utf-8")
        except UnicodeEncodeError:
            data = b"".join(map(self._line_bytes, lines))
        try:
            while data:
                written = os.write(fd, data)
                data = data[written:]
        except OSError as exc:
            _log.error("flux: trace sink %s failed to write: %s", self.path, exc)

    def _line_bytes(self, line: str) -> bytes:
        try:
            return line.encode("utf-8")
        except UnicodeEncodeError:
            # A lone surrogate can only sit inside a JSON string, where "\udXXX" is its escape.
            _log.warning("flux: trace sink %s: a lone surrogate written as its escape", self.path)
            return line.encode("utf-8", "backslashreplace")

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
        self._wake.set()
        self._thread.join(timeout=5)
        self.flush()
        with self._lock:
            fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)
        _open_sinks.discard(self)

    def _run(self) -> None:
        while not self._closed:
            self._wake.wait()
            self._wake.clear()
            if not self._closed:
                time.sleep(FLUSH_INTERVAL)
            try:
                self.flush()
            except Exception:  # the writer outlives whatever one batch does
                _log.exception("flux: trace sink %s failed to write a batch of events", self.path)


_open_sinks: weakref.WeakSet[JsonFileTraceSink] = weakref.WeakSet()


@atexit.register
def _flush_open_sinks() -> None:
    """A process that exits without closing its engine still writes its last events."""
    for sink in list(_open_sinks):
        sink.flush()


class MemoryTraceSink:
    """Keeps events in a list: for tests and for code that inspects a run's events."""

    def __init__(self) -> None:
        self.events: list[TraceEvent] = []

    def emit(self, event: TraceEvent) -> None:
        self.events.append(event)

    def close(self) -> None:
        return None
