"""`PostgresStorage`: runs in PostgreSQL (psycopg 3), shared by processes on many hosts.

Each operation is one statement in autocommit mode, and so one transaction and one round
trip: a finished step updates the run row and upserts the step row in a single
`WITH ... UPDATE ... INSERT` statement that writes nothing unless the caller holds the lease.

Calls are made on the calling thread: a hop to a thread pool per call costs more than the
round trip itself on a local server. Concurrency comes from several engines (threads or
processes, as `flux worker --concurrency` runs them), each with its own connection.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from ..errors import LeaseLostError, StorageError
from ..records import Lease, RunRecord, StepRecord
from ..status import CLAIMABLE, EXECUTING, RunStatus
from ._rows import (
    RUN_COLUMNS,
    STEP_COLUMNS,
    STEP_WIDTH,
    run_from_values,
    run_values,
    started_steps,
    step_values,
)

try:
    import psycopg
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise ImportError("PostgresStorage needs psycopg: pip install 'gravito-flux[postgres]'") from exc

SCHEMA_VERSION = 1
T = TypeVar("T")

_SCHEMA = [
    "CREATE TABLE IF NOT EXISTS flux_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
    """CREATE TABLE IF NOT EXISTS flux_runs (
        id TEXT PRIMARY KEY, name TEXT NOT NULL, status TEXT NOT NULL, input TEXT NOT NULL,
        data TEXT NOT NULL, shape TEXT NOT NULL, version TEXT, error TEXT, error_type TEXT,
        error_step TEXT, waiting_for TEXT, created_at DOUBLE PRECISION NOT NULL,
        updated_at DOUBLE PRECISION NOT NULL, completed_at DOUBLE PRECISION, seq INTEGER NOT NULL,
        lease_owner TEXT, lease_host TEXT, lease_pid INTEGER, lease_expires_at DOUBLE PRECISION)""",
    "CREATE INDEX IF NOT EXISTS flux_runs_created ON flux_runs (created_at)",
    "CREATE INDEX IF NOT EXISTS flux_runs_status ON flux_runs (status, created_at)",
    "CREATE INDEX IF NOT EXISTS flux_runs_name ON flux_runs (name, created_at)",
    """CREATE TABLE IF NOT EXISTS flux_steps (
        run_id TEXT NOT NULL, idx INTEGER NOT NULL, name TEXT NOT NULL, kind TEXT NOT NULL,
        status TEXT NOT NULL, attempts INTEGER NOT NULL, started_at DOUBLE PRECISION,
        completed_at DOUBLE PRECISION, output TEXT, error TEXT, error_type TEXT, data_before TEXT,
        waiting_for TEXT, compensation_attempts INTEGER NOT NULL, compensated_at DOUBLE PRECISION,
        PRIMARY KEY (run_id, idx))""",
]

_STEP_TYPES = (
    "text[], int[], text[], text[], text[], int[], float8[], float8[], text[], text[], text[], "
    "text[], text[], int[], float8[]"
)
_STEP_SET = (
    "name=EXCLUDED.name, kind=EXCLUDED.kind, status=EXCLUDED.status, attempts=EXCLUDED.attempts, "
    "started_at=EXCLUDED.started_at, completed_at=EXCLUDED.completed_at, output=EXCLUDED.output, "
    "error=EXCLUDED.error, error_type=EXCLUDED.error_type, data_before=EXCLUDED.data_before, "
    "waiting_for=EXCLUDED.waiting_for, compensation_attempts=EXCLUDED.compensation_attempts, "
    "compensated_at=EXCLUDED.compensated_at"
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
    for i in indexes:
        for col, value in zip(cols, step_values(run_id, i, steps[i]), strict=True):
            col.append(value)
    return cols


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
            self._call_now(self._create_schema, "creating the schema")
        except StorageError:
            self._close_idle()
            raise

    # ------------------------------------------------------------------ plumbing

    def _connect(self) -> psycopg.Connection[Any]:
        with self._lock:
            if self._idle:
                return self._idle.pop()
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

    def _call_now(self, fn: Callable[[psycopg.Connection[Any]], T], what: str) -> T:
        try:
            conn = self._connect()
        except psycopg.Error as exc:
            raise StorageError(f"{self._where}: {what} failed: {exc}".rstrip()) from exc
        try:
            return fn(conn)
        except psycopg.Error as exc:
            conn.close()  # its state is unknown: never reuse it
            raise StorageError(f"{self._where}: {what} failed: {exc}".rstrip()) from exc
        finally:
            self._give_back(conn)

    async def _call(self, fn: Callable[[psycopg.Connection[Any]], T], what: str) -> T:
        if self._closed:
            raise StorageError(f"{self._where}: the storage is closed")
        return self._call_now(fn, what)

    def _create_schema(self, conn: psycopg.Connection[Any]) -> None:
        with conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(7283401)")  # one creator at a time
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
            if "flux_meta" in tables:
                row = conn.execute("SELECT value FROM flux_meta WHERE key='schema_version'").fetchone()
                version = int(row[0]) if row and str(row[0]).isdigit() else None
                if version is None:
                    raise StorageError(f"{self._where}: no Flux schema version; left untouched")
                if version > SCHEMA_VERSION:
                    raise StorageError(
                        f"{self._where}: Flux schema version {version} is newer than this Flux "
                        f"understands ({SCHEMA_VERSION}); upgrade gravito-flux. Left untouched"
                    )
                return
            for statement in _SCHEMA:
                conn.execute(statement)
            conn.execute("INSERT INTO flux_meta VALUES ('schema_version', %s)", (str(SCHEMA_VERSION),))

    # ------------------------------------------------------------------ protocol

    async def create_run(self, run: RunRecord) -> bool:
        params = run_values(run)
        # Step rows are written as the steps run; until then `load_run` fills them in from the shape.
        sql = (
            f"INSERT INTO flux_runs ({RUN_COLUMNS}) VALUES ({', '.join(['%s'] * 19)}) "
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
                row = conn.execute(f"SELECT {RUN_COLUMNS} FROM flux_runs WHERE id=%s", (run_id,)).fetchone()
                if row is None:
                    return None
                steps = conn.execute(
                    f"SELECT {STEP_COLUMNS} FROM flux_steps WHERE run_id=%s ORDER BY idx", (run_id,)
                ).fetchall()
            return run_from_values(row, steps)

        return await self._call(load, f"loading run '{run_id}'")

    async def save_run(self, run: RunRecord, steps: Sequence[int], owner: str | None) -> None:
        # A run that is no longer executing gives its lease up in the same statement.
        release = run.status not in EXECUTING
        update = (
            "UPDATE flux_runs SET status=%s, data=%s, shape=%s, version=%s, error=%s, error_type=%s, "
            "error_step=%s, waiting_for=%s, updated_at=%s, completed_at=%s, seq=%s"
            + (
                ", lease_owner=NULL, lease_host=NULL, lease_pid=NULL, lease_expires_at=NULL"
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
            run.error,
            run.error_type,
            run.error_step,
            run.waiting_for,
            run.updated_at,
            run.completed_at,
            run.seq,
            run.id,
        ]
        if owner is not None:
            params.append(owner)
        if len(steps) == 1 and self._known_len.get(run.id) == len(run.steps):
            # The common case, one finished step: a single-row upsert plans and runs fastest.
            i = steps[0]
            st = run.steps[i]
            sql = f"""
                WITH run AS ({update})
                INSERT INTO flux_steps ({STEP_COLUMNS})
                SELECT id, {", ".join(["%s"] * 14)} FROM run
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
                st.error,
                st.error_type,
                st.data_before,
                st.waiting_for,
                st.compensation_attempts,
                st.compensated_at,
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

        def save(conn: psycopg.Connection[Any]) -> None:
            row = conn.execute(sql, params).fetchone()
            if not row or row[0] != 1:
                raise LeaseLostError(
                    f"run '{run.id}' ({run.name}): not saved, the lease of {owner} was taken over"
                    if owner
                    else f"run '{run.id}' is not stored"
                )

        try:
            await self._call(save, f"saving run '{run.id}'")
        except BaseException:
            self._known_len.pop(run.id, None)
            raise
        if release or owner is None:  # only a run in hand is remembered
            self._known_len.pop(run.id, None)
        else:
            self._known_len[run.id] = len(run.steps)

    async def list_runs(
        self,
        *,
        name: str | None = None,
        status: Sequence[RunStatus] | None = None,
        limit: int = 50,
        offset: int = 0,
    ) -> list[RunRecord]:
        where: list[str] = []
        args: list[Any] = []
        if name is not None:
            where.append("name=%s")
            args.append(name)
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

        return await self._call(query, "listing runs")

    async def acquire_lease(self, run_id: str, lease: Lease, *, take_from: str | None = None) -> bool:
        def acquire(conn: psycopg.Connection[Any]) -> bool:
            cur = conn.execute(
                "UPDATE flux_runs SET lease_owner=%s, lease_host=%s, lease_pid=%s, lease_expires_at=%s "
                "WHERE id=%s AND (lease_owner IS NULL OR lease_owner=%s OR lease_owner=%s "
                "OR lease_expires_at < extract(epoch from clock_timestamp()))",
                (lease.owner, lease.host, lease.pid, lease.expires_at, run_id, lease.owner, take_from),
            )
            return cur.rowcount == 1

        return await self._call(acquire, f"claiming run '{run_id}'")

    async def claim_next(self, names: Sequence[str], lease: Lease) -> RunRecord | None:
        sql = f"""
            WITH waiting AS (
                SELECT id FROM flux_runs
                WHERE status = ANY(%s) AND name = ANY(%s)
                  AND (lease_owner IS NULL OR lease_expires_at < extract(epoch from clock_timestamp()))
                ORDER BY created_at LIMIT 1
                FOR UPDATE SKIP LOCKED
            )
            UPDATE flux_runs r SET lease_owner=%s, lease_host=%s, lease_pid=%s, lease_expires_at=%s
            FROM waiting WHERE r.id = waiting.id
            RETURNING {", ".join("r." + c.strip() for c in RUN_COLUMNS.split(","))}
        """
        params = (
            [s.value for s in CLAIMABLE],
            list(names),
            lease.owner,
            lease.host,
            lease.pid,
            lease.expires_at,
        )

        def claim(conn: psycopg.Connection[Any]) -> RunRecord | None:
            row = conn.execute(sql, params).fetchone()
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

    async def renew_lease(self, run_id: str, owner: str, expires_at: float) -> bool:
        def renew(conn: psycopg.Connection[Any]) -> bool:
            cur = conn.execute(
                "UPDATE flux_runs SET lease_expires_at=%s WHERE id=%s AND lease_owner=%s",
                (expires_at, run_id, owner),
            )
            return cur.rowcount == 1

        return await self._call(renew, f"renewing the lease of run '{run_id}'")

    async def release_lease(self, run_id: str, owner: str) -> None:
        def release(conn: psycopg.Connection[Any]) -> None:
            conn.execute(
                "UPDATE flux_runs SET lease_owner=NULL, lease_host=NULL, lease_pid=NULL, "
                "lease_expires_at=NULL WHERE id=%s AND lease_owner=%s",
                (run_id, owner),
            )

        await self._call(release, f"releasing run '{run_id}'")

    async def close(self) -> None:
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
        return {run_id: reason for run_id, reason in rows}

    def _close_heartbeat(self) -> None:
        with self._beat_lock:
            if self._beat_conn is not None:
                self._beat_conn.close()
                self._beat_conn = None


#: The cancel request comes back with each renewed lease. LEAD: once the `cancel_reason`
#: column exists (migration 2, h/storage), replace `NULL::text` by `cancel_reason` on the next line.
_HEARTBEAT_CANCEL = "NULL::text"
_HEARTBEAT = (
    "UPDATE flux_runs SET lease_expires_at=%s WHERE lease_owner=%s AND id = ANY(%s) "
    f"RETURNING id, {_HEARTBEAT_CANCEL}"
)
