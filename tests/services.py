"""Finding the real services the tests use, and skipping (or failing, in CI) without them."""

from __future__ import annotations

import os
import shutil
import socket
import tempfile
import time
import uuid
from pathlib import Path
from typing import NoReturn

import pytest

REQUIRED = os.environ.get("FLUX_REQUIRE_SERVICES") == "1"
PG_DSN = os.environ.get("FLUX_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")


def missing(reason: str) -> NoReturn:
    """Skip, or fail when FLUX_REQUIRE_SERVICES=1 says that every service must be here."""
    if REQUIRED:
        pytest.fail(f"FLUX_REQUIRE_SERVICES=1 but {reason}", pytrace=False)
    pytest.skip(reason)


def _port_open(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


def postgres_url_or_skip(request: pytest.FixtureRequest) -> str:
    """A URL to a fresh schema of the test database, dropped at the end of the test."""
    try:
        import psycopg
    except ImportError:
        missing("psycopg is not installed (pip install 'gravito-flux[postgres]')")
    if not _port_open("127.0.0.1", 5432):
        missing("no PostgreSQL server on 127.0.0.1:5432")
    schema = f"flux_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(PG_DSN, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")

    def drop() -> None:
        with psycopg.connect(PG_DSN, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA {schema} CASCADE")

    request.addfinalizer(drop)
    sep = "&" if "?" in PG_DSN else "?"
    return f"{PG_DSN}{sep}options=-csearch_path%3D{schema}"


def chromium_or_skip() -> str:
    path = shutil.which("chromium") or ("/usr/bin/chromium" if os.path.exists("/usr/bin/chromium") else None)
    if path is None:
        missing("Debian's chromium is not installed (apt-get install chromium)")
    return path


def sqlite_stores_lease_identity() -> bool:
    """Whether `SQLiteStorage` keeps `Lease.identity` (its `lease_identity` column). Without
    it, a dead holder on this machine is freed only by its lease's expiry (flux.leases)."""
    import asyncio

    from flux import SQLiteStorage
    from flux.records import Lease, RunRecord
    from flux.status import RunStatus

    async def probe(path: Path) -> bool:
        storage = SQLiteStorage(path)
        try:
            lease = Lease("probe", "host", 1, time.time() + 30, "boot|pid:[1]|1|1")
            await storage.create_run(RunRecord("probe", "probe", RunStatus.RUNNING, "{}", lease=lease))
            run = await storage.load_run("probe")
            return run is not None and run.lease is not None and run.lease.identity == lease.identity
        finally:
            await storage.close()

    with tempfile.TemporaryDirectory() as folder:
        return asyncio.run(probe(Path(folder) / "probe.db"))


#: For the tests of a holder that died on this machine, taken over before its lease expires.
needs_stored_identity = pytest.mark.xfail(
    not sqlite_stores_lease_identity(),
    reason="SQLiteStorage does not store Lease.identity yet (lease_identity column, h/storage)",
    strict=True,
)
