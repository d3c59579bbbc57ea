"""What only the SQLite backend has: its file, its schema version, its durability modes."""

from __future__ import annotations

import asyncio
import hashlib
import sqlite3
from contextlib import closing
from pathlib import Path

import pytest

from flux import FluxEngine, SQLiteStorage, StorageError, create_workflow, open_storage
from flux.storage.sqlite import SCHEMA_VERSION


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_a_file_that_is_not_sqlite_is_refused_and_untouched(tmp_path: Path) -> None:
    path = tmp_path / "corrupt.db"
    path.write_bytes(b"this is not a database at all" * 100)
    before = digest(path)
    with pytest.raises(StorageError, match=r"corrupt\.db") as err:
        SQLiteStorage(path)
    assert "not a SQLite database" in str(err.value)
    assert digest(path) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["corrupt.db"]


def test_a_damaged_database_page_is_a_storage_error(tmp_path: Path) -> None:
    path = tmp_path / "damaged.db"
    storage = SQLiteStorage(path)
    asyncio.run(storage.close())
    raw = bytearray(path.read_bytes())
    raw[100:4096] = b"\xff" * (4096 - 100)  # smash the schema page after the header
    path.write_bytes(bytes(raw))
    before = digest(path)
    with pytest.raises(StorageError, match=r"damaged\.db"):
        SQLiteStorage(path)
    assert digest(path) == before


def test_another_applications_database_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "app.db"
    with closing(sqlite3.connect(path)) as conn, conn:
        conn.execute("CREATE TABLE users (id INTEGER)")
    conn.close()
    before = digest(path)
    with pytest.raises(StorageError, match="not a Flux database"):
        SQLiteStorage(path)
    assert digest(path) == before


def test_a_database_from_a_newer_flux_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "future.db"
    asyncio.run(SQLiteStorage(path).close())
    with closing(sqlite3.connect(path)) as conn, conn:
        conn.execute("UPDATE flux_meta SET value=? WHERE key='schema_version'", (str(SCHEMA_VERSION + 1),))
    conn.close()
    before = digest(path)
    with pytest.raises(StorageError, match="newer") as err:
        SQLiteStorage(path)
    assert "future.db" in str(err.value)
    assert digest(path) == before


def test_the_schema_is_created_once_and_reopened(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "dir" / "flux.db"
    flow = create_workflow("wf").step("a", lambda ctx: 1)

    async def scenario() -> None:
        engine = FluxEngine(storage=SQLiteStorage(path))
        await engine.execute(flow, None, id="one")
        await engine.close()
        engine = FluxEngine(storage=f"sqlite:///{path}")
        assert (await engine.get("one")).outputs == {"a": 1}
        await engine.close()

    asyncio.run(scenario())


def test_missing_database_is_an_error_when_creation_is_off(tmp_path: Path) -> None:
    with pytest.raises(StorageError, match="does not exist"):
        SQLiteStorage(tmp_path / "missing.db", create=False)
    assert not (tmp_path / "missing.db").exists()


@pytest.mark.parametrize("durability", ["normal", "full"])
def test_durability_modes_set_synchronous(tmp_path: Path, durability: str) -> None:
    storage = SQLiteStorage(tmp_path / "d.db", durability=durability)
    level = storage._conn.execute("PRAGMA synchronous").fetchone()[0]
    assert level == {"normal": 1, "full": 2}[durability]
    assert storage._conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    asyncio.run(storage.close())


def test_bad_durability_is_refused(tmp_path: Path) -> None:
    with pytest.raises(StorageError, match="durability"):
        SQLiteStorage(tmp_path / "x.db", durability="fast")


@pytest.mark.parametrize(
    ("url", "message"),
    [("nonsense", "no scheme"), ("ftp://x", "unknown scheme"), ("sqlite://", "names no database")],
)
def test_bad_storage_urls(url: str, message: str) -> None:
    with pytest.raises(StorageError, match=message):
        open_storage(url)


def test_storage_urls_pick_backends(tmp_path: Path) -> None:
    storage = open_storage(f"sqlite:///{tmp_path}/u.db")
    assert isinstance(storage, SQLiteStorage) and storage.path == tmp_path / "u.db"
    asyncio.run(storage.close())
    assert type(open_storage("memory://")).__name__ == "MemoryStorage"


def test_a_directory_is_refused(tmp_path: Path) -> None:
    with pytest.raises(StorageError, match="directory"):
        SQLiteStorage(tmp_path)


def test_durability_in_the_url(tmp_path: Path) -> None:
    storage = open_storage(f"sqlite:///{tmp_path}/d.db?durability=full")
    assert isinstance(storage, SQLiteStorage) and storage.durability == "full"
    assert storage.path == tmp_path / "d.db"
    asyncio.run(storage.close())
    with pytest.raises(StorageError, match="only option"):
        open_storage(f"sqlite:///{tmp_path}/d.db?cache=shared")
    with pytest.raises(StorageError, match="durability"):
        open_storage(f"sqlite:///{tmp_path}/d.db?durability=sometimes")


def test_processes_opening_a_new_file_at_once_all_succeed(tmp_path: Path) -> None:
    import subprocess
    import sys

    path = tmp_path / "new.db"
    code = (
        "import asyncio, sys\n"
        "from flux import SQLiteStorage\n"
        "asyncio.run(SQLiteStorage(sys.argv[1]).close())\n"
        "print('ok')\n"
    )
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", code, str(path)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        for _ in range(6)
    ]
    for proc in procs:
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0 and out.strip() == "ok", err
    with closing(sqlite3.connect(path)) as conn, conn:
        assert conn.execute("SELECT value FROM flux_meta").fetchall() == [(str(SCHEMA_VERSION),)]
    conn.close()


def test_the_write_cache_holds_only_runs_in_hand(tmp_path: Path) -> None:
    """A long-lived engine that reads or finishes many runs must not remember each of them."""
    flow = create_workflow("wf").step("a", lambda ctx: 1).step("b", lambda ctx: 2)
    storage = SQLiteStorage(tmp_path / "c.db")

    async def scenario() -> None:
        engine = FluxEngine(storage=storage)
        for i in range(20):
            await engine.execute(flow, None, id=f"r{i}")
        await engine.list(limit=100)
        for i in range(20):
            await engine.get(f"r{i}")

    asyncio.run(scenario())
    assert storage._known == {}
    asyncio.run(storage.close())
