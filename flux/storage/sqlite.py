"""`SQLiteStorage`: durable runs in one SQLite file (standard `sqlite3`, WAL mode).

Each finished step is one atomic write (the run row and the step row together). The saves of
the runs an engine executes at once share transactions (group commit, `_group.py`): a save
that comes alone is committed at once on the caller's thread; saves that arrive while a
commit is in flight are committed together by a writer thread, in one transaction, each in a
savepoint of its own when it is more than one statement, and each run goes on only once the
COMMIT of its own batch is done. With `durability="normal"` a commit is safe against the
death of the process, but the last transactions may be lost on power failure;
`durability="full"` fsyncs every commit.
Several processes can share one file: writers wait for each other (`BEGIN IMMEDIATE`
with a busy timeout, then a bounded retry), so "database is locked" does not escape.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import sqlite3
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

from ..errors import LeaseLostError, StorageError
from ..records import Lease, RunRecord, StepRecord
from ..schedules import ScheduleRecord
from ..status import CLAIMABLE, EXECUTING, RunStatus
from ._cancel import ACTIVE_SQL, SAVE_REASON_SQLITE
from ._children import (
    UNREAD_CHILD,
    awaited_child,
    cancel_children_params,
    cancel_children_sql,
    ends_child,
    ends_parent,
    wake_parent_params,
    wake_parent_sql,
    wake_self_params,
    wake_self_sql,
)
from ._compact import MARK, against, decode
from ._group import GroupCommit, Write
from ._prefix import prefix_successor, searchable
from ._rows import (
    RUN_COLUMNS,
    RUN_WIDTH,
    STEP_COLUMNS,
    STEP_WIDTH,
    run_from_values,
    run_values,
    started_steps,
    step_values,
)
from ._schedules import SCHEDULE_COLUMNS, SCHEDULE_WIDTH, schedule_from_values, schedule_values
from ._text import from_column, to_column
from .migrations import LATEST, parse_version, pending

SCHEMA_VERSION = LATEST
_LOCK_WAIT = 120.0  # seconds a writer keeps trying before giving up with StorageError
T = TypeVar("T")
#: What a statement raises when SQLite refuses it or its values (text that is not valid
#: UTF-8, an integer beyond 64 bits): all are a `StorageError` for the caller.
_REFUSED = (sqlite3.Error, UnicodeError, OverflowError)

# Each table has one column more than the shared ones: `rev`, and a finished step's row also
# carries the run's data as it stood after the step (see `_LOG_STEP`).
_RUN_COLUMNS = f"{RUN_COLUMNS}, rev"
_STEP_COLUMNS = f"{STEP_COLUMNS}, run_data, run_seq, run_updated_at, rev"
_STEP_MARKS = ", ".join("?" * (STEP_WIDTH + 4))
_INSERT_STEP = f"INSERT OR REPLACE INTO flux_steps ({_STEP_COLUMNS}) VALUES ({_STEP_MARKS})"
_UPDATE_RUN = (
    "UPDATE flux_runs SET data=?, error=?, error_type=?, error_step=?, waiting_for=?, updated_at=?, "
    "completed_at=?, seq=?, rev=?, status=?, shape=?, version=?, wake_at=?, timer=?, due_at=?, "
    f"{SAVE_REASON_SQLITE} WHERE id=?"
)
_UPDATE_RUN_RELEASE = (
    "UPDATE flux_runs SET data=?, error=?, error_type=?, error_step=?, waiting_for=?, updated_at=?, "
    "completed_at=?, seq=?, rev=?, status=?, shape=?, version=?, wake_at=?, timer=?, due_at=?, "
    "lease_owner=NULL, lease_host=NULL, lease_pid=NULL, lease_expires_at=NULL, lease_identity=NULL, "
    f"{SAVE_REASON_SQLITE} WHERE id=?"
)
#: A child's end wakes its parent, in the same transaction (`_children`).
_WAKE_PARENT = wake_parent_sql("?", "MIN")
_WAKE_SELF = wake_self_sql("?", "MIN")
_CANCEL_CHILDREN = cancel_children_sql("?")
#: Due runs, earliest first, through the partial index on `due_at` (migration 3).
# `INDEXED BY`: walking the due index in order stops at the first due run of these workflows;
# the planner would otherwise pick the name index and sort every run of the workflow.
_DUE = (
    "SELECT id FROM flux_runs INDEXED BY flux_runs_due WHERE due_at <= ? AND name IN ({marks}) "
    "AND (lease_owner IS NULL OR lease_expires_at < ?) ORDER BY due_at LIMIT 1"
)
_NEXT_DUE = (
    "SELECT due_at FROM flux_runs INDEXED BY flux_runs_due WHERE due_at IS NOT NULL AND name IN ({marks}) "
    "ORDER BY due_at LIMIT 1"
)
# The fast path of a finished step while the run's own state is unchanged: one statement,
# one B-tree. The step row carries the run's new data; `load_run` takes the newest `rev`.
_LOG_STEP = (
    f"INSERT OR REPLACE INTO flux_steps ({_STEP_COLUMNS}) SELECT {_STEP_MARKS} "
    "WHERE EXISTS (SELECT 1 FROM flux_runs WHERE id=? AND lease_owner=?)"
)


def _step_row(
    run_id: str, idx: int, steps: Sequence[StepRecord], run: RunRecord | None = None
) -> tuple[Any, ...]:
    s = steps[idx]
    # The data after the step, stored against the data before it (`_compact`).
    extra = (
        (against(run.data_json, s.data_before), run.seq, run.updated_at, run.rev)
        if run
        else (None, None, None, 0)
    )
    return (*step_values(run_id, idx, s, steps[idx - 1] if idx else None), *extra)


def _run_from_rows(row: Sequence[Any], step_rows: Sequence[Sequence[Any]]) -> RunRecord:
    """A run from its row and its step rows, with the data of the newest write of either."""
    run = run_from_values(row, step_rows)
    run.rev = row[RUN_WIDTH]
    newest = None
    for r in step_rows:
        if r[STEP_WIDTH + 3] > run.rev:
            newest = r
            run.data_json, run.seq, run.updated_at, run.rev = r[STEP_WIDTH : STEP_WIDTH + 4]
    if newest is not None and run.data_json.startswith(MARK):
        base = run.steps[newest[1]].data_before if newest[1] < len(run.steps) else None
        run.data_json = decode(run.data_json, base) or "{}"
    return run


def _state(run: RunRecord) -> tuple[Any, ...]:
    """What of a run, besides its data, a step's fast-path save leaves as it was."""
    # The engine replaces `shape` when the definition changes, so identity and length tell.
    return (run.status, run.version, run.error, run.error_type, run.error_step, run.waiting_for,
            run.completed_at, run.cancel_reason, run.wake_at, run.timer, id(run.shape),
            len(run.steps))  # fmt: skip


class SQLiteStorage:
    """Runs in a SQLite file, created with its schema on first use."""

    durable = True

    def __init__(
        self, path: str | os.PathLike[str], durability: str = "normal", *, create: bool = True
    ) -> None:
        if durability not in ("normal", "full"):
            raise StorageError(f"SQLiteStorage(durability={durability!r}): use 'normal' or 'full'")
        self.path = Path(path)
        self.durability = durability
        self._lock = threading.Lock()
        #: `_state` of each run whose lease this storage's engine holds, as it last wrote it.
        self._known: dict[str, tuple[Any, ...]] = {}
        self._conn = self._open(create)
        #: The saves of the runs in hand, one transaction per batch (see `_commit_batch`).
        self._group = GroupCommit(self._commit_batch, "sqlite-writer")
        self._beat_lock = threading.Lock()  # the heartbeat's own connection (`heartbeat_sync`)
        self._beat_conn: sqlite3.Connection | None = None
        self._beat_closed = False

    def _open(self, create: bool) -> sqlite3.Connection:
        where = f"SQLite database {str(self.path)!r}"
        exists = self.path.exists()
        if not exists and not create:
            raise StorageError(f"{where} does not exist")
        if exists:
            if self.path.is_dir():
                raise StorageError(f"{where} is a directory")
        else:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=30.0)
        except sqlite3.Error as exc:
            raise StorageError(f"{where} cannot be opened: {exc}") from exc
        if exists:
            # SQLite reads the header itself. The file is never opened here by Python: closing
            # any descriptor of it would drop every POSIX lock this process holds on it, those
            # of its other connections included (another process could then delete their WAL).
            try:
                conn.execute("PRAGMA schema_version").fetchone()
            except sqlite3.DatabaseError as exc:
                conn.close()
                if "not a database" in str(exc) or "malformed" in str(exc):
                    raise StorageError(f"{where} is not a SQLite database (left untouched)") from None
                raise StorageError(f"{where} cannot be opened: {exc}") from exc

        def prepare() -> None:
            self._version(conn, where)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute(f"PRAGMA synchronous={'FULL' if self.durability == 'full' else 'NORMAL'}")
            self._migrate(conn, where)

        try:
            # Several processes opening a new file at once wait for each other here.
            self._until_free("opening it (left untouched)", prepare)
        except StorageError:
            conn.close()
            raise
        return conn

    @staticmethod
    def _version(conn: sqlite3.Connection, where: str) -> int:
        """The file's schema version (0: empty). Refuses, before anything is written, a file
        that is not ours or is from the future."""
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        if not tables:
            return 0
        if "flux_meta" not in tables:
            raise StorageError(
                f"{where} is not a Flux database (tables: {', '.join(sorted(tables))}); left untouched"
            )
        row = conn.execute("SELECT value FROM flux_meta WHERE key='schema_version'").fetchone()
        version = parse_version(row[0] if row else None, where)
        pending(version, where)  # raises if it is newer than this code
        return version

    def _migrate(self, conn: sqlite3.Connection, where: str) -> None:
        """Apply the migrations the file lacks, in one transaction that holds the write lock."""
        conn.execute("BEGIN IMMEDIATE")
        try:
            # Read again under the lock: another process may have migrated it meanwhile.
            todo = pending(self._version(conn, where), where)
            for migration in todo:
                for statement in migration.statements("sqlite"):
                    conn.execute(statement)
            if todo:
                conn.execute(
                    "INSERT OR REPLACE INTO flux_meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),)
                )
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise

    # ------------------------------------------------------------------ helpers

    def _until_free(self, what: str, start: Callable[[], T]) -> T:
        """Call `start` (the statement that takes the write lock) until no other process
        holds the lock, with backoff, for up to `_LOCK_WAIT` seconds."""
        deadline = time.monotonic() + _LOCK_WAIT
        delay = 0.001
        while True:
            try:
                return start()
            except sqlite3.OperationalError as exc:
                busy = "locked" in str(exc) or "busy" in str(exc)
                if busy and time.monotonic() < deadline:
                    time.sleep(delay * (1 + random.random()))
                    delay = min(delay * 2, 0.1)
                    continue
                raise self._error(what, exc) from exc
            except _REFUSED as exc:
                raise self._error(what, exc) from exc

    def _write(self, what: str, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run `fn` in one IMMEDIATE transaction, waiting while another process writes."""
        with self._lock:
            conn = self._conn
            self._until_free(what, lambda: conn.execute("BEGIN IMMEDIATE"))
            try:
                result = fn(conn)
                conn.execute("COMMIT")
                return result
            except BaseException as exc:
                with contextlib.suppress(sqlite3.Error):
                    conn.execute("ROLLBACK")
                if isinstance(exc, _REFUSED):
                    raise self._error(what, exc) from exc
                raise

    def _commit_batch(self, batch: Sequence[Write]) -> None:
        """Write `batch` in one IMMEDIATE transaction, each write's outcome its own: a write of
        several statements runs in a savepoint, undone alone if it fails."""
        with self._lock:
            conn = self._conn
            if len(batch) == 1 and batch[0].single:  # alone: its own autocommit statement
                w = batch[0]
                w.result = self._until_free(w.what, lambda: w.fn(conn))
                return
            try:
                self._until_free("saving runs", lambda: conn.execute("BEGIN IMMEDIATE"))
            except StorageError as exc:
                for w in batch:
                    w.error = self._error(w.what, exc.__cause__ or exc)
                return
            done: list[Write] = []
            for w in batch:
                try:
                    if w.single:
                        w.result = w.fn(conn)
                    else:
                        conn.execute("SAVEPOINT flux_write")
                        try:
                            w.result = w.fn(conn)
                        except BaseException:
                            if conn.in_transaction:
                                conn.execute("ROLLBACK TO flux_write")
                                conn.execute("RELEASE flux_write")
                            raise
                        conn.execute("RELEASE flux_write")
                    done.append(w)
                except BaseException as exc:
                    w.error = self._error(w.what, exc) if isinstance(exc, _REFUSED) else exc
                    if not conn.in_transaction:  # SQLite gave the whole transaction up (disk full, I/O)
                        for other in batch:
                            if other.error is None:
                                other.error, other.result = self._error(other.what, exc), None
                        return
            try:
                conn.execute("COMMIT")
            except BaseException as exc:
                with contextlib.suppress(sqlite3.Error):
                    conn.execute("ROLLBACK")
                for w in done:
                    w.error, w.result = self._error(w.what, exc) if isinstance(exc, _REFUSED) else exc, None

    async def _submit(self, write: Write) -> Any:
        # A run alone is written at once on this thread; with others at hand, the writes go
        # to the writer thread and form batches while a commit is in flight.
        try:
            return await self._group.submit(write)
        except RuntimeError as exc:
            if str(exc) != "closed":
                raise
            raise StorageError(f"SQLite database {str(self.path)!r}: the storage is closed") from None

    def _read(self, what: str, fn: Callable[[sqlite3.Connection], T]) -> T:
        # WAL readers rarely wait, but may during another process's checkpoint or recovery.
        with self._lock:
            return self._until_free(what, lambda: fn(self._conn))

    def _error(self, what: str, exc: BaseException) -> StorageError:
        return StorageError(f"SQLite database {str(self.path)!r}: {what} failed: {exc}")

    # ------------------------------------------------------------------ protocol

    async def create_run(self, run: RunRecord) -> bool:
        params = (*run_values(run), run.rev)
        sql = f"INSERT OR IGNORE INTO flux_runs ({_RUN_COLUMNS}) VALUES ({', '.join('?' * (RUN_WIDTH + 1))})"
        started = started_steps(run)

        def insert(conn: sqlite3.Connection) -> bool:
            if conn.execute(sql, params).rowcount != 1:
                return False
            conn.executemany(_INSERT_STEP, [_step_row(run.id, i, run.steps) for i in started])
            return True

        what = f"creating run '{run.id}'"
        # Steps that never ran need no row, so a new run is usually one statement.
        if started:
            created = self._write(what, insert)
        else:
            created = await self._submit(
                Write(lambda c: c.execute(sql, params).rowcount == 1, what, single=True)
            )
        if created and run.lease is not None:
            self._known[run.id] = _state(run)
        return created

    async def load_run(self, run_id: str) -> RunRecord | None:
        return self._read(f"loading run '{run_id}'", lambda conn: _select_run(conn, run_id))

    async def save_run(self, run: RunRecord, steps: Sequence[int], owner: str | None) -> None:
        state = _state(run)
        # Only a lease holder is sure that nobody else changed the run since its last write.
        if owner is not None and len(steps) == 1 and self._known.get(run.id) == state:
            i = steps[0]
            row = _step_row(run.id, i, run.steps, run)
            args = (*row, run.id, owner)
            write = Write(
                lambda c: c.execute(_LOG_STEP, args).rowcount, f"saving run '{run.id}'", single=True
            )
            if await self._submit(write) != 1:
                self._known.pop(run.id, None)
                raise LeaseLostError(
                    f"run '{run.id}' ({run.name}): not saved, the lease of {owner} was taken over"
                )
            return
        known = self._known.get(run.id)
        shrunk = known is None or known[-1] > len(run.steps)
        # A run that is no longer executing gives its lease up in the same write.
        sql = _UPDATE_RUN if run.status in EXECUTING else _UPDATE_RUN_RELEASE
        params: tuple[Any, ...] = (
            run.data_json, to_column(run.error), to_column(run.error_type), to_column(run.error_step),
            to_column(run.waiting_for), run.updated_at, run.completed_at, run.seq, run.rev,
            run.status.value, json.dumps(run.shape), run.version, run.wake_at, to_column(run.timer),
            run.due_at(), to_column(run.cancel_reason), to_column(run.cancel_reason), run.id,
        )  # fmt: skip
        if owner is not None:
            sql += " AND lease_owner=?"
            params += (owner,)
        child_id = awaited_child(run)

        def save(conn: sqlite3.Connection) -> None:
            if conn.execute(sql, params).rowcount != 1:
                raise LeaseLostError(
                    f"run '{run.id}' ({run.name}): not saved, the lease of {owner} was taken over"
                    if owner
                    else f"run '{run.id}' is not stored"
                )
            if steps:
                conn.executemany(_INSERT_STEP, [_step_row(run.id, i, run.steps) for i in steps])
            if shrunk:
                conn.execute("DELETE FROM flux_steps WHERE run_id=? AND idx>=?", (run.id, len(run.steps)))
            if ends_child(run):
                conn.execute(_WAKE_PARENT, wake_parent_params(run))
            if child_id is not None:
                conn.execute(_WAKE_SELF, wake_self_params(run, child_id))
            if ends_parent(run):
                conn.execute(_CANCEL_CHILDREN, cancel_children_params(run))

        try:
            await self._submit(Write(save, f"saving run '{run.id}'"))
        except BaseException:
            self._known.pop(run.id, None)
            raise
        if owner is not None and run.status in EXECUTING:
            self._known[run.id] = state
        else:  # the lease is given up (or was never held): the next holder starts afresh
            self._known.pop(run.id, None)

    async def request_cancel(self, run_id: str, reason: str) -> RunRecord | None:
        def cancel(conn: sqlite3.Connection) -> RunRecord | None:
            conn.execute(
                f"UPDATE flux_runs SET cancel_reason=? WHERE id=? AND cancel_reason IS NULL AND {ACTIVE_SQL}",
                (to_column(reason), run_id),
            )
            return _select_run(conn, run_id)

        return self._write(f"requesting the cancellation of run '{run_id}'", cancel)

    async def list_runs(
        self,
        *,
        name: str | None = None,
        status: Sequence[RunStatus] | None = None,
        limit: int = 50,
        offset: int = 0,
        parent_id: str | None = None,
        id_prefix: str | None = None,
    ) -> list[RunRecord]:
        where, args = [], []
        if name is not None:
            where.append("name=?")
            args.append(name)
        if parent_id is not None:
            where.append("parent_id=?")
            args.append(parent_id)
        if id_prefix and not searchable(id_prefix):
            return []
        if id_prefix:
            # A range of the primary key: BINARY collation orders as code points do.
            where.append("id >= ?")
            args.append(id_prefix)
            upper = prefix_successor(id_prefix)
            if upper is not None:
                where.append("id < ?")
                args.append(upper)
        if status:
            where.append(f"status IN ({', '.join('?' * len(status))})")
            args.extend(s.value for s in status)
        sql = f"SELECT {_RUN_COLUMNS} FROM flux_runs"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY created_at DESC, id LIMIT ? OFFSET ?"

        def query(conn: sqlite3.Connection) -> list[RunRecord]:
            runs = []
            for row in conn.execute(sql, (*args, limit, offset)).fetchall():
                steps = conn.execute(
                    f"SELECT {_STEP_COLUMNS} FROM flux_steps WHERE run_id=? ORDER BY idx", (row[0],)
                ).fetchall()
                runs.append(_run_from_rows(row, steps))
            return runs

        return self._read("listing runs", query)

    async def acquire_lease(self, run_id: str, lease: Lease, *, take_from: str | None = None) -> bool:
        self._known.pop(run_id, None)

        def acquire(conn: sqlite3.Connection) -> bool:
            cur = conn.execute(
                "UPDATE flux_runs SET lease_owner=?, lease_host=?, lease_pid=?, lease_expires_at=?, "
                "lease_identity=? WHERE id=? AND (lease_owner IS NULL OR lease_owner=? OR lease_owner=? "
                "OR lease_expires_at<?)",
                (
                    lease.owner,
                    lease.host,
                    lease.pid,
                    lease.expires_at,
                    lease.identity or None,
                    run_id,
                    lease.owner,
                    take_from,
                    time.time(),
                ),
            )
            return cur.rowcount == 1

        return self._write(f"claiming run '{run_id}'", acquire)

    async def claim_next(
        self, names: Sequence[str], lease: Lease, *, now: float | None = None
    ) -> RunRecord | None:
        if not names:
            return None
        marks = ", ".join("?" * len(names))
        states = ", ".join("?" * len(CLAIMABLE))

        def claim(conn: sqlite3.Connection) -> RunRecord | None:
            real = time.time()
            row = conn.execute(
                _DUE.format(marks=marks), (real if now is None else now, *names, real)
            ).fetchone()
            if row is None:
                row = conn.execute(
                    f"SELECT id FROM flux_runs WHERE status IN ({states}) AND name IN ({marks}) "
                    "AND (lease_owner IS NULL OR lease_expires_at < ?) ORDER BY created_at LIMIT 1",
                    (*(s.value for s in CLAIMABLE), *names, real),
                ).fetchone()
            if row is None:
                return None
            conn.execute(
                "UPDATE flux_runs SET lease_owner=?, lease_host=?, lease_pid=?, lease_expires_at=?, "
                "lease_identity=? WHERE id=?",
                (lease.owner, lease.host, lease.pid, lease.expires_at, lease.identity or None, row[0]),
            )
            run = conn.execute(f"SELECT {_RUN_COLUMNS} FROM flux_runs WHERE id=?", (row[0],)).fetchone()
            steps = conn.execute(
                f"SELECT {_STEP_COLUMNS} FROM flux_steps WHERE run_id=? ORDER BY idx", (row[0],)
            ).fetchall()
            return _run_from_rows(run, steps)

        claimed = self._write("claiming a waiting run", claim)
        if claimed is not None:
            self._known[claimed.id] = _state(claimed)
        return claimed

    async def next_due(self, names: Sequence[str]) -> float | None:
        if not names:
            return None
        sql = _NEXT_DUE.format(marks=", ".join("?" * len(names)))

        def query(conn: sqlite3.Connection) -> float | None:
            row = conn.execute(sql, tuple(names)).fetchone()
            return None if row is None else float(row[0])

        return self._read("finding the next due run", query)

    async def renew_lease(self, run_id: str, owner: str, expires_at: float) -> bool:
        def renew(conn: sqlite3.Connection) -> bool:
            cur = conn.execute(
                "UPDATE flux_runs SET lease_expires_at=? WHERE id=? AND lease_owner=?",
                (expires_at, run_id, owner),
            )
            return cur.rowcount == 1

        return self._write(f"renewing the lease of run '{run_id}'", renew)

    async def release_lease(self, run_id: str, owner: str) -> None:
        def release(conn: sqlite3.Connection) -> None:
            conn.execute(
                "UPDATE flux_runs SET lease_owner=NULL, lease_host=NULL, lease_pid=NULL, "
                "lease_expires_at=NULL, lease_identity=NULL WHERE id=? AND lease_owner=?",
                (run_id, owner),
            )

        self._write(f"releasing run '{run_id}'", release)

    async def close(self) -> None:
        self._group.close()
        with self._lock:
            self._conn.close()
        self._close_heartbeat()

    def heartbeat_sync(self, owner: str, run_ids: Sequence[str], expires_at: float) -> dict[str, str | None]:
        held: dict[str, str | None] = {}
        # A beat waits out another writer's lock for at most a third of the lease time left,
        # so that it never makes the next beat late.
        wait = min(max((expires_at - time.time()) / 3, 0.05), _LOCK_WAIT)
        with self._beat_lock:
            if self._beat_closed:
                raise StorageError(f"SQLite database {str(self.path)!r}: the storage is closed")
            try:
                conn = self._beat_conn
                if conn is None:
                    conn = self._beat_conn = sqlite3.connect(
                        self.path, isolation_level=None, check_same_thread=False, timeout=wait
                    )
                    conn.execute(f"PRAGMA synchronous={'FULL' if self.durability == 'full' else 'NORMAL'}")
                conn.execute(f"PRAGMA busy_timeout={int(wait * 1000)}")
                for start in range(0, len(run_ids), 500):  # within SQLite's limit of parameters
                    chunk = run_ids[start : start + 500]
                    marks = ", ".join("?" * len(chunk))
                    if _HAS_RETURNING:
                        rows = conn.execute(_HEARTBEAT.format(marks=marks), (expires_at, owner, *chunk))
                        held.update(rows.fetchall())
                        continue
                    conn.execute("BEGIN IMMEDIATE")  # SQLite before 3.35: the same in two statements
                    try:
                        conn.execute(_HEARTBEAT_OLD.format(marks=marks), (expires_at, owner, *chunk))
                        held.update(conn.execute(_HEARTBEAT_HELD.format(marks=marks), (owner, *chunk)))
                        conn.execute("COMMIT")
                    except BaseException:
                        with contextlib.suppress(sqlite3.Error):
                            conn.execute("ROLLBACK")
                        raise
            except sqlite3.Error as exc:
                raise self._error(f"renewing the leases of {owner}", exc) from exc
        return {run_id: from_column(reason) for run_id, reason in held.items()}

    def _close_heartbeat(self) -> None:
        with self._beat_lock:
            self._beat_closed = True
            if self._beat_conn is not None:
                self._beat_conn.close()
                self._beat_conn = None

    # ------------------------------------------------------------------ schedules (SPEC §10)

    async def put_schedule(self, schedule: ScheduleRecord) -> ScheduleRecord | None:
        marks = ", ".join("?" * SCHEDULE_WIDTH)

        def put(conn: sqlite3.Connection) -> ScheduleRecord | None:
            sql = f"INSERT OR IGNORE INTO flux_schedules ({SCHEDULE_COLUMNS}) VALUES ({marks})"
            if conn.execute(sql, schedule_values(schedule)).rowcount == 1:
                return None
            row = conn.execute(
                f"SELECT {SCHEDULE_COLUMNS} FROM flux_schedules WHERE id=?", (schedule.id,)
            ).fetchone()
            return schedule_from_values(row)

        return self._write(f"storing schedule '{schedule.id}'", put)

    async def list_schedules(self) -> list[ScheduleRecord]:
        sql = f"SELECT {SCHEDULE_COLUMNS} FROM flux_schedules ORDER BY id"
        rows = self._read("listing schedules", lambda conn: conn.execute(sql).fetchall())
        return [schedule_from_values(r) for r in rows]

    async def delete_schedule(self, schedule_id: str) -> bool:
        sql = "DELETE FROM flux_schedules WHERE id=?"
        return (
            self._write(
                f"removing schedule '{schedule_id}'", lambda conn: conn.execute(sql, (schedule_id,)).rowcount
            )
            == 1
        )

    async def due_schedules(self, names: Sequence[str], now: float) -> list[ScheduleRecord]:
        if not names:
            return []
        sql = (
            f"SELECT {SCHEDULE_COLUMNS} FROM flux_schedules WHERE next_due <= ? "
            f"AND workflow IN ({', '.join('?' * len(names))}) ORDER BY next_due, id"
        )
        rows = self._read("finding due schedules", lambda conn: conn.execute(sql, (now, *names)).fetchall())
        return [schedule_from_values(r) for r in rows]

    async def next_schedule_due(self, names: Sequence[str]) -> int | None:
        if not names:
            return None
        sql = f"SELECT MIN(next_due) FROM flux_schedules WHERE workflow IN ({', '.join('?' * len(names))})"
        row = self._read(
            "finding the next schedule due", lambda conn: conn.execute(sql, tuple(names)).fetchone()
        )
        return None if row is None or row[0] is None else int(row[0])

    async def advance_schedule(
        self, schedule_id: str, expected: int, next_due: int, last_slot: int | None
    ) -> bool:
        sql = (
            "UPDATE flux_schedules SET next_due=?, last_slot=COALESCE(?, last_slot) WHERE id=? AND next_due=?"
        )
        params = (next_due, last_slot, schedule_id, expected)
        return (
            self._write(
                f"advancing schedule '{schedule_id}'", lambda conn: conn.execute(sql, params).rowcount
            )
            == 1
        )

    # ------------------------------------------------------------------ retention (h/lean)

    async def prune(self, before: float, statuses: Sequence[RunStatus], *, batch: int = 500) -> int:
        values = tuple(RunStatus(s).value for s in statuses)
        if not values:
            return 0
        size = max(1, min(int(batch), 500))  # within SQLite's limit of parameters
        pick = _PRUNE_PICK.format(marks=", ".join("?" * len(values)))

        def prune_batch(conn: sqlite3.Connection) -> int:
            ids = [r[0] for r in conn.execute(pick, (*values, before, size))]
            if ids:
                marks = ", ".join("?" * len(ids))
                conn.execute(f"DELETE FROM flux_steps WHERE run_id IN ({marks})", ids)
                conn.execute(f"DELETE FROM flux_runs WHERE id IN ({marks})", ids)
                for run_id in ids:
                    self._known.pop(run_id, None)
            return len(ids)

        removed = 0
        while True:  # one short transaction per batch: other writers get in between
            count = self._write("pruning runs", prune_batch)
            removed += count
            if count < size:
                return removed


#: Runs to prune, by the index on (status, updated_at) of migration 4.
_PRUNE_PICK = (
    "SELECT id FROM flux_runs INDEXED BY flux_runs_age WHERE status IN ({marks}) AND updated_at < ? "
    # a finished child whose parent has not read it yet is kept (its parent would start another)
    "AND " + UNREAD_CHILD + " LIMIT ?"
)
#: The cancel request (`request_cancel`) comes back with each renewed lease.
_HEARTBEAT_CANCEL = "cancel_reason"
_HEARTBEAT_OLD = "UPDATE flux_runs SET lease_expires_at=? WHERE lease_owner=? AND id IN ({marks})"
_HEARTBEAT = f"{_HEARTBEAT_OLD} RETURNING id, {_HEARTBEAT_CANCEL}"
_HEARTBEAT_HELD = f"SELECT id, {_HEARTBEAT_CANCEL} FROM flux_runs WHERE lease_owner=? AND id IN ({{marks}})"
#: Overridden by a test, to run the path of the older SQLite libraries that Python may link.
_HAS_RETURNING = sqlite3.sqlite_version_info >= (3, 35, 0)


def _select_run(conn: sqlite3.Connection, run_id: str) -> RunRecord | None:
    """The run with its steps, as one read (the caller's transaction, if any)."""
    row = conn.execute(f"SELECT {_RUN_COLUMNS} FROM flux_runs WHERE id=?", (run_id,)).fetchone()
    if row is None:
        return None
    steps = conn.execute(
        f"SELECT {_STEP_COLUMNS} FROM flux_steps WHERE run_id=? ORDER BY idx", (run_id,)
    ).fetchall()
    return _run_from_rows(row, steps)
