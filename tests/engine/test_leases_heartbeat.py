"""The heartbeat thread (`flux.heartbeat`), and `heartbeat_sync` on every storage."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

import flux.storage.sqlite as sqlite_module
from flux import (
    FluxEngine,
    FluxError,
    MemoryStorage,
    RunStatus,
    SQLiteStorage,
    StorageError,
    WorkflowStorage,
    create_workflow,
)
from flux.heartbeat import Heartbeat
from flux.logger import FluxSilentLogger
from flux.records import Lease, RunRecord

from ..services import postgres_url_or_skip

HANG_GUARD = 60.0  # seconds: only so that a broken heartbeat fails instead of hanging
Factory = Callable[[], WorkflowStorage]


class Logged(FluxSilentLogger):
    """Keeps the errors logged, and lets a test wait for the next one."""

    def __init__(self) -> None:
        self.errors: list[str] = []
        self.event = threading.Event()

    def error(self, message: str, **extra: Any) -> None:
        self.errors.append(message)
        self.event.set()


@pytest.fixture(params=["memory", "sqlite", "postgres"])
def make_storage(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Factory]:
    made: list[WorkflowStorage] = []
    shared = MemoryStorage()

    def factory() -> WorkflowStorage:
        if request.param == "memory":
            return shared
        if request.param == "sqlite":
            storage: WorkflowStorage = SQLiteStorage(tmp_path / "flux.db")
        else:
            from flux.storage.postgres import PostgresStorage

            storage = PostgresStorage(url)
        made.append(storage)
        return storage

    url = postgres_url_or_skip(request) if request.param == "postgres" else ""
    yield factory
    for storage in made:
        asyncio.run(storage.close())


def new_run(run_id: str, owner: str | None, expires_at: float = 0.0) -> RunRecord:
    lease = Lease(owner, "host", 1, expires_at or time.time() + 30) if owner else None
    return RunRecord(run_id, "flow", RunStatus.RUNNING, "{}", shape=[["s", "step"]], lease=lease)


def expiry(storage: WorkflowStorage, run_id: str) -> float:
    run = asyncio.run(storage.load_run(run_id))
    assert run is not None and run.lease is not None
    return run.lease.expires_at


def wait_for(what: str, done: Callable[[], bool]) -> None:
    deadline = time.monotonic() + HANG_GUARD
    while not done():
        assert time.monotonic() < deadline, f"never happened: {what}"
        time.sleep(0.005)


# ------------------------------------------------------------------ heartbeat_sync


def test_heartbeat_sync_renews_only_what_the_owner_holds(make_storage: Factory) -> None:
    storage = make_storage()
    for run in (new_run("r1", "a"), new_run("r2", "b"), new_run("r3", None), new_run("r4", "a")):
        assert asyncio.run(storage.create_run(run))
    before = expiry(storage, "r2")
    later = time.time() + 100
    answer = storage.heartbeat_sync("a", ["r1", "r2", "r3", "ghost", "r4"], later)
    assert answer == {"r1": None, "r4": None}
    assert expiry(storage, "r1") == expiry(storage, "r4") == pytest.approx(later)
    assert expiry(storage, "r2") == before
    assert storage.heartbeat_sync("a", [], later) == {}
    # What another view of the same storage (another process) sees
    assert make_storage().heartbeat_sync("b", ["r1", "r2"], later) == {"r2": None}


def test_heartbeat_sync_returns_the_cancel_request(make_storage: Factory) -> None:
    storage = make_storage()
    asyncio.run(storage.create_run(new_run("r1", "a")))
    request_cancel = getattr(storage, "request_cancel", None)
    if request_cancel is None:
        pytest.xfail("request_cancel is not implemented by this storage yet (h/storage)")
    asyncio.run(request_cancel("r1", "customer asked"))
    assert storage.heartbeat_sync("a", ["r1"], time.time() + 30) == {"r1": "customer asked"}


def test_memory_heartbeat_sync_returns_the_cancel_request() -> None:
    storage = MemoryStorage()
    asyncio.run(storage.create_run(new_run("r1", "a")))
    run = asyncio.run(storage.load_run("r1"))
    assert run is not None
    run.cancel_reason = "customer asked"
    asyncio.run(storage.save_run(run, [], None))
    assert storage.heartbeat_sync("a", ["r1"], time.time() + 30) == {"r1": "customer asked"}


def test_sqlite_heartbeat_does_not_wait_for_the_main_connection(tmp_path: Path) -> None:
    """The loop's connection is busy (its lock taken, as by a call waiting out another
    process's lock): the heartbeat renews on its own connection all the same."""
    storage = SQLiteStorage(tmp_path / "flux.db")
    asyncio.run(storage.create_run(new_run("r1", "a")))
    with storage._lock:
        assert storage.heartbeat_sync("a", ["r1"], time.time() + 60) == {"r1": None}
    asyncio.run(storage.close())
    with pytest.raises(StorageError, match="closed"):
        storage.heartbeat_sync("a", ["r1"], time.time() + 60)


def test_sqlite_heartbeat_without_returning(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The path for SQLite libraries older than 3.35 (no RETURNING), which Python may link."""
    monkeypatch.setattr(sqlite_module, "_HAS_RETURNING", False)
    storage = SQLiteStorage(tmp_path / "flux.db")
    ids = [f"r{i}" for i in range(1200)]  # more than one batch of parameters
    for run_id in ids:
        asyncio.run(storage.create_run(new_run(run_id, "a" if run_id != "r7" else "b")))
    answer = storage.heartbeat_sync("a", ids, time.time() + 60)
    assert sorted(answer) == sorted(set(ids) - {"r7"}) and set(answer.values()) == {None}
    asyncio.run(storage.close())


# ------------------------------------------------------------------ the thread


_IDLE_LOOP = asyncio.new_event_loop()  # a loop nobody runs: what it is told stays queued


@pytest.fixture(scope="module", autouse=True)
def _close_idle_loop() -> Iterator[None]:
    yield
    _IDLE_LOOP.close()


def hold(beat: Heartbeat, run_id: str) -> None:
    beat.hold(run_id, _IDLE_LOOP, lambda r: None, lambda r, why: None)


def test_the_thread_renews_every_third_of_the_lease(tmp_path: Path) -> None:
    storage = SQLiteStorage(tmp_path / "flux.db")
    asyncio.run(storage.create_run(new_run("r1", "a", time.time() + 0.3)))
    beat = Heartbeat(storage, "a", 0.3, FluxSilentLogger())
    assert not beat.alive  # started on first use
    first = expiry(storage, "r1")
    hold(beat, "r1")
    wait_for("three beats", lambda: beat.beats >= 3)
    assert expiry(storage, "r1") > first
    beat.close()
    assert not beat.alive
    with pytest.raises(FluxError, match="run 'r1': the heartbeat of a is closed"):
        hold(beat, "r1")
    asyncio.run(storage.close())


def test_a_storage_error_is_logged_and_retried_and_the_thread_lives_on(tmp_path: Path) -> None:
    """Another process holds the database's write lock: the beats fail, are logged, and the
    next beat after the lock is released renews the lease."""
    storage = SQLiteStorage(tmp_path / "flux.db")
    asyncio.run(storage.create_run(new_run("r1", "a", time.time() + 0.3)))
    logger = Logged()
    beat = Heartbeat(storage, "a", 0.3, logger)
    other = sqlite3.connect(tmp_path / "flux.db", isolation_level=None)
    other.execute("BEGIN EXCLUSIVE")
    hold(beat, "r1")
    assert logger.event.wait(HANG_GUARD), "no heartbeat error was logged"
    assert "heartbeat failed" in logger.errors[0] and "flux.db" in logger.errors[0]
    stuck = beat.beats
    other.execute("COMMIT")
    other.close()
    locked_expiry = expiry(storage, "r1")
    wait_for("a beat after the lock", lambda: expiry(storage, "r1") > locked_expiry)
    assert beat.alive and beat.beats > stuck
    beat.close()
    asyncio.run(storage.close())


class FlakyStorage(MemoryStorage):
    """A user's own storage with a bug that shows in one beat out of two."""

    calls = 0

    def heartbeat_sync(self, owner: str, run_ids: Sequence[str], expires_at: float) -> dict[str, str | None]:
        self.calls += 1
        if self.calls % 2:
            raise ValueError("a bug in a user's storage")
        return super().heartbeat_sync(owner, run_ids, expires_at)


def test_any_error_of_a_beat_leaves_the_thread_alive() -> None:
    storage = FlakyStorage()
    asyncio.run(storage.create_run(new_run("r1", "a", time.time() + 0.3)))
    logger = Logged()
    beat = Heartbeat(storage, "a", 0.3, logger)
    first = expiry(storage, "r1")
    hold(beat, "r1")
    wait_for("a beat that works", lambda: expiry(storage, "r1") > first)
    assert beat.alive
    assert any("a bug in a user's storage" in e for e in logger.errors)
    beat.close()


def test_a_lost_lease_is_told_to_the_loop_that_holds_it(tmp_path: Path) -> None:
    storage = SQLiteStorage(tmp_path / "flux.db")
    asyncio.run(storage.create_run(new_run("r1", "a")))
    beat = Heartbeat(storage, "a", 0.3, FluxSilentLogger())

    async def main() -> tuple[str, int]:
        told = asyncio.get_running_loop().create_future()
        beat.hold(
            "r1", asyncio.get_running_loop(),
            lambda r: told.set_result((r, threading.get_ident())), lambda r, why: None,
        )  # fmt: skip
        assert await asyncio.to_thread(storage.heartbeat_sync, "a", ["r1"], time.time() + 30) == {"r1": None}
        taken = Lease("thief", "host", 1, time.time() + 30)
        assert await storage.acquire_lease("r1", taken, take_from="a")
        return await asyncio.wait_for(told, HANG_GUARD)

    assert asyncio.run(main()) == ("r1", threading.get_ident())
    assert beat.held() == []
    beat.close()
    asyncio.run(storage.close())


def test_a_cancel_request_is_told_once() -> None:
    storage = MemoryStorage()
    asyncio.run(storage.create_run(new_run("r1", "a")))
    beat = Heartbeat(storage, "a", 0.3, FluxSilentLogger())
    calls: list[tuple[str, str]] = []

    async def main() -> None:
        told = asyncio.Event()

        def on_cancel(run_id: str, reason: str) -> None:
            calls.append((run_id, reason))
            told.set()

        beat.hold("r1", asyncio.get_running_loop(), lambda r: None, on_cancel)
        run = await storage.load_run("r1")
        assert run is not None
        run.cancel_reason = "customer asked"
        await storage.save_run(run, [], None)
        await asyncio.wait_for(told.wait(), HANG_GUARD)
        seen = beat.beats
        await asyncio.to_thread(wait_for, "two more beats", lambda: beat.beats >= seen + 2)

    asyncio.run(main())
    assert calls == [("r1", "customer asked")]
    assert beat.held() == ["r1"]  # a cancel request does not end the hold
    beat.close()


def test_the_engine_starts_it_on_first_use_and_close_stops_it(tmp_path: Path) -> None:
    flow = create_workflow("one").step("s", lambda ctx: "ok")
    engine = FluxEngine(SQLiteStorage(tmp_path / "flux.db"), lease_seconds=0.3)
    assert not engine.heartbeat.alive
    assert engine.execute_sync(flow, {}).status is RunStatus.COMPLETED
    assert engine.heartbeat.alive and engine.heartbeat.held() == []
    engine.close_sync()
    assert not engine.heartbeat.alive


def test_a_memory_engine_holds_no_lease() -> None:
    flow = create_workflow("one").step("s", lambda ctx: "ok")
    with FluxEngine(lease_seconds=0.3) as engine:
        assert engine.execute_sync(flow, {}).status is RunStatus.COMPLETED
        assert not engine.heartbeat.alive
