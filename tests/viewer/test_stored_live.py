"""viewer.storage_live: a change made by another process is published on the hub; SQLite's
file events that change no run (data_version still) are not; PostgreSQL names the run."""

from __future__ import annotations

import asyncio
import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.services import postgres_url_or_skip
from viewer.hub import Hub
from viewer.storage_live import StorageWatch

ROOT = Path(__file__).resolve().parents[2]
#: A deadline to fail on, not a performance threshold.
DEADLINE_S = 30.0


def write(url: str, mode: str, run_id: str) -> None:
    subprocess.run(
        [sys.executable, "-m", "tests.e2e.stored_writer", url, mode, run_id],
        cwd=ROOT,
        check=True,
        capture_output=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        timeout=60,
    )


@pytest.fixture(params=["sqlite", "postgres"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'runs.db'}"
    return postgres_url_or_skip(request)


def test_another_process_change_is_published(url: str) -> None:
    write(url, "execute", "FIRST-1")  # the database exists

    async def scenario() -> None:
        hub = Hub()
        watch = StorageWatch(url, hub)
        stop = asyncio.Event()
        task = asyncio.create_task(watch.run(stop))
        try:
            await asyncio.wait_for(watch.ready.wait(), DEADLINE_S)
            sub = hub.subscribe()
            await asyncio.to_thread(write, url, "wait", "LIVE-1")
            pending = await sub.next(DEADLINE_S)
            assert pending, "no change published"
            if url.startswith("postgres"):
                assert "LIVE-1" in pending.runs  # NOTIFY names the run
            else:
                assert pending.overflow  # SQLite cannot say which: every page looks again
            assert watch.version >= 1
        finally:
            stop.set()
            await task

    asyncio.run(scenario())


def test_sqlite_file_events_without_a_change_publish_nothing(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'runs.db'}"
    write(url, "execute", "FIRST-1")

    async def scenario() -> None:
        hub = Hub()
        watch = StorageWatch(url, hub)
        stop = asyncio.Event()
        task = asyncio.create_task(watch.run(stop))
        try:
            await asyncio.wait_for(watch.ready.wait(), DEADLINE_S)
            sub = hub.subscribe()
            # A read, a checkpoint that keeps the WAL, and a touch: events, no change.
            watch.looked.clear()
            await asyncio.to_thread(_touch, tmp_path / "runs.db")
            await asyncio.wait_for(watch.looked.wait(), DEADLINE_S)
            assert watch.version == 0
            # Then one commit does.
            await asyncio.to_thread(_touch, tmp_path / "runs.db", commit=True)
            pending = await sub.next(DEADLINE_S)
            assert pending and watch.version == 1
        finally:
            stop.set()
            await task

    asyncio.run(scenario())


def _touch(path: Path, commit: bool = False) -> None:
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        conn.execute("SELECT count(*) FROM flux_runs").fetchone()
        os.utime(path)
        os.utime(path.with_name(path.name + "-wal"))
        if commit:
            conn.execute("UPDATE flux_runs SET updated_at = updated_at + 1 WHERE id = 'FIRST-1'")
    finally:
        conn.close()


def test_postgres_names_saved_runs_but_not_lease_renewals(request: pytest.FixtureRequest) -> None:
    """A heartbeat (only the lease's expiry moves) is no change to show: no notification."""
    url = postgres_url_or_skip(request)
    write(url, "execute", "FIRST-1")

    async def scenario() -> None:
        from flux.records import Lease, RunRecord
        from flux.status import RunStatus
        from flux.storage import open_storage

        storage = open_storage(url)
        now = time.time()
        held = RunRecord("HELD-1", "wf", RunStatus.RUNNING, "{}", created_at=now, updated_at=now)
        held.lease = Lease("me", "host", 1, now + 60, "")
        await storage.create_run(held)
        hub = Hub()
        watch = StorageWatch(url, hub)
        stop = asyncio.Event()
        task = asyncio.create_task(watch.run(stop))
        try:
            await asyncio.wait_for(watch.ready.wait(), DEADLINE_S)
            sub = hub.subscribe()
            assert await storage.renew_lease("HELD-1", "me", now + 120)
            other = RunRecord("OTHER-1", "wf", RunStatus.PENDING, "{}", created_at=now, updated_at=now)
            assert await storage.create_run(other)  # a real change, after
            seen: set[str] = set()
            while "OTHER-1" not in seen:  # notifications come in commit order
                pending = await sub.next(DEADLINE_S)
                assert pending, "no change published"
                seen |= pending.runs
            assert "HELD-1" not in seen
        finally:
            stop.set()
            await task
            await storage.close()

    asyncio.run(scenario())
