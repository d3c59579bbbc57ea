"""The trace file seen through a ``TraceIndex``: the one place that reads it.

``sync`` reads only the bytes appended since the last call, from a remembered
offset, and starts over when the file was truncated (``reset=True`` in the
engine), replaced (another inode) or rewritten (its first bytes differ). It
never creates, writes or locks anything: the viewer is read-only.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import bulk
from .lines import parse_line
from .summary import RunSummary
from .trace import TraceIndex

log = logging.getLogger("viewer")

#: Bytes read and folded between two yields to the event loop, so that a large
#: trace loads without starving the server.
CHUNK = 4 << 20
#: Leading bytes remembered to notice a file rewritten in place to the same size.
PREFIX = 256
#: Bytes folded between two yields while a large file's first load runs beside
#: the requests that its preview answers: small, so that they wait little.
FIRST_LOAD_CHUNK = 1 << 20
#: Runs whose parsed events are kept for the run page and its fragments.
CACHED_RUNS = 4


@dataclass(frozen=True)
class Change:
    """Published after a sync that changed something."""

    version: int
    runs: frozenset[str]
    reset: bool = False


class TraceStore:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.index = TraceIndex()
        self.exists = False
        self.error: str | None = None
        #: Bumped on every change, so that a page can tell what it has missed.
        self.version = 0
        #: Bumped on every reset: run events cached before it are void.
        self.epoch = 0
        self.listeners: list[Callable[[Change], None]] = []
        #: A large file's first load is under way: ``index`` holds only its
        #: newest runs (``bulk.preview``) and pages do not wait for the rest.
        self.loading = False
        self._loaded = asyncio.Event()
        self._identity: tuple[int, int] | None = None
        self._prefix = b""
        self._lock = asyncio.Lock()
        self._cache: OrderedDict[str, tuple[int, int, list[dict[str, Any]]]] = OrderedDict()

    @property
    def offset(self) -> int:
        """Bytes of the file taken in, the held-back partial line included."""
        return self.index.consumed + self.index.pending

    async def sync(self) -> None:
        if self.loading:
            return  # the first load holds the lock; the preview answers meanwhile
        async with self._lock:
            await self._sync()

    async def _sync(self) -> None:
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            if self.exists or self.offset:
                self._reset()
            self.exists, self.error = False, None
            return
        except OSError as exc:
            self.error = f"cannot read {self.path}: {exc.strerror}"
            return
        identity = (st.st_dev, st.st_ino)
        if self.offset and (
            identity != self._identity or st.st_size < self.offset or not self._same_prefix()
        ):
            self._reset()
        self.exists, self._identity = True, identity
        if not self.offset and bulk.workers_for(st.st_size):
            await self._first_load(st.st_size)
        if st.st_size > self.offset:
            await self._read_appended()

    def _same_prefix(self) -> bool:
        try:
            with open(self.path, "rb") as f:
                return f.read(len(self._prefix)) == self._prefix
        except OSError:
            return False

    async def _read_appended(self) -> None:
        # Local reads of page-cached bytes are quick; parsing is what takes
        # time, and it stays on the event loop so that the index is never
        # changed under a request. Yielding between chunks keeps the server
        # responsive while a large file loads.
        try:
            for chunk in self._chunks(self.offset):
                if len(self._prefix) < PREFIX:
                    self._prefix = (self._prefix + chunk)[:PREFIX]
                delta = self.index.feed(chunk)
                for run_id, at, ev in delta.events:
                    self._keep_event(run_id, at, ev)
                if delta:
                    self._publish(Change(self.version + 1, frozenset(delta.runs)))
                if len(chunk) == CHUNK:
                    await asyncio.sleep(0)
        except OSError as exc:
            self.error = f"cannot read {self.path}: {exc.strerror}"
        else:
            self.error = None

    def _chunks(self, start: int, end: int | None = None, size: int = CHUNK) -> Iterator[bytes]:
        with open(self.path, "rb") as f:
            f.seek(start)
            left = -1 if end is None else end - start
            while left and (chunk := f.read(size if left < 0 else min(size, left))):
                left -= len(chunk) if left > 0 else 0
                yield chunk

    async def _first_load(self, size: int) -> None:
        """Fold a large file on several cores (see ``viewer.bulk``), its newest
        runs first. Whatever a worker fails to do is left to the ordinary
        sequential read."""
        try:
            parts = bulk.segments(self.path, size, bulk.workers_for(size) + 1, bulk.FIRST_SHARE)
        except OSError:
            return
        workers = [asyncio.ensure_future(bulk.fold_in_worker(self.path, a, b)) for a, b in parts[1:]]
        full = TraceIndex()
        try:
            self.index, self.loading = bulk.preview(self.path, size), True
            self._loaded.clear()
            self._publish(Change(self.version + 1, frozenset(self.index.runs)))
            await asyncio.sleep(0)  # let the first requests have the preview
            for chunk in self._chunks(0, parts[0][1], FIRST_LOAD_CHUNK):
                if len(self._prefix) < PREFIX:
                    self._prefix = (self._prefix + chunk)[:PREFIX]
                full.feed(chunk)
                await asyncio.sleep(0)
            self._merge(full, await asyncio.gather(*workers, return_exceptions=True))
        except OSError as exc:
            log.warning("reading %s failed (%s); reading on in one process", self.path, exc)
        finally:
            for worker in workers:
                worker.cancel()
            # The preview's runs are the whole index's too, with the same
            # offsets; cached events stay valid, but a fresh start is simpler.
            self.index, self.loading = full, False
            self._loaded.set()
            self._cache.clear()
            self.epoch += 1
        if self.index.runs:
            self._publish(Change(self.version + 1, frozenset(self.index.runs)))

    def _merge(self, full: TraceIndex, parts: list[TraceIndex | BaseException]) -> None:
        # Parts merge in file order. After a failed one, the ordinary
        # sequential read takes over from where the merge stopped.
        with open(self.path, "rb") as f:

            def read_line(offset: int) -> bytes:
                f.seek(offset)
                return f.readline()

            for part in parts:
                if not isinstance(part, TraceIndex):
                    log.warning("a loader process failed (%r); reading on in one process", part)
                    return
                bulk.merge(full, part, read_line)

    def _reset(self) -> None:
        self.index = TraceIndex()
        self._identity, self._prefix = None, b""
        self._cache.clear()
        self.epoch += 1
        self._publish(Change(self.version + 1, frozenset(), reset=True))

    def _publish(self, change: Change) -> None:
        self.version = change.version
        for listener in self.listeners:
            listener(change)

    @contextlib.contextmanager
    def value_lines(self) -> Iterator[Callable[[RunSummary], tuple[bytes | None, bytes | None]]]:
        """A reader of the lines that hold a run's input and final data, for search.

        One open file for a whole search; a line that cannot be read is None.
        (Mapping the file instead measured slower: a fault per page touched.)
        """
        try:
            f = open(self.path, "rb")  # noqa: SIM115 - closed below, after the search
        except OSError:
            yield lambda run: (None, None)
            return

        def line(run: RunSummary, at: int) -> bytes | None:
            if not 0 <= at < len(run.offsets):
                return None
            try:
                f.seek(run.offsets[at])
                return f.readline().rstrip(b"\r\n")
            except OSError:
                return None

        try:
            yield lambda run: (line(run, run.input_at), line(run, run.data_at))
        finally:
            f.close()

    def run(self, run_id: str) -> RunSummary | None:
        return self.index.runs.get(run_id)

    async def find(self, run_id: str) -> RunSummary | None:
        """``run``, but a run the preview of a loading file does not hold (an
        older one) is looked up once the whole index is in, not reported missing."""
        run = self.index.runs.get(run_id)
        while run is None and self.loading:
            await self._loaded.wait()
            run = self.index.runs.get(run_id)
        return run

    def events(self, run: RunSummary) -> list[dict[str, Any]]:
        """The run's events in file order, parsed from the lines the index points at.

        Lines are read on demand; the index holds no parsed events. A run read
        here is then cached, and the index hands over its new lines' events as
        it parses them (``TraceIndex.keep``): a line is read and parsed once.
        """
        cached = self._cache.get(run.id)
        if cached is not None and cached[0] == self.epoch and cached[1] <= len(run.offsets):
            _, seen, events = cached
            self._cache.move_to_end(run.id)
        else:
            seen, events = 0, []
        if seen < len(run.offsets):
            events = events + self._read_lines(run, seen)
            seen = len(run.offsets)
        self._cache[run.id] = (self.epoch, seen, events)
        while len(self._cache) > CACHED_RUNS:
            self._cache.popitem(last=False)
        self.index.keep = set(self._cache)
        return events

    def _keep_event(self, run_id: str, at: int, ev: dict[str, Any]) -> None:
        # One read, one parse: a cached run's new line, parsed by the index,
        # joins its events here instead of being read again by the page.
        cached = self._cache.get(run_id)
        if cached is not None and cached[0] == self.epoch and cached[1] == at:
            cached[2].append(ev)
            self._cache[run_id] = (self.epoch, at + 1, cached[2])

    def _read_lines(self, run: RunSummary, start: int) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        try:
            with open(self.path, "rb") as f:
                for offset in run.offsets[start:]:
                    f.seek(offset)
                    # The index's own parser: a line it folded reads the same here.
                    ev = parse_line(f.readline().decode("utf-8", "replace").rstrip("\r\n"))
                    if isinstance(ev, dict) and ev["workflowId"] == run.id:
                        out.append(ev)
                    # else the file changed under us, or the line holds a number
                    # no float holds (NaN, 1e999: the index let it by, harmless
                    # there); the next sync resets in the first case.
        except OSError:
            pass
        return out
