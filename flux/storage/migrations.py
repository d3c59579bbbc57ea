"""The schema of the SQL storages, as one numbered list of migrations.

Version 1 is the schema of Flux 0.1.0. A storage opening a database reads the version
recorded in `flux_meta` (`schema_version`), applies the migrations after it in order, and
records the new version, all in one transaction under a lock (SQLite `BEGIN IMMEDIATE`,
PostgreSQL an advisory lock), so that processes opening a new or an old database at once
wait for each other and the second finds the work done. A database whose version is newer
than `LATEST` is refused before anything is written.

To change the schema, append a `Migration`; never edit one that has been released.
Statements are shared where the dialects agree (`common`) and given per dialect otherwise.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import StorageError

DIALECTS = ("sqlite", "postgres")


@dataclass(frozen=True)
class Migration:
    version: int
    description: str
    common: tuple[str, ...] = ()
    sqlite: tuple[str, ...] = ()
    postgres: tuple[str, ...] = ()

    def statements(self, dialect: str) -> tuple[str, ...]:
        """The statements that bring a database of `version - 1` to `version`, in order."""
        if dialect not in DIALECTS:
            raise ValueError(f"migration {self.version}: unknown SQL dialect {dialect!r}")
        own: tuple[str, ...] = getattr(self, dialect)
        return self.common + own


_SQLITE_1 = (
    "CREATE TABLE flux_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
    """CREATE TABLE flux_runs (
        id TEXT PRIMARY KEY, name TEXT NOT NULL, status TEXT NOT NULL, input TEXT NOT NULL,
        data TEXT NOT NULL, shape TEXT NOT NULL, version TEXT, error TEXT, error_type TEXT,
        error_step TEXT, waiting_for TEXT, created_at REAL NOT NULL, updated_at REAL NOT NULL,
        completed_at REAL, seq INTEGER NOT NULL, lease_owner TEXT, lease_host TEXT,
        lease_pid INTEGER, lease_expires_at REAL, rev INTEGER NOT NULL)""",
    "CREATE INDEX flux_runs_created ON flux_runs (created_at)",
    "CREATE INDEX flux_runs_status ON flux_runs (status, created_at)",
    "CREATE INDEX flux_runs_name ON flux_runs (name, created_at)",
    # A step saved on SQLite's fast path also carries the run's data as it stood after it
    # (run_data, run_seq, run_updated_at; the newest `rev` of run and steps wins).
    """CREATE TABLE flux_steps (
        run_id TEXT NOT NULL, idx INTEGER NOT NULL, name TEXT NOT NULL, kind TEXT NOT NULL,
        status TEXT NOT NULL, attempts INTEGER NOT NULL, started_at REAL, completed_at REAL,
        output TEXT, error TEXT, error_type TEXT, data_before TEXT, waiting_for TEXT,
        compensation_attempts INTEGER NOT NULL, compensated_at REAL, run_data TEXT,
        run_seq INTEGER, run_updated_at REAL, rev INTEGER NOT NULL,
        PRIMARY KEY (run_id, idx)) WITHOUT ROWID""",
)

_POSTGRES_1 = (
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
)

#: Schedules (SPEC §10); the types read the same in both dialects (SQLite's affinity rules).
#: `next_due` is indexed: a worker's one query per tick asks for the schedules due by now.
#: A run started by a schedule keeps `[schedule id, slot]` (JSON) for its `workflow:start`.
_V3_SCHEDULES = (
    """CREATE TABLE flux_schedules (
        id TEXT PRIMARY KEY, workflow TEXT NOT NULL, cron TEXT, every BIGINT, timezone TEXT NOT NULL,
        catch_up TEXT NOT NULL, input TEXT NOT NULL, next_due BIGINT NOT NULL, last_slot BIGINT,
        created_at DOUBLE PRECISION NOT NULL)""",
    "CREATE INDEX flux_schedules_due ON flux_schedules (next_due)",
    "ALTER TABLE flux_runs ADD COLUMN schedule TEXT",
)

#: Durable time (SPEC §10): a run's wake time and what happens then, its deadline, and when
#: a worker is to take it (`due_at`: the earlier of the two, set only while it is suspended),
#: indexed so that `claim_next` and `next_due` find due runs without a scan. DOUBLE PRECISION
#: is REAL to SQLite.
_V3_TIMERS = (
    "ALTER TABLE flux_runs ADD COLUMN wake_at DOUBLE PRECISION",
    "ALTER TABLE flux_runs ADD COLUMN timer TEXT",
    "ALTER TABLE flux_runs ADD COLUMN deadline DOUBLE PRECISION",
    "ALTER TABLE flux_runs ADD COLUMN due_at DOUBLE PRECISION",
    "CREATE INDEX flux_runs_due ON flux_runs (due_at) WHERE due_at IS NOT NULL",
)

#: Retention (`prune`): runs found by state and age (their last change), oldest first.
_V4_RETENTION = ("CREATE INDEX flux_runs_age ON flux_runs (status, updated_at)",)
#: Compact storage (SQLite): a step saved on the fast path carries the run's data after it
#: (`run_data`); once the next step's row carries a newer one, the older is never read
#: again, so a large one is dropped. Only while the data is large (the new row's is in the
#: compact form, or large itself): with small data the trigger costs nothing but its test.
_V4_SQLITE_RUN_DATA = (
    """CREATE TRIGGER flux_steps_drop_run_data AFTER INSERT ON flux_steps
    WHEN NEW.run_data IS NOT NULL AND NEW.idx > 0
        AND (substr(NEW.run_data, 1, 1) = '~' OR length(NEW.run_data) >= 2048) BEGIN
        UPDATE flux_steps SET run_data = NULL
        WHERE run_id = NEW.run_id AND idx = NEW.idx - 1 AND length(run_data) >= 2048;
    END""",
)

#: Branches (SPEC §11): a branch's or an item's changes to the data, a map's items, and the
#: parent of a child run (indexed: `list(parent_id=...)`, and cancelling a parent's children).
_V5_BRANCHES = (
    "ALTER TABLE flux_steps ADD COLUMN delta TEXT",
    "ALTER TABLE flux_steps ADD COLUMN items TEXT",
    "ALTER TABLE flux_runs ADD COLUMN parent_id TEXT",
    "CREATE INDEX flux_runs_parent ON flux_runs (parent_id) WHERE parent_id IS NOT NULL",
)

#: The dashboard (SPEC §12): PostgreSQL tells whoever LISTENs on `flux_runs` which run changed
#: (its id; '' for an id too long for a notification's payload), so that `flux dev --storage`
#: follows the storage without polling it. A lease renewal (a heartbeat: only
#: `lease_expires_at` moves) is not a change anyone shows, and costs no notification. And a
#: run found by the start of its id by an index whatever the database's collation
#: (`LIKE 'prefix%'` needs `text_pattern_ops` outside "C"). SQLite needs neither: the
#: dashboard watches its files, and its ids compare as code points.
_V6_POSTGRES_NOTIFY = (
    """CREATE OR REPLACE FUNCTION flux_runs_notify() RETURNS trigger LANGUAGE plpgsql AS $$
    DECLARE
        run_id TEXT := CASE WHEN TG_OP = 'DELETE' THEN OLD.id ELSE NEW.id END;
    BEGIN
        PERFORM pg_notify('flux_runs', CASE WHEN octet_length(run_id) < 7900 THEN run_id ELSE '' END);
        RETURN NULL;
    END $$""",
    """CREATE TRIGGER flux_runs_notify AFTER INSERT OR DELETE ON flux_runs
    FOR EACH ROW EXECUTE FUNCTION flux_runs_notify()""",
    """CREATE TRIGGER flux_runs_notify_update AFTER UPDATE ON flux_runs FOR EACH ROW
    WHEN (OLD.updated_at IS DISTINCT FROM NEW.updated_at OR OLD.status IS DISTINCT FROM NEW.status
        OR OLD.lease_owner IS DISTINCT FROM NEW.lease_owner
        OR OLD.cancel_reason IS DISTINCT FROM NEW.cancel_reason)
    EXECUTE FUNCTION flux_runs_notify()""",
    "CREATE INDEX flux_runs_id_prefix ON flux_runs (id text_pattern_ops)",
)

MIGRATIONS: tuple[Migration, ...] = (
    Migration(1, "the schema of Flux 0.1.0", sqlite=_SQLITE_1, postgres=_POSTGRES_1),
    Migration(
        2,
        "cancel requests, the holder's process identity, crash counts",
        # No index: the new columns are read and written by run id (the primary key), and
        # the heartbeat's `WHERE id IN (...) AND lease_owner = ?` also goes by run id.
        common=(
            "ALTER TABLE flux_runs ADD COLUMN cancel_reason TEXT",
            "ALTER TABLE flux_runs ADD COLUMN lease_identity TEXT",
            "ALTER TABLE flux_steps ADD COLUMN crashes INTEGER NOT NULL DEFAULT 0",
        ),
    ),
    Migration(
        3,
        "durable time: wake times, deadlines, due runs; schedules and the slot of a scheduled run",
        common=_V3_TIMERS + _V3_SCHEDULES,
    ),
    Migration(
        4,
        "retention: runs by state and age; compact storage of big data",
        common=_V4_RETENTION,
        sqlite=_V4_SQLITE_RUN_DATA,
    ),
    Migration(
        5, "branches: the data changes of branches and items, map items, child runs", common=_V5_BRANCHES
    ),
    Migration(
        6,
        "the dashboard: change notifications and id-prefix search on PostgreSQL",
        postgres=_V6_POSTGRES_NOTIFY,
    ),
)

#: The schema version this code writes and understands.
LATEST = MIGRATIONS[-1].version


def pending(current: int, where: str) -> tuple[Migration, ...]:
    """The migrations a database at version `current` (0: empty) needs, in order.

    Raises `StorageError` naming both versions if the database is newer than this code."""
    if current > LATEST:
        raise StorageError(
            f"{where} has Flux schema version {current}, newer than this Flux understands "
            f"({LATEST}); upgrade gravito-flux. Nothing was changed"
        )
    return tuple(m for m in MIGRATIONS if m.version > current)


def parse_version(value: object, where: str) -> int:
    """The version stored in `flux_meta`, or a `StorageError` if it is not a number."""
    text = str(value) if value is not None else ""
    if not text.isdigit():
        raise StorageError(f"{where} has no valid Flux schema version ({value!r}); left untouched")
    return int(text)
