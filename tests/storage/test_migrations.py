"""Schema migrations: one numbered list for SQLite and PostgreSQL, applied on open under a
lock, the version recorded in the database, a newer database refused untouched."""

from __future__ import annotations

import asyncio
import hashlib
import shutil
import sqlite3
import subprocess
import sys
import threading
from contextlib import closing
from pathlib import Path

import pytest

from flux import SQLiteStorage, StorageError
from flux.storage.migrations import LATEST, MIGRATIONS

from ..services import postgres_url_or_skip
from .test_upgrade import FIXTURES, load_postgres_0_1_0, postgres_version, sqlite_version

NEW_COLUMNS = {("flux_runs", "cancel_reason"), ("flux_runs", "lease_identity"), ("flux_steps", "crashes")}


def test_migrations_are_numbered_from_one_with_sql_for_each_dialect() -> None:
    versions = [m.version for m in MIGRATIONS]
    # 5 is the branches' (SPEC §11), on another line of work; 6 the dashboard's (SPEC §12).
    assert versions[0] == 1 and versions == sorted(set(versions))
    assert set(range(1, 5)) <= set(versions)
    assert LATEST == MIGRATIONS[-1].version >= 2
    for m in MIGRATIONS:
        # 6 is PostgreSQL's alone: SQLite's dashboard watches the file instead.
        assert m.description and (m.statements("sqlite") or m.version == 6) and m.statements("postgres")
    with pytest.raises(ValueError, match="oracle"):
        MIGRATIONS[0].statements("oracle")


def sqlite_columns(path: Path) -> set[tuple[str, str]]:
    with closing(sqlite3.connect(path)) as conn, conn:
        cols = {
            (table, row[1])
            for table in ("flux_runs", "flux_steps")
            for row in conn.execute(f"PRAGMA table_info({table})")
        }
    conn.close()
    return cols


def test_a_new_sqlite_database_gets_every_migration(tmp_path: Path) -> None:
    path = tmp_path / "new.db"
    asyncio.run(SQLiteStorage(path).close())
    assert sqlite_version(path) == LATEST
    assert NEW_COLUMNS <= sqlite_columns(path)


def test_a_sqlite_crash_count_defaults_to_zero_in_old_rows(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    shutil.copy(FIXTURES / "flux-0.1.0.db", path)
    assert not NEW_COLUMNS & sqlite_columns(path)
    asyncio.run(SQLiteStorage(path).close())
    with closing(sqlite3.connect(path)) as conn, conn:
        assert conn.execute("SELECT DISTINCT crashes FROM flux_steps").fetchall() == [(0,)]
    conn.close()


def test_processes_opening_an_old_sqlite_database_at_once_all_succeed(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    shutil.copy(FIXTURES / "flux-0.1.0.db", path)
    code = (
        "import asyncio, sys\n"
        "from flux import SQLiteStorage\n"
        "async def main():\n"
        "    s = SQLiteStorage(sys.argv[1])\n"
        "    print(len(await s.list_runs()))\n"
        "    await s.close()\n"
        "asyncio.run(main())\n"
    )
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", code, str(path)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        for _ in range(6)
    ]
    for proc in procs:
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0 and out.strip() == "5", err
    assert sqlite_version(path) == LATEST
    assert NEW_COLUMNS <= sqlite_columns(path)


def test_a_sqlite_database_newer_than_the_code_is_refused_untouched(tmp_path: Path) -> None:
    path = tmp_path / "future.db"
    asyncio.run(SQLiteStorage(path).close())
    with closing(sqlite3.connect(path)) as conn, conn:
        conn.execute("UPDATE flux_meta SET value=? WHERE key='schema_version'", (str(LATEST + 7),))
    conn.close()
    before = hashlib.sha256(path.read_bytes()).hexdigest()
    with pytest.raises(StorageError) as err:
        SQLiteStorage(path)
    assert f"version {LATEST + 7}" in str(err.value) and f"({LATEST})" in str(err.value)
    assert hashlib.sha256(path.read_bytes()).hexdigest() == before


@pytest.mark.postgres
def test_threads_opening_an_old_postgres_schema_at_once_all_succeed(request: pytest.FixtureRequest) -> None:
    url = postgres_url_or_skip(request)
    load_postgres_0_1_0(url)
    from flux.storage.postgres import PostgresStorage

    start = threading.Barrier(6)
    errors: list[BaseException] = []
    counts: list[int] = []

    def open_it() -> None:
        start.wait()
        try:
            storage = PostgresStorage(url)
            counts.append(len(asyncio.run(storage.list_runs())))
            asyncio.run(storage.close())
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=open_it) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == [] and counts == [5] * 6
    assert postgres_version(url) == LATEST


@pytest.mark.postgres
def test_a_postgres_schema_newer_than_the_code_is_refused_untouched(request: pytest.FixtureRequest) -> None:
    import psycopg

    from flux.storage.postgres import PostgresStorage

    url = postgres_url_or_skip(request)
    load_postgres_0_1_0(url)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("UPDATE flux_meta SET value=%s WHERE key='schema_version'", (str(LATEST + 7),))
    with pytest.raises(StorageError) as err:
        PostgresStorage(url)
    assert f"version {LATEST + 7}" in str(err.value) and f"({LATEST})" in str(err.value)
    assert postgres_version(url) == LATEST + 7
    with psycopg.connect(url, autocommit=True) as conn:
        names = {
            r[0]
            for r in conn.execute(
                "SELECT column_name FROM information_schema.columns "
                "WHERE table_schema=current_schema() AND table_name IN ('flux_runs', 'flux_steps')"
            )
        }
    assert not {c for _, c in NEW_COLUMNS} & names
