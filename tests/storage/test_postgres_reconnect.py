"""PostgreSQL: a connection the server dropped while it sat idle is replaced, so the next
call succeeds; a connection lost while a write was in flight is a `StorageError` (whether the
write happened is unknown), never a bare psycopg error, and never a retried write."""

from __future__ import annotations

import asyncio
import select
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from flux import StorageError
from flux.records import Lease, RunRecord, StepRecord
from flux.status import RunStatus, StepStatus

from ..services import PG_DSN, postgres_url_or_skip

pytestmark = pytest.mark.postgres


@pytest.fixture
def storage(request: pytest.FixtureRequest) -> Iterator[Any]:
    from flux.storage.postgres import PostgresStorage

    store = PostgresStorage(postgres_url_or_skip(request))
    yield store
    asyncio.run(store.close())


def new_run(run_id: str = "r1") -> RunRecord:
    now = time.time()
    return RunRecord(
        id=run_id,
        name="wf",
        status=RunStatus.RUNNING,
        input_json="{}",
        shape=[["s1", "step"]],
        steps=[StepRecord("s1", "step")],
        created_at=now,
        updated_at=now,
        lease=Lease("holder", "h", 1, now + 60),
    )


def drop_idle_connections(storage: Any) -> None:
    """The server ends every idle connection of `storage`, as a restart or an admin would;
    returns once each has received the news (its socket is readable)."""
    import psycopg

    assert storage._idle, "the storage has no idle connection to drop"
    with psycopg.connect(PG_DSN, autocommit=True) as admin:
        for conn in storage._idle:
            row = admin.execute("SELECT pg_terminate_backend(%s, 10000)", (conn.info.backend_pid,)).fetchone()
            assert row == (True,)
    for conn in storage._idle:
        readable, _, _ = select.select([conn.fileno()], [], [], 10)
        assert readable


def test_a_read_after_the_server_dropped_the_idle_connection_succeeds(storage: Any) -> None:
    asyncio.run(storage.create_run(new_run()))
    drop_idle_connections(storage)
    loaded = asyncio.run(storage.load_run("r1"))
    assert loaded is not None and loaded.id == "r1"
    assert [r.id for r in asyncio.run(storage.list_runs())] == ["r1"]


@pytest.mark.parametrize(
    "call",
    [
        lambda s, rec: s.create_run(new_run("r2")),
        lambda s, rec: s.save_run(rec, [0], "holder"),
        lambda s, rec: s.renew_lease("r1", "holder", time.time() + 90),
        lambda s, rec: s.request_cancel("r1", "why"),
        lambda s, rec: s.claim_next(["wf"], Lease("w", "h", 2, time.time() + 30)),
    ],
    ids=["create", "save", "renew", "cancel", "claim"],
)
def test_a_write_after_the_server_dropped_the_idle_connection_succeeds(
    storage: Any, call: Callable[[Any, RunRecord], Any]
) -> None:
    record = new_run()
    asyncio.run(storage.create_run(record))
    record.steps[0].status = StepStatus.COMPLETED
    record.rev += 1
    drop_idle_connections(storage)
    asyncio.run(call(storage, record))
    loaded = asyncio.run(storage.load_run("r1"))
    assert loaded is not None and loaded.lease is not None and loaded.lease.owner == "holder"


def test_a_write_cut_off_in_flight_is_a_storage_error_and_changes_nothing(storage: Any) -> None:
    """The save waits on a row lock held elsewhere; the server ends its connection meanwhile."""
    import psycopg

    record = new_run()
    asyncio.run(storage.create_run(record))
    [conn] = storage._idle
    pid = conn.info.backend_pid
    record.status = RunStatus.COMPLETED
    record.rev += 1
    errors: list[BaseException] = []

    def save() -> None:
        try:
            asyncio.run(storage.save_run(record, [0], "holder"))
        except BaseException as exc:
            errors.append(exc)

    with psycopg.connect(PG_DSN, autocommit=True) as admin, psycopg.connect(storage.url) as locker:
        locker.execute("SELECT 1 FROM flux_runs WHERE id='r1' FOR UPDATE")
        saver = threading.Thread(target=save)
        saver.start()
        for _ in range(10_000):  # until the save waits on the lock (bounded)
            waiting = admin.execute(
                "SELECT 1 FROM pg_stat_activity WHERE pid=%s AND wait_event_type='Lock'", (pid,)
            ).fetchone()
            if waiting:
                break
            time.sleep(0.001)
        assert waiting
        admin.execute("SELECT pg_terminate_backend(%s, 10000)", (pid,))
        saver.join()
        locker.rollback()
    [error] = errors
    assert isinstance(error, StorageError) and "saving run 'r1'" in str(error)
    loaded = asyncio.run(storage.load_run("r1"))  # on a new connection
    assert loaded is not None and loaded.status is RunStatus.RUNNING
    assert loaded.lease is not None and loaded.lease.owner == "holder"


def test_a_connection_found_broken_only_by_the_call_is_retried_for_reads_not_saves(
    storage: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Were the server's news not yet in when the call began, the call itself finds the
    connection broken: a read runs again on a new one; a save, which may have been applied,
    is a StorageError."""
    from flux.storage import postgres

    record = new_run()
    asyncio.run(storage.create_run(record))
    monkeypatch.setattr(postgres, "_still_open", lambda conn: True)  # the check before use misses
    drop_idle_connections(storage)
    loaded = asyncio.run(storage.load_run("r1"))
    assert loaded is not None and loaded.id == "r1"
    drop_idle_connections(storage)
    record.status = RunStatus.COMPLETED
    record.rev += 1
    with pytest.raises(StorageError, match="saving run 'r1'"):
        asyncio.run(storage.save_run(record, [0], "holder"))
    again = asyncio.run(storage.load_run("r1"))  # the next call has a new connection
    assert again is not None and again.status is RunStatus.RUNNING
