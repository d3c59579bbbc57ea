"""The group commit of the `PostgresStorage` objects of one process on one database.

Every `PostgresStorage` of a process with the same URL and durability shares one `PgHub`:
the saves of all their runs (the runs of one engine, and those of the threads of
`flux worker --concurrency N`, each with its own engine) go to one `GroupCommit`. A batch is
one transaction, its statements sent in one pipeline (one round trip, then the COMMIT: one
WAL flush for all of them). Each save is one statement that writes nothing when its lease
is lost, so a lost lease needs no undo; a statement the server refuses aborts the whole
transaction, and then each save of the batch is written alone, so that only the refused
one fails. Saves are idempotent (the same rows again), so writing one again is safe.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Sequence
from typing import Any

import psycopg

from ..errors import StorageError
from ._group import GroupCommit, Write

#: Commits in flight at once. A save that comes alone to its loop (a worker thread's run)
#: commits on its own thread and connection, as many at once as there are threads: the
#: server already flushes the WAL of concurrent commits together, and capping them at a
#: few measured slower (docs/performance.md). The runs of one loop at once are batched.
_SLOTS = 64
#: By URL, durability and process (a forked child starts its own: threads do not survive a fork).
_hubs: dict[tuple[str, str, int], PgHub] = {}
_hubs_lock = threading.Lock()


class PgHub:
    def __init__(
        self, url: str, durability: str, where: str, connect_timeout: float,
        still_open: Callable[[psycopg.Connection[Any]], bool],
    ) -> None:  # fmt: skip
        self.url = url
        self._still_open = still_open
        self.durability = durability
        self.where = where
        self.connect_timeout = connect_timeout
        self.refs = 0
        self.key: tuple[str, str, int] = (url, durability, os.getpid())
        self._idle: list[psycopg.Connection[Any]] = []
        self._lock = threading.Lock()
        self.group = GroupCommit(self._commit, "postgres-writer", slots=_SLOTS)

    @classmethod
    def acquire(
        cls, url: str, durability: str, where: str, connect_timeout: float,
        still_open: Callable[[psycopg.Connection[Any]], bool],
    ) -> PgHub:  # fmt: skip
        with _hubs_lock:
            key = (url, durability, os.getpid())
            hub = _hubs.get(key)
            if hub is None:
                hub = _hubs[key] = cls(url, durability, where, connect_timeout, still_open)
                hub.key = key
            hub.refs += 1
            return hub

    def release(self) -> None:
        with _hubs_lock:
            self.refs -= 1
            if self.refs > 0:
                return
            _hubs.pop(self.key, None)
        self.group.close()
        with self._lock:
            idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()

    def _connect(self) -> psycopg.Connection[Any]:
        # Only the writer thread commits batches: it keeps one connection.
        while True:
            with self._lock:
                if not self._idle:
                    break
                idle = self._idle.pop()
            if self._still_open(idle):
                return idle
            idle.close()
        conn = psycopg.connect(self.url, autocommit=True, connect_timeout=int(self.connect_timeout))
        if self.durability == "normal":
            conn.execute("SET synchronous_commit = off")
        return conn

    def _error(self, w: Write, exc: BaseException) -> StorageError:  # as `PostgresStorage._call_now`
        return StorageError(f"{self.where}: {w.what} failed: {exc}".rstrip())

    def _commit(self, batch: Sequence[Write]) -> None:
        if len(batch) == 1:
            self._alone(batch[0])
            return
        try:
            conn = self._connect()
        except psycopg.Error as exc:
            for w in batch:
                w.error = self._error(w, exc)
            return
        try:
            self._together(conn, batch)
        except (psycopg.Error, UnicodeError) as exc:
            if conn.broken or conn.closed:
                # Lost in flight: whether the batch was committed is unknown, as for one save.
                for w in batch:
                    w.error, w.result = self._error(w, exc), None
                return
            for w in batch:  # one was refused and nothing was written: each alone now
                w.error = w.result = None
                self._alone(w)
        finally:
            if conn.closed or conn.broken:
                conn.close()
            else:
                with self._lock:
                    self._idle.append(conn)

    def _alone(self, w: Write) -> None:
        """`w` in a transaction of its own, as the storage writes it (its errors its own)."""
        assert w.alone is not None
        try:
            w.result = w.alone()
        except Exception as exc:
            w.error = exc

    @staticmethod
    def _together(conn: psycopg.Connection[Any], batch: Sequence[Write]) -> None:
        """All of `batch` in one transaction and one pipeline; raises if any is refused."""
        with conn.pipeline(), conn.transaction():
            cursors = [w.fn(conn) for w in batch]
        for w, cur in zip(batch, cursors, strict=True):
            w.result = _row(cur)


def _row(cur: Any) -> Any:
    """A save's answer: the row its statement returned (`fn` gives its cursor)."""
    return cur.fetchone() if isinstance(cur, psycopg.Cursor) else cur
