"""The trace reader: bytes of an NDJSON trace in, a compact index of runs out.

This module is pure: it is fed bytes and never touches a file, a clock or the
network, so every edge case (a half-written last line, a malformed line, lines
without ``v``/``seq`` from ``@gravito/flux``) is testable without a server.

It keeps per run only what the runs page needs (``viewer.summary``) plus the
byte offset of each of the run's lines. A trace of a million events would not fit in the
memory budget as parsed dicts; the run page re-reads and parses just its own
run's lines on demand (see ``viewer.store``).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from flux.events import EventType

from .lines import (
    HUGE_INT_DIGITS,
    MALFORMED_KEPT,
    SNIPPET,
    Malformed,
    fast_loads,
    number_or_none,
    parse_line,
    scan,
    unrepresentable,
)
from .runstatus import fold_status
from .summary import RunSummary

# Plain strings, compared once per line on the hot path.
_START = EventType.STEP_START.value
_COMPLETE = EventType.STEP_COMPLETE.value
_SKIPPED = EventType.STEP_SKIPPED.value
_STARTS = frozenset({EventType.WORKFLOW_START.value, EventType.WORKFLOW_RESUME.value})
_FINISHED = frozenset({_COMPLETE, _SKIPPED})


@dataclass
class Delta:
    """What one ``feed`` changed: the ids of runs touched, new malformed lines, and
    the parsed events of the runs in ``TraceIndex.keep`` (run id, the event's
    position among the run's offsets, the event), so that their reader need not
    read and parse the lines again."""

    runs: set[str] = field(default_factory=set)
    new_runs: int = 0
    malformed: int = 0
    events: list[tuple[str, int, dict[str, Any]]] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.runs) or self.malformed > 0


class TraceIndex:
    """Folds a trace, fed in arbitrary byte chunks, into ``RunSummary`` objects.

    Bytes after the last newline are held back until their line is complete:
    a writer may be halfway through a line when the tailer reads.
    """

    def __init__(self) -> None:
        self.runs: dict[str, RunSummary] = {}
        #: workflow name -> number of runs, for the runs page's filter.
        self.workflows: dict[str, int] = {}
        self.malformed: list[Malformed] = []
        self.malformed_count = 0
        #: Complete lines consumed, and their total size in bytes.
        self.lines = 0
        self.consumed = 0
        #: Bumped whenever the order of the runs list may have changed.
        self.order_version = 0
        self._pending = b""
        #: Runs whose parsed events each ``feed`` hands back in its ``Delta``.
        self.keep: set[str] = set()

    @property
    def pending(self) -> int:
        """Bytes of a line not yet terminated by a newline."""
        return len(self._pending)

    def feed(self, data: bytes) -> Delta:
        delta = Delta()
        cut = data.rfind(b"\n")
        if cut < 0:
            self._pending += data
            return delta
        start = 0
        if self._pending:
            # The line begun in an earlier chunk ends in this one: fold it on
            # its own rather than copy the whole chunk behind it.
            start = data.find(b"\n") + 1
            self._fold_block(self._pending + data[: start - 1], delta)
        if start <= cut:
            self._fold_block(memoryview(data)[start:cut], delta)
        self._pending = data[cut + 1 :]
        return delta

    def _fold_block(self, body: bytes | memoryview, delta: Delta) -> None:
        """Fold complete lines: ``body`` holds them without the last newline."""
        text = str(body, "utf-8", "replace")
        sizes: Iterable[int]
        if text.isascii():
            # One character per byte: a line's length is its size on disk.
            lines = text.split("\n")
            sizes = map(len, lines)
        else:
            raw = bytes(body).split(b"\n")
            lines = [b.decode("utf-8", "replace") for b in raw]
            sizes = map(len, raw)
        self._fold_lines(lines, sizes, delta)

    def _fold_lines(self, lines: list[str], sizes: Iterable[int], delta: Delta) -> None:
        # The hot loop of a million-line start-up: ``fold_event``'s two
        # commonest cases are repeated inline, which saves a call per line.
        runs = self.runs
        changed = delta.runs
        scan_one = scan
        finished, start_ = _FINISHED, _START
        huge = HUGE_INT_DIGITS
        loads = fast_loads
        keep = self.keep
        offset = self.consumed
        lineno = self.lines
        for line, size in zip(lines, sizes, strict=True):
            n = len(line)
            start = offset
            offset += size + 1
            lineno += 1
            try:
                if loads is not None:
                    ev = loads(line)
                    ok = type(ev) is dict
                else:
                    ev, end = scan_one(line, 0)
                    ok = end == n and type(ev) is dict
            except (StopIteration, ValueError, RecursionError):
                ok = False
            if ok:
                wid = ev.get("workflowId")
                typ = ev.get("type")
                ok = type(wid) is str and type(typ) is str
                # Only a line this long can hold an integer past float range,
                # which orjson refuses itself.
                if ok and n >= huge and loads is None:
                    ok = unrepresentable(ev) is None
            if not ok:
                if not line.strip():
                    continue
                parsed = parse_line(line)
                if isinstance(parsed, str):
                    self._skip(lineno, parsed, line, delta)
                    continue
                ev = parsed
                wid = ev["workflowId"]
                typ = ev["type"]
            run = runs.get(wid)
            if run is None:
                run = self._new_run(wid, ev, lineno)
                delta.new_runs += 1
            run.offsets.append(start)
            changed.add(wid)
            if keep and wid in keep:
                delta.events.append((wid, len(run.offsets) - 1, ev))
            if typ in finished:
                name = ev.get("stepName")
                # A branch or an item counts in its group's step (SPEC §11), not as one.
                if type(name) is str and type(ev.get("group")) is not str:
                    run.done.add(name)
                    if run.seen is not None:
                        run.seen.add(name)
            elif typ == start_:
                if (
                    run.seen is not None
                    and type(name := ev.get("stepName")) is str
                    and type(ev.get("group")) is not str
                ):
                    run.seen.add(name)
            else:
                self._fold(run, ev, typ)
        self.consumed = offset
        self.lines = lineno

    def _new_run(self, wid: str, ev: dict[str, Any], lineno: int) -> RunSummary:
        name = ev.get("workflowName")
        name = name if type(name) is str else ""
        run = self.runs[wid] = RunSummary(wid, name, lineno)
        run.started_at = number_or_none(ev.get("timestamp"))
        run.seen = set()
        self.workflows[name] = self.workflows.get(name, 0) + 1
        self.order_version += 1
        return run

    def _rename(self, run: RunSummary, name: str) -> None:
        # A run first seen through a line without its workflow's name.
        left = self.workflows.get(run.workflow, 0) - 1
        if left > 0:
            self.workflows[run.workflow] = left
        else:
            self.workflows.pop(run.workflow, None)
        run.workflow = name
        self.workflows[name] = self.workflows.get(name, 0) + 1

    def _skip(self, lineno: int, reason: str, line: str, delta: Delta) -> None:
        self.malformed_count += 1
        delta.malformed += 1
        if len(self.malformed) < MALFORMED_KEPT:
            text = line if len(line) <= SNIPPET else line[:SNIPPET] + "…"
            self.malformed.append(Malformed(lineno, reason, text))

    def fold_event(self, run: RunSummary, offset: int, ev: dict[str, Any]) -> None:
        """Fold one parsed event, found at byte ``offset``, into ``run``."""
        run.offsets.append(offset)
        typ = ev["type"]
        name = ev.get("stepName")
        if typ in _FINISHED:
            if type(name) is str and type(ev.get("group")) is not str:
                run.done.add(name)
                if run.seen is not None:
                    run.seen.add(name)
        elif typ == _START:
            if run.seen is not None and type(name) is str and type(ev.get("group")) is not str:
                run.seen.add(name)
        else:
            self._fold(run, ev, typ)

    def _fold(self, run: RunSummary, ev: dict[str, Any], typ: str) -> None:
        if typ in _STARTS and not run.workflow and type(ev.get("workflowName")) is str and ev["workflowName"]:
            self._rename(run, ev["workflowName"])  # a run first seen without its workflow's name
        if fold_status(run, ev, typ):
            self.order_version += 1
