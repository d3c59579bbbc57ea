"""The tailer with a real file and a real watcher: each test awaits the change it
causes (with a generous deadline only to fail instead of hanging)."""

from __future__ import annotations

import asyncio
import os
import shutil
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from tests.viewer.factory import completed_run, ndjson, saga_run
from viewer.store import Change, TraceStore
from viewer.tailer import tail

DEADLINE = 20.0

Scenario = Callable[[TraceStore, "asyncio.Queue[Change]"], Awaitable[None]]


def run_tailing(trace: Path, scenario: Scenario) -> TraceStore:
    async def main() -> TraceStore:
        store = TraceStore(trace)
        changes: asyncio.Queue[Change] = asyncio.Queue()
        store.listeners.append(changes.put_nowait)
        stop = asyncio.Event()
        task = asyncio.create_task(tail(store, stop))
        try:
            await asyncio.wait_for(scenario(store, changes), DEADLINE)
        finally:
            stop.set()
            await asyncio.wait_for(task, DEADLINE)
        return store

    return asyncio.run(main())


async def until(changes: asyncio.Queue[Change], done: Callable[[Change], bool]) -> Change:
    while True:
        change = await changes.get()
        if done(change):
            return change


def append(trace: Path, data: bytes) -> None:
    with open(trace, "ab") as f:
        f.write(data)


def truncate(trace: Path) -> None:
    with open(trace, "r+b") as f:  # what JsonFileTraceSink(reset=True) does
        f.truncate(0)


def test_appended_events_are_picked_up(tmp_path: Path) -> None:
    trace = tmp_path / "trace.ndjson"
    trace.write_bytes(ndjson(completed_run("A")))

    async def scenario(store: TraceStore, changes: asyncio.Queue[Change]) -> None:
        await until(changes, lambda c: "A" in c.runs)
        events = saga_run("B")
        for i in range(len(events)):
            append(trace, ndjson(events[i : i + 1]))
            count = i + 1
            await until(changes, lambda c, n=count: "B" in c.runs and store.index.runs["B"].events == n)

    store = run_tailing(trace, scenario)
    assert store.index.runs["B"].status == "rolled_back"


def test_a_file_that_appears_later_is_picked_up_without_being_created(tmp_path: Path) -> None:
    trace = tmp_path / "later" / "trace.ndjson"

    async def scenario(store: TraceStore, changes: asyncio.Queue[Change]) -> None:
        await store.sync()  # the tailer has looked at least once
        assert not trace.parent.exists()
        trace.parent.mkdir()
        trace.write_bytes(ndjson(completed_run("LATE")))
        await until(changes, lambda c: "LATE" in c.runs)

    assert run_tailing(trace, scenario).index.runs["LATE"].status == "completed"


def test_truncation_resets_the_view(tmp_path: Path) -> None:
    trace = tmp_path / "trace.ndjson"
    trace.write_bytes(ndjson(saga_run("OLD")))

    async def scenario(store: TraceStore, changes: asyncio.Queue[Change]) -> None:
        await until(changes, lambda c: "OLD" in c.runs)
        truncate(trace)
        await until(changes, lambda c: c.reset)
        append(trace, ndjson(completed_run("NEW")))
        await until(changes, lambda c: "NEW" in c.runs)

    assert list(run_tailing(trace, scenario).index.runs) == ["NEW"]


def test_a_replaced_file_resets_the_view(tmp_path: Path) -> None:
    trace = tmp_path / "trace.ndjson"
    trace.write_bytes(ndjson(completed_run("OLD")))

    async def scenario(store: TraceStore, changes: asyncio.Queue[Change]) -> None:
        await until(changes, lambda c: "OLD" in c.runs)
        fresh = tmp_path / "fresh.tmp"
        fresh.write_bytes(ndjson(completed_run("NEW")))
        os.replace(fresh, trace)
        await until(changes, lambda c: "NEW" in c.runs)

    store = run_tailing(trace, scenario)
    assert list(store.index.runs) == ["NEW"] and store.epoch == 1


def test_a_deleted_and_recreated_file_is_followed(tmp_path: Path) -> None:
    trace = tmp_path / "trace.ndjson"
    trace.write_bytes(ndjson(completed_run("OLD")))

    async def scenario(store: TraceStore, changes: asyncio.Queue[Change]) -> None:
        await until(changes, lambda c: "OLD" in c.runs)
        trace.unlink()
        await until(changes, lambda c: c.reset)
        assert not store.exists
        trace.write_bytes(ndjson(completed_run("AGAIN")))
        await until(changes, lambda c: "AGAIN" in c.runs)

    assert list(run_tailing(trace, scenario).index.runs) == ["AGAIN"]


def test_a_folder_deleted_and_made_again_is_watched_anew(tmp_path: Path) -> None:
    folder = tmp_path / ".flux"
    folder.mkdir()
    trace = folder / "trace.ndjson"
    trace.write_bytes(ndjson(completed_run("OLD")))

    async def scenario(store: TraceStore, changes: asyncio.Queue[Change]) -> None:
        await until(changes, lambda c: "OLD" in c.runs)
        shutil.rmtree(folder)
        await until(changes, lambda c: c.reset)
        folder.mkdir()
        trace.write_bytes(ndjson(completed_run("NEW")))
        await until(changes, lambda c: "NEW" in c.runs)
        append(trace, ndjson(saga_run("NEXT")))
        await until(changes, lambda c: "NEXT" in c.runs)

    assert sorted(run_tailing(trace, scenario).index.runs) == ["NEW", "NEXT"]


def test_a_failure_is_logged_and_the_watch_starts_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    trace = tmp_path / "trace.ndjson"
    trace.write_bytes(ndjson(completed_run("A")))
    failures = [OSError("disk on fire")]
    real_sync = TraceStore.sync

    async def flaky(self: TraceStore) -> None:
        if failures:
            raise failures.pop()
        await real_sync(self)

    monkeypatch.setattr(TraceStore, "sync", flaky)

    async def scenario(store: TraceStore, changes: asyncio.Queue[Change]) -> None:
        await until(changes, lambda c: "A" in c.runs)
        append(trace, ndjson(completed_run("B")))
        await until(changes, lambda c: "B" in c.runs)

    run_tailing(trace, scenario)
    assert "disk on fire" in caplog.text
