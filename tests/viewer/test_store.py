"""The store against a real file: appends, truncation, replacement, deletion."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from tests.viewer.factory import RunWriter, completed_run, ndjson, saga_run
from viewer.store import Change, TraceStore


def synced(store: TraceStore) -> TraceStore:
    asyncio.run(store.sync())
    return store


def recording(path: Path) -> tuple[TraceStore, list[Change]]:
    store = TraceStore(path)
    changes: list[Change] = []
    store.listeners.append(changes.append)
    return store, changes


def test_a_missing_file_is_waited_for_and_nothing_is_created(tmp_path: Path) -> None:
    trace = tmp_path / "not-yet" / "trace.ndjson"
    store = synced(TraceStore(trace))
    assert not store.exists and store.index.runs == {}
    assert not trace.parent.exists()
    trace.parent.mkdir()
    trace.write_bytes(ndjson(completed_run("R")))
    assert synced(store).exists and store.index.runs["R"].status == "completed"


def test_appended_lines_are_read_from_the_remembered_offset(tmp_path: Path) -> None:
    trace = tmp_path / "trace.ndjson"
    events = saga_run("R")
    trace.write_bytes(ndjson(events[:5]))
    store, changes = recording(trace)
    synced(store)
    assert store.offset == trace.stat().st_size and store.index.runs["R"].events == 5
    with open(trace, "ab") as f:
        f.write(ndjson(events[5:]))
    synced(store)
    assert store.index.runs["R"].events == len(events) and store.index.runs["R"].status == "rolled_back"
    assert [c.runs for c in changes] == [frozenset({"R"}), frozenset({"R"})]
    assert [c.version for c in changes] == [1, 2] and store.version == 2


def test_nothing_new_publishes_nothing(tmp_path: Path) -> None:
    trace = tmp_path / "trace.ndjson"
    trace.write_bytes(ndjson(completed_run("R")))
    store, changes = recording(trace)
    synced(store)
    synced(store)
    assert len(changes) == 1


def test_a_truncated_file_starts_over(tmp_path: Path) -> None:
    trace = tmp_path / "trace.ndjson"
    trace.write_bytes(ndjson(saga_run("OLD")))
    store, changes = recording(trace)
    synced(store)
    with open(trace, "r+b") as f:  # what JsonFileTraceSink(reset=True) does
        f.truncate(0)
        f.write(ndjson(completed_run("NEW")[:2]))
    synced(store)
    assert list(store.index.runs) == ["NEW"]
    assert [c.reset for c in changes] == [False, True, False]
    assert store.epoch == 1


def test_a_file_rewritten_to_a_larger_size_is_noticed_by_its_first_bytes(tmp_path: Path) -> None:
    trace = tmp_path / "trace.ndjson"
    trace.write_bytes(ndjson(completed_run("OLD")[:1]))
    store = synced(TraceStore(trace))
    with open(trace, "r+b") as f:  # truncated and refilled before the viewer looked
        f.truncate(0)
        f.write(ndjson(saga_run("NEW")))
    synced(store)
    assert list(store.index.runs) == ["NEW"] and store.index.malformed_count == 0


def test_a_replaced_file_starts_over(tmp_path: Path) -> None:
    trace = tmp_path / "trace.ndjson"
    trace.write_bytes(ndjson(completed_run("OLD")))
    store = synced(TraceStore(trace))
    fresh = tmp_path / "fresh.ndjson"
    # Same first bytes would not be noticed by content: only the inode differs.
    fresh.write_bytes(ndjson(completed_run("OLD") + completed_run("NEW")))
    os.replace(fresh, trace)
    synced(store)
    assert sorted(store.index.runs) == ["NEW", "OLD"]
    assert store.index.runs["OLD"].events == 6 and store.epoch == 1


def test_a_deleted_file_empties_the_view_and_is_waited_for_again(tmp_path: Path) -> None:
    trace = tmp_path / "trace.ndjson"
    trace.write_bytes(ndjson(completed_run("R")))
    store = synced(TraceStore(trace))
    trace.unlink()
    synced(store)
    assert not store.exists and store.index.runs == {}
    trace.write_bytes(ndjson(completed_run("S")))
    assert list(synced(store).index.runs) == ["S"]


def test_a_half_written_line_waits_for_its_end(tmp_path: Path) -> None:
    trace = tmp_path / "trace.ndjson"
    data = ndjson(completed_run("R"))
    cut = len(data) - 30
    trace.write_bytes(data[:cut])
    store = synced(TraceStore(trace))
    assert store.index.runs["R"].events == 5 and store.index.malformed_count == 0
    with open(trace, "ab") as f:
        f.write(data[cut:])
    synced(store)
    assert store.index.runs["R"].events == 6 and store.index.runs["R"].status == "completed"


def test_events_are_read_back_from_the_file_and_extended_as_it_grows(tmp_path: Path) -> None:
    trace = tmp_path / "trace.ndjson"
    events = saga_run("R")
    others = completed_run("X")
    trace.write_bytes(ndjson([events[0], others[0], *events[1:4], *others[1:]]))
    store = synced(TraceStore(trace))
    run = store.index.runs["R"]
    assert store.events(run) == events[:4]
    with open(trace, "ab") as f:
        f.write(ndjson(events[4:]))
    synced(store)
    assert store.events(store.index.runs["R"]) == events


def test_events_skip_lines_that_changed_under_the_index(tmp_path: Path) -> None:
    trace = tmp_path / "trace.ndjson"
    w = RunWriter("R")
    trace.write_bytes(ndjson([w.start(), w.step_start("fetch")]))
    store = synced(TraceStore(trace))
    run = store.index.runs["R"]
    # Rewritten between the sync and the read: the run must not show another run's events.
    trace.write_bytes(ndjson(completed_run("OTHER")))
    assert store.events(run) == []


def test_a_torn_line_followed_by_more_lines_is_skipped_and_counted(tmp_path: Path) -> None:
    trace = tmp_path / "trace.ndjson"
    events = completed_run("R")
    torn = b'{"v":1,"type":"step:start","workflowId":"R","stepName":"fe'
    # A writer killed inside its line; the next one ended it (or, an older writer, did not).
    trace.write_bytes(ndjson(events[:1]) + torn + b"\n" + ndjson(events[1:2]) + torn + ndjson(events[2:]))
    store = synced(TraceStore(trace))
    index = store.index
    assert index.malformed_count == 2 and [m.line for m in index.malformed] == [2, 4]
    assert index.runs["R"].status == "completed" and index.pending == 0
    read = [ev["seq"] for ev in store.events(index.runs["R"])]
    assert read == [e["seq"] for e in events[:2] + events[3:]]  # the glued line lost one event


def test_integer_timestamps_of_any_size_never_break_the_store(tmp_path: Path) -> None:
    trace = tmp_path / "trace.ndjson"
    w = RunWriter("T")
    events = [w.start(), w.step_start("fetch"), w.complete("fetch", 1), w.finish()]
    for ev in events:
        ev["timestamp"] = int(ev["timestamp"])  # what the engine writes: Date.now()-style ints
    huge = dict(events[1], seq=20, timestamp=10**400)  # beyond float range
    endless = b'{"v":1,"seq":21,"type":"step:start","workflowId":"T","timestamp":' + b"9" * 5000 + b"}\n"
    trace.write_bytes(ndjson(events[:2]) + ndjson([huge]) + endless + ndjson(events[2:]))
    store = synced(TraceStore(trace))
    run = store.index.runs["T"]
    assert run.status == "completed" and run.started_at == events[0]["timestamp"]
    # Both skipped and counted, the same way on every page.
    assert store.index.malformed_count == 2
    assert [bad.reason for bad in store.index.malformed] == [
        "timestamp: an integer out of range",
        "invalid JSON: an integer too long to read (over 4,300 digits)",
    ]
    assert run.events == 4


def test_a_cached_runs_new_lines_are_read_and_parsed_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    trace = tmp_path / "trace.ndjson"
    events = saga_run("R")
    trace.write_bytes(ndjson(events[:5]) + ndjson(completed_run("OTHER")))
    store = synced(TraceStore(trace))
    assert [ev["seq"] for ev in store.events(store.index.runs["R"])] == [1, 2, 3, 4, 5]
    reads: list[int] = []
    real = store._read_lines
    monkeypatch.setattr(store, "_read_lines", lambda run, start: reads.append(start) or real(run, start))
    with open(trace, "ab") as f:
        f.write(ndjson(events[5:9]) + ndjson(completed_run("THIRD")))
    synced(store)
    assert [ev["seq"] for ev in store.events(store.index.runs["R"])] == list(range(1, 10))
    assert reads == []  # handed over by the index as it parsed them
    fresh = synced(TraceStore(trace))
    assert store.events(store.index.runs["R"]) == fresh.events(fresh.index.runs["R"])
    store.events(store.index.runs["OTHER"])
    assert reads == [0]  # not cached before: read from the file
