"""`PostgresStorage`: runs in PostgreSQL (psycopg 3), shared by processes on many hosts.

Each operation is one statement in autocommit mode, and so one transaction and one round
trip: a finished step updates the run row and upserts the step row in a single
`WITH ... UPDATE ... INSERT` statement that writes nothing unless the caller holds the lease.

Calls are made on the calling thread: a hop to a thread pool per call costs more than the
round trip itself on a local server. Concurrency comes from several engines (threads or
processes, as `flux worker --concurrency` runs them), each with its own connection. The
saves of all the runs of one process on one database share commits (group commit,
`_pg_group.py`): a save that finds a free slot is written at once on its own thread; the
saves that arrive meanwhile go in one pipelined transaction, one WAL flush for all.
"""

from __future__ import annotations

import json
import select
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from ..errors import LeaseLostError, StorageError
from ..records import Lease, RunRecord, StepRecord
from ..schedules import ScheduleRecord
from ..status import CLAIMABLE, EXECUTING, RunStatus
from ._cancel import ACTIVE_SQL, SAVE_REASON_POSTGRES
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
from ._group import Write
from ._prefix import like_prefix, searchable
from ._rows import (
    RUN_COLUMNS,
    RUN_WIDTH,
    STEP_COLUMNS,
    STEP_WIDTH,
    run_from_values,
    run_values,
    started_steps,
    steps_values,
    stored_before,
)
from ._schedules import SCHEDULE_COLUMNS, SCHEDULE_WIDTH, schedule_from_values, schedule_values
from ._text import from_column, to_column
from .migrations import LATEST, parse_version, pending

try:
    import psycopg
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise ImportError("PostgresStorage needs psycopg: pip install 'gravito-flux[postgres]'") from exc

from ._pg_group import PgHub  # after the message above: it imports psycopg

SCHEMA_VERSION = LATEST
T = TypeVar("T")

_STEP_TYPES = (
    "text[], int[], text[], text[], text[], int[], float8[], float8[], text[], text[], text[], "
    "text[], text[], int[], float8[], int[], text[], text[]"
)
_STEP_SET = (
    "name=EXCLUDED.name, kind=EXCLUDED.kind, status=EXCLUDED.status, attempts=EXCLUDED.attempts, "
    "started_at=EXCLUDED.started_at, completed_at=EXCLUDED.completed_at, output=EXCLUDED.output, "
    "error=EXCLUDED.error, error_type=EXCLUDED.error_type, data_before=EXCLUDED.data_before, "
    "waiting_for=EXCLUDED.waiting_for, compensation_attempts=EXCLUDED.compensation_attempts, "
    "compensated_at=EXCLUDED.compensated_at, crashes=EXCLUDED.crashes, delta=EXCLUDED.delta, "
    "items=EXCLUDED.items"
)
_UNNEST = ", ".join("%s::" + t for t in _STEP_TYPES.split(", "))
_UPSERT_STEPS = f"""
    INSERT INTO flux_steps ({STEP_COLUMNS})
    SELECT u.* FROM run, unnest({_UNNEST}) AS u
    ON CONFLICT (run_id, idx) DO UPDATE SET {_STEP_SET}
"""


def _step_columns(run_id: str, indexes: Sequence[int], steps: Sequence[StepRecord]) -> list[list[Any]]:
    """The step rows as parallel arrays, for `unnest`."""
    cols: list[list[Any]] = [[] for _ in range(STEP_WIDTH)]
    for row in steps_values(run_id, indexes, steps):
        for col, value in zip(cols, row, strict=True):
            col.append(value)
    return cols


def _still_open(conn: psycopg.Connection[Any]) -> bool:
    """False if an idle connection is closed, or the server has written to it: an idle
    connection in autocommit mode is sent nothing unless the server is ending it (it writes
    its reason, then closes). No round trip: the socket is only polled."""
    if conn.closed or conn.broken:
        return False
    try:
        readable, _, _ = select.select([conn.fileno()], [], [], 0)
    except (OSError, ValueError, psycopg.Error):
        return False
    return not readable


def _redact(url: str) -> str:
    """The URL without its password, for error messages."""
    try:
        info = psycopg.conninfo.conninfo_to_dict(url)
    except psycopg.Error:
        return "<invalid PostgreSQL URL>"
    host, port = info.get("host", ""), info.get("port", "5432")
    return f"postgresql://{info.get('user', '')}@{host}:{port}/{info.get('dbname', '')}"


class PostgresStorage:
    """Runs in PostgreSQL; the schema is created on first use (safe with many processes)."""

    durable = True

    def __init__(self, url: str, *, durability: str = "full", connect_timeout: float = 10.0) -> None:
        if durability not in ("normal", "full"):
            raise StorageError(f"PostgresStorage(durability={durability!r}): use 'normal' or 'full'")
        self.url = url
        self.durability = durability
        self._where = f"PostgreSQL {_redact(url)}"
        self._connect_timeout = connect_timeout
        self._idle: list[psycopg.Connection[Any]] = []
        self._lock = threading.Lock()
        self._closed = False
        #: Step count of each run in hand as this storage last wrote it (absent: trim to be safe).
        self._known_len: dict[str, int] = {}
        self._beat_lock = threading.Lock()  # the heartbeat's own connection (`heartbeat_sync`)
        self._beat_conn: psycopg.Connection[Any] | None = None
        try:
            self._call_now(self._create_schema, "creating the schema", retry=True)
        except StorageError:
            self._close_idle()
            raise
        #: The saves of every storage of this process on this database, one commit per batch.
        self._hub = PgHub.acquire(url, durability, self._where, connect_timeout, lambda c: _still_open(c))
        self._group = self._hub.group

    # ------------------------------------------------------------------ plumbing

    def _connect(self) -> psycopg.Connection[Any]:
        while True:
            with self._lock:
                if not self._idle:
                    break
                idle = self._idle.pop()
            if _still_open(idle):
                return idle
            idle.close()  # the server ended it while it sat idle: take another
        conn = psycopg.connect(self.url, autocommit=True, connect_timeout=int(self._connect_timeout))
        if self.durability == "normal":
            # A commit is acknowledged before its WAL is flushed: safe when a worker dies,
            # may lose the last fraction of a second if the database server itself crashes.
            conn.execute("SET synchronous_commit = off")
        return conn

    def _give_back(self, conn: psycopg.Connection[Any]) -> None:
        if conn.closed or conn.broken or self._closed:
            conn.close()
            return
        with self._lock:
            self._idle.append(conn)

    def _call_now(self, fn: Callable[[psycopg.Connection[Any]], T], what: str, *, retry: bool = False) -> T:
        """Run `fn` on a connection. With `retry` (reads, and writes that are the same when
        repeated), a connection found broken by the call is replaced and `fn` runs once more."""
        for attempt in (1, 2):
            try:
                conn = self._connect()
            except psycopg.Error as exc:
                raise StorageError(f"{self._where}: {what} failed: {exc}".rstrip()) from exc
            try:
                return fn(conn)
            except (psycopg.Error, UnicodeError) as exc:  # UnicodeError: text UTF-8 cannot encode
                lost = isinstance(exc, psycopg.OperationalError) and conn.broken
                conn.close()  # its state is unknown: never reuse it
                if retry and lost and attempt == 1:
                    continue
                raise StorageError(f"{self._where}: {what} failed: {exc}".rstrip()) from exc
            finally:
                self._give_back(conn)
        raise AssertionError("unreachable")  # pragma: no cover

    async def _call(self, fn: Callable[[psycopg.Connection[Any]], T], what: str, *, retry: bool = False) -> T:
        if self._closed:
            raise StorageError(f"{self._where}: the storage is closed")
        return self._call_now(fn, what, retry=retry)

    def _create_schema(self, conn: psycopg.Connection[Any]) -> None:
        """Apply the migrations the schema lacks, in one transaction, one process at a time."""
        with conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(7283401)")  # one migrator at a time
            tables = {
                r[0]
                for r in conn.execute(
                    "SELECT table_name FROM information_schema.tables "
                    "WHERE table_schema = current_schema() AND table_name LIKE 'flux%%'"
                )
            }
            if tables and "flux_meta" not in tables:
                raise StorageError(
                    f"{self._where}: tables {sorted(tables)} exist without flux_meta: "
                    "not a Flux schema; left untouched"
                )
            version = 0
            if "flux_meta" in tables:
                row = conn.execute("SELECT value FROM flux_meta WHERE key='schema_version'").fetchone()
                version = parse_version(row[0] if row else None, self._where)
            todo = pending(version, self._where)
            for migration in todo:
                for statement in migration.statements("postgres"):
                    conn.execute(statement)
            if todo:
                conn.execute(
                    "INSERT INTO flux_meta VALUES ('schema_version', %s) "
                    "ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value",
                    (str(SCHEMA_VERSION),),
                )

    # ------------------------------------------------------------------ protocol

    async def create_run(self, run: RunRecord) -> bool:
        params = run_values(run)
        # Step rows are written as the steps run; until then `load_run` fills them in from the shape.
        sql = (
            f"INSERT INTO flux_runs ({RUN_COLUMNS}) VALUES ({', '.join(['%s'] * RUN_WIDTH)}) "
            "ON CONFLICT (id) DO NOTHING"
        )

        started = started_steps(run)
        steps_sql = _UPSERT_STEPS.replace("FROM run, unnest", "FROM unnest")

        def insert(conn: psycopg.Connection[Any]) -> bool:
            if not started:  # the usual case: one statement, one round trip
                created = conn.execute(sql, params).rowcount == 1
            else:
                with conn.transaction():
                    created = conn.execute(sql, params).rowcount == 1
                    if created:
                        conn.execute(steps_sql, _step_columns(run.id, started, run.steps))
            if created and run.lease is not None:
                self._known_len[run.id] = len(run.steps)
            return created

        return await self._call(insert, f"creating run '{run.id}'")

    async def load_run(self, run_id: str) -> RunRecord | None:
        def load(conn: psycopg.Connection[Any]) -> RunRecord | None:
            with conn.transaction():  # one snapshot for the run and its steps
                return _select_run(conn, run_id)

        return await self._call(load, f"loading run '{run_id}'", retry=True)

    async def save_run(self, run: RunRecord, steps: Sequence[int], owner: str | None) -> None:
        # A run that is no longer executing gives its lease up in the same statement.
        release = run.status not in EXECUTING
        update = (
            "UPDATE flux_runs SET status=%s, data=%s, shape=%s, version=%s, error=%s, error_type=%s, "
            "error_step=%s, waiting_for=%s, updated_at=%s, completed_at=%s, seq=%s, wake_at=%s, timer=%s, "
            f"due_at=%s, {SAVE_REASON_POSTGRES}"
            + (
                ", lease_owner=NULL, lease_host=NULL, lease_pid=NULL, lease_expires_at=NULL, "
                "lease_identity=NULL"
                if release
                else ""
            )
            + " WHERE id=%s"
            + (" AND lease_owner=%s" if owner is not None else "")
            + " RETURNING id"
        )
        params: list[Any] = [
            run.status.value,
            run.data_json,
            json.dumps(run.shape),
            run.version,
            to_column(run.error),
            to_column(run.error_type),
            to_column(run.error_step),
            to_column(run.waiting_for),
            run.updated_at,
            run.completed_at,
            run.seq,
            run.wake_at,
            to_column(run.timer),
            run.due_at(),
            to_column(run.cancel_reason),
            to_column(run.cancel_reason),
            run.id,
        ]
        if owner is not None:
            params.append(owner)
        if len(steps) == 1 and self._known_len.get(run.id) == len(run.steps):
            # The common case, one finished step: a single-row upsert plans and runs fastest.
            i = steps[0]
            st = run.steps[i]
            before = stored_before(st, run.steps[i - 1] if i else None)
            sql = f"""
                WITH run AS ({update})
                INSERT INTO flux_steps ({STEP_COLUMNS})
                SELECT id, {", ".join(["%s"] * (STEP_WIDTH - 1))} FROM run
                ON CONFLICT (run_id, idx) DO UPDATE SET {_STEP_SET}
                RETURNING (SELECT count(*) FROM run)
            """
            params += [
                i,
                st.name,
                st.kind,
                st.status.value,
                st.attempts,
                st.started_at,
                st.completed_at,
                st.output_json,
                to_column(st.error),
                to_column(st.error_type),
                before,
                to_column(st.waiting_for),
                st.compensation_attempts,
                st.compensated_at,
                st.crashes,
                st.delta_json,
                st.items_json,
            ]
        else:
            # Several steps, or a definition that may have changed length: trim and upsert.
            sql = f"""
                WITH run AS ({update}),
                trimmed AS (DELETE FROM flux_steps WHERE run_id IN (SELECT id FROM run) AND idx >= %s),
                steps AS ({_UPSERT_STEPS} RETURNING 1)
                SELECT count(*) FROM run
            """
            params.append(len(run.steps))
            params.extend(_step_columns(run.id, steps, run.steps))

        what = f"saving run '{run.id}'"
        linked = ends_child(run) or awaited_child(run) is not None or ends_parent(run)
        try:
            if self._closed:
                raise StorageError(f"{self._where}: the storage is closed")
            if linked:  # once per child run: its own transaction, outside the group commit
                row = await self._call(lambda conn: self._save_linked(conn, run, sql, params), what)
            else:
                row = await self._group.submit(self._write(sql, params, what))
            if not row or row[0] != 1:
                raise LeaseLostError(
                    f"run '{run.id}' ({run.name}): not saved, the lease of {owner} was taken over"
                    if owner
                    else f"run '{run.id}' is not stored"
                )
        except BaseException:
            self._known_len.pop(run.id, None)
            raise
        if release or owner is None:  # only a run in hand is remembered
            self._known_len.pop(run.id, None)
        else:
            self._known_len[run.id] = len(run.steps)

    def _write(self, sql: str, params: list[Any], what: str) -> Write:
        return Write(
            lambda conn: conn.execute(sql, params),
            what,
            single=True,
            alone=lambda: self._call_now(lambda conn: conn.execute(sql, params).fetchone(), what),
        )

    @staticmethod
    def _save_linked(conn: psycopg.Connection[Any], run: RunRecord, sql: str, params: list[Any]) -> Any:
        """The save of a child that ends, of a parent that suspends on its child or that
        ends, with what it does to the other (`_children`). Both lock the parent's row first, so that of two
        such writes at once the second sees the first: no parent is left asleep."""
        with conn.transaction():
            if ends_child(run):
                conn.execute("SELECT 1 FROM flux_runs WHERE id=%s FOR UPDATE", (run.parent_id,))
            row = conn.execute(sql, params).fetchone()
            if row and row[0] == 1:
                if ends_child(run):
                    conn.execute(_WAKE_PARENT, wake_parent_params(run))
                child_id = awaited_child(run)
                if child_id is not None:
                    conn.execute(_WAKE_SELF, wake_self_params(run, child_id))
                if ends_parent(run):  # the parent's row first, then its children's: one order
                    conn.execute(_CANCEL_CHILDREN, cancel_children_params(run))
            return row

    async def request_cancel(self, run_id: str, reason: str) -> RunRecord | None:
        def cancel(conn: psycopg.Connection[Any]) -> RunRecord | None:
            with conn.transaction():
                conn.execute(
                    "UPDATE flux_runs SET cancel_reason=%s "
                    f"WHERE id=%s AND cancel_reason IS NULL AND {ACTIVE_SQL}",
                    (to_column(reason), run_id),
                )
                return _select_run(conn, run_id)

        return await self._call(cancel, f"requesting the cancellation of run '{run_id}'", retry=True)

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
        where: list[str] = []
        args: list[Any] = []
        if name is not None:
            where.append("name=%s")
            args.append(name)
        if parent_id is not None:
            where.append("parent_id=%s")
            args.append(parent_id)
        if id_prefix and not searchable(id_prefix):
            return []
        if id_prefix:
            # Left-anchored: the `text_pattern_ops` index of migration 6 serves it.
            where.append("id LIKE %s ESCAPE '\\'")
            args.append(like_prefix(id_prefix))
        if status:
            where.append("status = ANY(%s)")
            args.append([s.value for s in status])
        sql = f"SELECT {RUN_COLUMNS} FROM flux_runs"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY created_at DESC, id LIMIT %s OFFSET %s"

        def query(conn: psycopg.Connection[Any]) -> list[RunRecord]:
            with conn.transaction():
                rows = conn.execute(sql, (*args, limit, offset)).fetchall()
                ids = [r[0] for r in rows]
                by_run: dict[str, list[Any]] = {i: [] for i in ids}
                for r in conn.execute(
                    f"SELECT {STEP_COLUMNS} FROM flux_steps WHERE run_id = ANY(%s) ORDER BY run_id, idx",
                    (ids,),
                ):
                    by_run[r[0]].append(r)
            return [run_from_values(r, by_run[r[0]]) for r in rows]

        return await self._call(query, "listing runs", retry=True)

    async def acquire_lease(self, run_id: str, lease: Lease, *, take_from: str | None = None) -> bool:
        def acquire(conn: psycopg.Connection[Any]) -> bool:
            cur = conn.execute(
                "UPDATE flux_runs SET lease_owner=%s, lease_host=%s, lease_pid=%s, lease_expires_at=%s, "
                "lease_identity=%s WHERE id=%s AND (lease_owner IS NULL OR lease_owner=%s OR lease_owner=%s "
                "OR lease_expires_at < extract(epoch from clock_timestamp()))",
                (
                    lease.owner,
                    lease.host,
                    lease.pid,
                    lease.expires_at,
                    lease.identity or None,
                    run_id,
                    lease.owner,
                    take_from,
                ),
            )
            return cur.rowcount == 1

        return await self._call(acquire, f"claiming run '{run_id}'", retry=True)

    async def claim_next(
        self, names: Sequence[str], lease: Lease, *, now: float | None = None
    ) -> RunRecord | None:
        give = (lease.owner, lease.host, lease.pid, lease.expires_at, lease.identity or None)
        due_params = (now if now is not None else time.time(), list(names), *give)
        params = ([s.value for s in CLAIMABLE], list(names), *give)

        def claim(conn: psycopg.Connection[Any]) -> RunRecord | None:
            # a due run first (through the partial index on due_at), then a waiting one
            with conn.transaction():
                conn.execute(_BY_DUE_INDEX)
                row = conn.execute(_CLAIM_DUE, due_params).fetchone()
            if row is None:
                row = conn.execute(_CLAIM, params).fetchone()
            if row is None:
                return None
            # The lease is ours now: nobody else writes this run's steps.
            steps = conn.execute(
                f"SELECT {STEP_COLUMNS} FROM flux_steps WHERE run_id=%s ORDER BY idx", (row[0],)
            ).fetchall()
            return run_from_values(row, steps)

        claimed = await self._call(claim, "claiming a waiting run")
        if claimed is not None:
            self._known_len[claimed.id] = len(claimed.steps)
        return claimed

    async def next_due(self, names: Sequence[str]) -> float | None:
        def query(conn: psycopg.Connection[Any]) -> float | None:
            with conn.transaction():
                conn.execute(_BY_DUE_INDEX)
                row = conn.execute(_NEXT_DUE, (list(names),)).fetchone()
            return None if row is None else float(row[0])

        return await self._call(query, "finding the next due run", retry=True)

    async def renew_lease(self, run_id: str, owner: str, expires_at: float) -> bool:
        def renew(conn: psycopg.Connection[Any]) -> bool:
            cur = conn.execute(
                "UPDATE flux_runs SET lease_expires_at=%s WHERE id=%s AND lease_owner=%s",
                (expires_at, run_id, owner),
            )
            return cur.rowcount == 1

        return await self._call(renew, f"renewing the lease of run '{run_id}'", retry=True)

    async def release_lease(self, run_id: str, owner: str) -> None:
        def release(conn: psycopg.Connection[Any]) -> None:
            conn.execute(
                "UPDATE flux_runs SET lease_owner=NULL, lease_host=NULL, lease_pid=NULL, "
                "lease_expires_at=NULL, lease_identity=NULL WHERE id=%s AND lease_owner=%s",
                (run_id, owner),
            )

        await self._call(release, f"releasing run '{run_id}'", retry=True)

    async def close(self) -> None:
        if not self._closed:
            self._hub.release()
        self._closed = True
        self._close_idle()
        self._close_heartbeat()

    def _close_idle(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()

    def heartbeat_sync(self, owner: str, run_ids: Sequence[str], expires_at: float) -> dict[str, str | None]:
        with self._beat_lock:
            if self._closed:
                raise StorageError(f"{self._where}: the storage is closed")
            try:
                conn = self._beat_conn
                if conn is None or conn.closed or conn.broken:
                    conn = self._beat_conn = psycopg.connect(
                        self.url, autocommit=True, connect_timeout=int(self._connect_timeout)
                    )
                    # A beat waits for a row lock at most a third of the lease time left, so
                    # that it never makes the next beat late.
                    wait = max((expires_at - time.time()) / 3, 0.05)
                    conn.execute("SELECT set_config('lock_timeout', %s, false)", (f"{int(wait * 1000)}ms",))
                rows = conn.execute(_HEARTBEAT, (expires_at, owner, list(run_ids))).fetchall()
            except psycopg.Error as exc:
                if self._beat_conn is not None and (self._beat_conn.broken or self._beat_conn.closed):
                    self._beat_conn = None  # reconnect at the next beat
                raise StorageError(f"{self._where}: renewing the leases of {owner} failed: {exc}") from exc
        return {run_id: from_column(reason) for run_id, reason in rows}

    def _close_heartbeat(self) -> None:
        with self._beat_lock:
            if self._beat_conn is not None:
                self._beat_conn.close()
                self._beat_conn = None

    # ------------------------------------------------------------------ schedules (SPEC §10)

    async def put_schedule(self, schedule: ScheduleRecord) -> ScheduleRecord | None:
        insert = (
            f"INSERT INTO flux_schedules ({SCHEDULE_COLUMNS}) VALUES ({', '.join(['%s'] * SCHEDULE_WIDTH)}) "
            "ON CONFLICT (id) DO NOTHING RETURNING id"
        )
        select = f"SELECT {SCHEDULE_COLUMNS} FROM flux_schedules WHERE id=%s"

        def put(conn: psycopg.Connection[Any]) -> ScheduleRecord | None:
            while True:
                if conn.execute(insert, schedule_values(schedule)).fetchone() is not None:
                    return None
                # A statement of its own, so that it sees the row that won the conflict.
                row = conn.execute(select, (schedule.id,)).fetchone()
                if row is not None:
                    return schedule_from_values(row)

        return await self._call(put, f"storing schedule '{schedule.id}'")

    async def list_schedules(self) -> list[ScheduleRecord]:
        sql = f"SELECT {SCHEDULE_COLUMNS} FROM flux_schedules ORDER BY id"
        rows = await self._call(lambda conn: conn.execute(sql).fetchall(), "listing schedules", retry=True)
        return [schedule_from_values(r) for r in rows]

    async def delete_schedule(self, schedule_id: str) -> bool:
        sql = "DELETE FROM flux_schedules WHERE id=%s"
        what = f"removing schedule '{schedule_id}'"
        return bool(await self._call(lambda conn: conn.execute(sql, (schedule_id,)).rowcount == 1, what))

    async def due_schedules(self, names: Sequence[str], now: float) -> list[ScheduleRecord]:
        sql = (
            f"SELECT {SCHEDULE_COLUMNS} FROM flux_schedules WHERE next_due <= %s AND workflow = ANY(%s) "
            "ORDER BY next_due, id"
        )
        rows = await self._call(
            lambda conn: conn.execute(sql, (now, list(names))).fetchall(), "finding due schedules", retry=True
        )
        return [schedule_from_values(r) for r in rows]

    async def next_schedule_due(self, names: Sequence[str]) -> int | None:
        sql = "SELECT MIN(next_due) FROM flux_schedules WHERE workflow = ANY(%s)"
        row = await self._call(
            lambda conn: conn.execute(sql, (list(names),)).fetchone(),
            "finding the next schedule due",
            retry=True,
        )
        return None if row is None or row[0] is None else int(row[0])

    async def advance_schedule(
        self, schedule_id: str, expected: int, next_due: int, last_slot: int | None
    ) -> bool:
        sql = (
            "UPDATE flux_schedules SET next_due=%s, last_slot=COALESCE(%s, last_slot) "
            "WHERE id=%s AND next_due=%s"
        )
        params = (next_due, last_slot, schedule_id, expected)
        what = f"advancing schedule '{schedule_id}'"
        return bool(await self._call(lambda conn: conn.execute(sql, params).rowcount == 1, what))

    # ------------------------------------------------------------------ retention (h/lean)

    async def prune(self, before: float, statuses: Sequence[RunStatus], *, batch: int = 500) -> int:
        values = [RunStatus(s).value for s in statuses]
        if not values:
            return 0
        size = max(1, int(batch))

        def prune_batch(conn: psycopg.Connection[Any]) -> int:
            cur = conn.execute(_PRUNE, (values, before, size))
            return cur.rowcount

        removed = 0
        while True:  # one statement, one short transaction, per batch
            count = await self._call(prune_batch, "pruning runs", retry=True)
            removed += count
            if count < size:
                return removed


#: One batch of `prune`: the runs by the index on (status, updated_at) of migration 4, locked
#: (a run another transaction holds is skipped: it is being changed), with their steps.
_PRUNE = f"""
    WITH doomed AS (
        SELECT id FROM flux_runs WHERE status = ANY(%s) AND updated_at < %s AND {UNREAD_CHILD}
        LIMIT %s FOR UPDATE SKIP LOCKED
    ), steps AS (DELETE FROM flux_steps WHERE run_id IN (SELECT id FROM doomed))
    DELETE FROM flux_runs WHERE id IN (SELECT id FROM doomed)
"""
#: The cancel request (`request_cancel`) comes back with each renewed lease.
_HEARTBEAT_CANCEL = "cancel_reason"
_HEARTBEAT = (
    "UPDATE flux_runs SET lease_expires_at=%s WHERE lease_owner=%s AND id = ANY(%s) "
    f"RETURNING id, {_HEARTBEAT_CANCEL}"
)


#: A child's end wakes its parent, in the same transaction (`_children`).
_WAKE_PARENT = wake_parent_sql("%s", "LEAST")
_WAKE_SELF = wake_self_sql("%s", "LEAST")
_CANCEL_CHILDREN = cancel_children_sql("%s")
_GIVE = """
    UPDATE flux_runs r SET lease_owner=%s, lease_host=%s, lease_pid=%s, lease_expires_at=%s,
        lease_identity=%s
    FROM waiting WHERE r.id = waiting.id
    RETURNING """ + ", ".join("r." + c.strip() for c in RUN_COLUMNS.split(","))
_FREE = "(lease_owner IS NULL OR lease_expires_at < extract(epoch from clock_timestamp()))"
# The due runs are read through the partial index on due_at, whatever the statistics say:
# `(...) IS TRUE` keeps the name index out of it (it would sort every run of the workflow),
# and their transaction turns off the scans that would read the whole table (a table not yet
# analysed, or one whose statistics predate a burst of due runs, would get a sequential scan).
_NEXT_DUE = (
    "SELECT due_at FROM flux_runs WHERE due_at IS NOT NULL AND (name = ANY(%s)) IS TRUE "
    "ORDER BY due_at LIMIT 1"
)
_BY_DUE_INDEX = (
    "SELECT set_config('enable_seqscan', 'off', true), set_config('enable_bitmapscan', 'off', true)"
)
_CLAIM_DUE = f"""
    WITH waiting AS (
        SELECT id FROM flux_runs WHERE due_at <= %s AND (name = ANY(%s)) IS TRUE AND {_FREE}
        ORDER BY due_at LIMIT 1 FOR UPDATE SKIP LOCKED
    ) {_GIVE}"""
_CLAIM = f"""
    WITH waiting AS (
        SELECT id FROM flux_runs WHERE status = ANY(%s) AND name = ANY(%s) AND {_FREE}
        ORDER BY created_at LIMIT 1 FOR UPDATE SKIP LOCKED
    ) {_GIVE}"""


def _select_run(conn: psycopg.Connection[Any], run_id: str) -> RunRecord | None:
    """The run with its steps, read in the caller's transaction."""
    row = conn.execute(f"SELECT {RUN_COLUMNS} FROM flux_runs WHERE id=%s", (run_id,)).fetchone()
    if row is None:
        return None
    steps = conn.execute(
        f"SELECT {STEP_COLUMNS} FROM flux_steps WHERE run_id=%s ORDER BY idx", (run_id,)
    ).fetchall()
    return run_from_values(row, steps)
