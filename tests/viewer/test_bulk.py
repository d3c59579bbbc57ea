"""Loading a large trace in segments, in worker processes, must give exactly the
index that one sequential read gives."""

from __future__ import annotations

import asyncio
import itertools
import pickle
from pathlib import Path
from typing import Any

import pytest

from tests.viewer.factory import RunWriter, completed_run, ndjson, saga_run
from viewer import bulk
from viewer.store import TraceStore
from viewer.summary import RunSummary
from viewer.trace import TraceIndex


def state(index: TraceIndex) -> dict[str, Any]:
    def run_state(run: RunSummary) -> tuple[Any, ...]:
        fields = ("status", "started_at", "ended_at", "duration", "steps_total", "steps_done", "error")
        fields += ("error_type", "waiting_for", "last_seq", "first_line", "workflow")
        return (*(getattr(run, f) for f in fields), set(run.done), list(run.offsets))

    return {
        "runs": {rid: run_state(run) for rid, run in index.runs.items()},
        "workflows": index.workflows,
        "malformed": index.malformed,
        "malformed_count": index.malformed_count,
        "lines": index.lines,
        "consumed": index.consumed,
    }


def interleaved_trace(path: Path) -> bytes:
    """Runs that straddle any cut: long-lived runs, resumed runs, bad lines."""
    long = RunWriter("LONG", steps=(("a", False), ("b", False)))
    gravito = RunWriter("TS", "ts", steps=(("x", False),), gravito=True)
    events: list[Any] = [long.start(), gravito.start()]
    for i in range(40):
        events += saga_run(f"S{i}")[:9] if i % 3 else completed_run(f"C{i}")
        if i == 10:
            events += [long.step_start("a"), long.suspend("a", "go"), gravito.step_start("x")]
        if i == 30:
            events += [long.signal("a", "go"), long.step_start("b"), gravito.retry("x", 1, "boom")]
    events += [long.complete("b"), long.finish()]
    lines = ndjson(events).splitlines(keepends=True)
    for at in (7, 150, 400):
        lines.insert(at, b"{broken\n")
    data = b"".join(lines) + b'{"half": '
    path.write_bytes(data)
    return data


def test_segments_are_whole_lines_and_skip_the_unfinished_one(tmp_path: Path) -> None:
    trace = tmp_path / "t.ndjson"
    data = interleaved_trace(trace)
    parts = bulk.segments(trace, len(data), 4)
    assert parts[0][0] == 0 and parts[-1][1] == data.rfind(b"\n") + 1
    for (_, end), (start, _) in itertools.pairwise(parts):
        assert end == start and data[start - 1 : start] == b"\n"
    # The server's own first segment larger than a worker's, by about FIRST_SHARE.
    weighted = bulk.segments(trace, len(data), 3, first=2.0)
    sizes = [b - a for a, b in weighted]
    assert weighted[0][0] == 0 and weighted[-1][1] == parts[-1][1]
    assert sizes[0] > 1.5 * max(sizes[1:])


@pytest.mark.parametrize("count", [2, 3, 4, 7])
def test_merged_segments_equal_a_sequential_read(tmp_path: Path, count: int) -> None:
    trace = tmp_path / "t.ndjson"
    data = interleaved_trace(trace)
    sequential = TraceIndex()
    sequential.feed(data[: data.rfind(b"\n") + 1])

    parts = bulk.segments(trace, len(data), count)
    merged = bulk.fold_segment(str(trace), *parts[0])
    with open(trace, "rb") as f:

        def read_line(offset: int) -> bytes:
            f.seek(offset)
            return f.readline()

        for start, end in parts[1:]:
            part = pickle.loads(pickle.dumps(bulk.fold_segment(str(trace), start, end)))
            bulk.merge(merged, part, read_line)
    assert state(merged) == state(sequential)
    assert merged.runs["LONG"].status == "completed" and merged.runs["TS"].steps_total == 1


def test_a_run_summary_survives_pickling() -> None:
    index = TraceIndex()
    index.feed(ndjson(saga_run("R")) + b'{"workflowId": "G", "type": "step:start", "stepName": "s"}\n')
    again = pickle.loads(pickle.dumps(index))
    assert state(again) == state(index)
    assert again.runs["G"].seen == {"s"} and again.runs["R"].seen is None


def test_the_store_loads_a_large_file_with_worker_processes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    trace = tmp_path / "t.ndjson"
    data = interleaved_trace(trace)
    expected = TraceStore(trace)
    asyncio.run(expected.sync())
    spawned: list[tuple[int, int]] = []
    real = bulk.fold_in_worker

    async def counting(path: Path, start: int, end: int) -> TraceIndex:
        spawned.append((start, end))
        return await real(path, start, end)

    monkeypatch.setattr(bulk, "workers_for", lambda size: 2)
    monkeypatch.setattr(bulk, "fold_in_worker", counting)
    store = TraceStore(trace)
    asyncio.run(store.sync())
    assert len(spawned) == 2
    assert state(store.index) == state(expected.index)
    assert store.offset == len(data)  # the unfinished line is held back as usual


def test_a_failed_worker_leaves_the_rest_to_the_sequential_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    trace = tmp_path / "t.ndjson"
    interleaved_trace(trace)
    expected = TraceStore(trace)
    asyncio.run(expected.sync())

    async def broken(path: Path, start: int, end: int) -> TraceIndex:
        raise RuntimeError("killed")

    monkeypatch.setattr(bulk, "workers_for", lambda size: 3)
    monkeypatch.setattr(bulk, "fold_in_worker", broken)
    store = TraceStore(trace)
    asyncio.run(store.sync())
    assert state(store.index) == state(expected.index)


def test_small_files_use_no_worker() -> None:
    assert bulk.workers_for(1 << 20) == 0
    assert bulk.workers_for(bulk.BULK_MIN * 100) <= bulk.MAX_SEGMENTS - 1


def test_the_newest_runs_answer_while_the_rest_loads(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    trace = tmp_path / "t.ndjson"
    events: list[Any] = []
    for i in range(60):
        events += saga_run(f"S{i:02d}", t0=1000.0 * i)
    data = ndjson(events)
    trace.write_bytes(data)
    expected = TraceStore(trace)
    asyncio.run(expected.sync())
    seen: list[tuple[bool, set[str]]] = []
    real = bulk.fold_in_worker
    store = TraceStore(trace)
    found: list[asyncio.Task[Any]] = []

    async def watching(path: Path, start: int, end: int) -> TraceIndex:
        await store.sync()  # a page's request: answered at once, from the preview
        seen.append((store.loading, set(store.index.runs)))
        # A run page for an older run waits for the whole index, not a 404.
        found.append(asyncio.create_task(store.find("S00")))
        return await real(path, start, end)

    async def load() -> Any:
        await store.sync()
        return await found[0]

    monkeypatch.setattr(bulk, "workers_for", lambda size: 1)
    monkeypatch.setattr(bulk, "fold_in_worker", watching)
    monkeypatch.setattr(bulk, "PREVIEW", len(data) // 6)
    older = asyncio.run(load())
    assert older is not None and older.id == "S00"
    ((loading, shown),) = seen
    assert loading
    # Whole runs only, the newest ones, each as the full index has it.
    newest = sorted(expected.index.runs, reverse=True)
    assert shown and shown == set(newest[: len(shown)]) and len(shown) < 60
    assert not store.loading and state(store.index) == state(expected.index)


def test_the_preview_leaves_out_runs_it_sees_only_the_end_of(tmp_path: Path) -> None:
    trace = tmp_path / "t.ndjson"
    old, new = saga_run("OLD"), completed_run("NEW")
    data = ndjson(old[:-3] + new + old[-3:])
    trace.write_bytes(data)
    tail = len(ndjson(new + old[-3:])) + 5
    index = bulk.preview(trace, len(data), tail)
    assert set(index.runs) == {"NEW"} and index.workflows == {"order-process": 1}
    assert index.runs["NEW"].status == "completed"
