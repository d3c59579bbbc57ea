"""Following a storage without polling it: each change becomes a notification on the hub.

- SQLite: the database file and its ``-wal`` are watched (watchfiles, as the trace is); an
  event is a real change only if ``PRAGMA data_version`` moved (a reader, or a checkpoint
  that keeps the WAL, touches the files without changing any run; one that truncates the WAL
  moves it, which costs the open pages one look). Which runs changed SQLite cannot say: open
  pages all look again, each at what it shows (one indexed query).
- PostgreSQL: ``LISTEN flux_runs``; migration 6's trigger sends each changed run's id.

A failure is logged and the watch starts again (and pages look again, having maybe missed
something): live updates must not stop for good.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
from pathlib import Path

from watchfiles import Change as FileChange
from watchfiles import awatch

from .hub import Hub
from .store import Change

log = logging.getLogger("viewer")

#: As the trace's watcher (``viewer.tailer``): report STEP_MS after the last write.
DEBOUNCE_MS = 25
STEP_MS = 2
#: The pause before watching again after a failure (a lost connection, a vanished folder).
RETRY_S = 0.5
#: The channel migration 6's trigger notifies.
CHANNEL = "flux_runs"


class StorageWatch:
    """Publishes to ``hub`` what changes in the storage at ``url``; ``version`` counts changes."""

    def __init__(self, url: str, hub: Hub) -> None:
        self.url = url
        self.hub = hub
        self.version = 0
        #: Set once the watch is in place (tests and the bench wait for it).
        self.ready = asyncio.Event()
        #: Set after each look at the database that file events caused (for the tests).
        self.looked = asyncio.Event()

    def _changed(self, runs: frozenset[str] | None) -> None:
        self.version += 1
        if runs is None or "" in runs:
            self.hub.publish_all()
        else:
            self.hub.publish(Change(self.version, runs))

    async def run(self, stop: asyncio.Event) -> None:
        scheme = self.url.partition("://")[0].lower()
        follow = _sqlite if scheme == "sqlite" else _postgres if scheme.startswith("postgres") else None
        if follow is None:
            return  # memory://: another process cannot change it
        while not stop.is_set():
            try:
                await follow(self, stop)
            except Exception:
                log.exception("following the storage %s failed; starting again", _safe(self.url))
            if not stop.is_set():
                self._changed(None)  # something may have been missed meanwhile
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(stop.wait(), RETRY_S)


def _safe(url: str) -> str:
    """The URL without a password, for a log line."""
    scheme, sep, rest = url.partition("://")
    creds, at, host = rest.rpartition("@")
    if not at:
        return url
    return f"{scheme}{sep}{creds.partition(':')[0]}@{host}"


def sqlite_path(url: str) -> Path:
    rest = url.partition("://")[2].partition("?")[0]
    return Path(rest[1:] if rest.startswith("/") else rest)


def _data_version(conn: sqlite3.Connection) -> int:
    row = conn.execute("PRAGMA data_version").fetchone()
    return int(row[0])


async def _sqlite(watch: StorageWatch, stop: asyncio.Event) -> None:
    path = sqlite_path(watch.url).resolve()
    names = {path.name, path.name + "-wal"}

    def ours(change: FileChange, changed: str) -> bool:
        return Path(changed).name in names

    # Read-only, and never creating the file: this connection only asks for data_version.
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, check_same_thread=False)
    try:
        seen = _data_version(conn)
        watcher = awatch(
            path.parent,
            watch_filter=ours,
            debounce=DEBOUNCE_MS,
            step=STEP_MS,
            stop_event=stop,
            recursive=False,
        )
        watch.ready.set()
        async for _ in watcher:
            now = _data_version(conn)
            if now != seen:
                seen = now
                watch._changed(None)
            watch.looked.set()
    finally:
        conn.close()


def _pg_conninfo(url: str) -> str:
    """The URL as psycopg takes it: without Flux's own ``durability`` option."""
    base, _, query = url.partition("?")
    kept = [p for p in query.split("&") if p and not p.startswith("durability=")]
    return base + ("?" + "&".join(kept) if kept else "")


async def _postgres(watch: StorageWatch, stop: asyncio.Event) -> None:
    import psycopg

    conn = await psycopg.AsyncConnection.connect(_pg_conninfo(watch.url), autocommit=True)
    try:
        await conn.execute(f"LISTEN {CHANNEL}")
        watch.ready.set()
        stopping = asyncio.ensure_future(stop.wait())
        notifies = conn.notifies()
        try:
            while not stop.is_set():
                nxt = asyncio.ensure_future(anext(notifies))
                done, _ = await asyncio.wait({nxt, stopping}, return_when=asyncio.FIRST_COMPLETED)
                if nxt not in done:
                    nxt.cancel()
                    with contextlib.suppress(asyncio.CancelledError, StopAsyncIteration):
                        await nxt
                    break
                note = nxt.result()
                watch._changed(frozenset({note.payload}))
        finally:
            stopping.cancel()
    finally:
        await conn.close()
