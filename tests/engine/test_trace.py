"""flux.trace: NDJSON trace files in the `@gravito/flux` vocabulary, and sinks that fail."""

from __future__ import annotations

import json
import logging
import os
import re
import subprocess
import sys
import textwrap
import time
from collections import defaultdict
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

import flux
from flux import (
    FatalError,
    Flux,
    FluxEngine,
    FluxTraceSink,
    JsonFileTraceSink,
    MemoryTraceSink,
    RunStatus,
    WorkflowContext,
    create_workflow,
)
from flux.events import EventType

EngineFactory = Callable[..., FluxEngine]
ROOT = Path(flux.__file__).resolve().parent.parent
#: Longest a test waits for something that should happen within a tenth of a second.
DEADLINE = 10.0

#: The vocabulary's one definition (SPEC §6 and the types added since).
TYPES = {kind.value for kind in EventType}
CAMEL = re.compile(r"^[a-z][a-zA-Z0-9]*$")


def _read(path: Path) -> list[dict[str, Any]]:
    text = path.read_text(encoding="utf-8")
    assert text == "" or text.endswith("\n")
    return [json.loads(line) for line in text.splitlines()]


def _wait_for_lines(path: Path, count: int) -> list[dict[str, Any]]:
    """Poll the file until it holds `count` whole lines (an event wait with a deadline)."""
    deadline = time.monotonic() + DEADLINE
    while True:
        text = path.read_text(encoding="utf-8") if path.exists() else ""
        lines = [line for line in text.split("\n")[:-1]]
        if len(lines) >= count:
            return [json.loads(line) for line in lines]
        if time.monotonic() > deadline:
            pytest.fail(f"{path} has {len(lines)} lines, expected {count}: {text!r}")
        time.sleep(0.005)


def _mixed_runs(engine: FluxEngine) -> None:
    """One run of each kind: completed, retried, skipped, failed, rolled back, suspended."""

    def flaky(ctx: WorkflowContext[Any]) -> Any:
        if ctx.attempt == 1:
            raise ConnectionError("blip")
        ctx.data["amount"] = Decimal("9.90")
        return {"paid": True, "amount": Decimal("9.90")}

    def declined(ctx: WorkflowContext[Any]) -> None:
        raise FatalError("declined")

    engine.execute_sync(
        create_workflow("ok")
        .step("pay", flaky, retries=1)
        .step("skip", lambda ctx: 1, when=lambda ctx: False)
        .commit("ship", lambda ctx: "shipped"),
        {"order": "A"},
        id="ok-1",
    )
    engine.execute_sync(create_workflow("bad").step("pay", declined), id="bad-1")
    engine.execute_sync(
        create_workflow("saga")
        .step("hold", lambda ctx: 1, compensate=lambda ctx: None)
        .step("pay", declined),
        id="saga-1",
    )
    engine.execute_sync(create_workflow("wait").step("ask", lambda ctx: Flux.wait("go")), id="wait-1")


def test_a_trace_file_holds_one_camel_case_event_per_line(tmp_path: Path) -> None:
    path = tmp_path / "nested" / "dir" / "trace.ndjson"
    with FluxEngine(
        trace=JsonFileTraceSink(path), default_backoff=flux.Backoff(initial=0, jitter=0)
    ) as engine:
        _mixed_runs(engine)
    events = _read(path)
    assert events
    started = time.time() * 1000
    for event in events:
        assert event["v"] == 1
        assert event["type"] in TYPES
        assert all(CAMEL.match(key) for key in event), event
        assert isinstance(event["workflowId"], str) and isinstance(event["workflowName"], str)
        assert isinstance(event["timestamp"], (int, float)) and 1e12 < event["timestamp"] <= started
    by_run: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for event in events:
        by_run[event["workflowId"]].append(event)
    assert set(by_run) == {"ok-1", "bad-1", "saga-1", "wait-1"}
    for run_events in by_run.values():
        assert [e["seq"] for e in run_events] == list(range(1, len(run_events) + 1))
        assert run_events[0]["type"] == "workflow:start"
    assert by_run["ok-1"][-1]["type"] == "workflow:complete"
    assert by_run["bad-1"][-1]["type"] == "workflow:error"
    assert by_run["saga-1"][-1]["type"] == "workflow:error"
    assert by_run["wait-1"][-1]["type"] == "step:suspend"

    ok = by_run["ok-1"]
    assert [e["type"] for e in ok] == [
        "workflow:start",
        "step:start",
        "step:retry",
        "step:start",
        "step:complete",
        "step:skipped",
        "step:start",
        "step:complete",
        "workflow:complete",
    ]
    assert ok[0]["input"] == {"order": "A"}
    assert ok[0]["meta"]["steps"] == [
        {"name": "pay", "commit": False},
        {"name": "skip", "commit": False},
        {"name": "ship", "commit": True},
    ]
    retry = ok[2]
    assert (retry["stepName"], retry["attempt"], retry["error"], retry["errorType"]) == (
        "pay",
        1,
        "blip",
        "ConnectionError",
    )
    complete = ok[4]
    assert complete["output"]["paid"] is True
    assert complete["data"]["amount"] == {"__flux_type__": "decimal", "value": "9.90"}
    assert (complete["stepIndex"], complete["attempt"], complete["commit"]) == (0, 2, False)
    assert ok[7]["commit"] is True and ok[7]["output"] == "shipped"
    assert ok[-1]["status"] == "completed" and ok[-1]["duration"] >= 0
    assert [e["type"] for e in by_run["saga-1"]][-5:] == [
        "step:error",
        "workflow:rollback_start",
        "step:compensate",
        "workflow:rollback_complete",
        "workflow:error",
    ]
    error = by_run["bad-1"][-1]
    assert (error["status"], error["error"], error["errorType"], error["stepName"]) == (
        "failed",
        "declined",
        "FatalError",
        "pay",
    )


def test_seq_goes_on_across_processes_that_share_the_file(make_engine: EngineFactory, tmp_path: Path) -> None:
    path = tmp_path / "trace.ndjson"
    flow = create_workflow("wait").step("ask", lambda ctx: Flux.wait("go")).step("end", lambda ctx: 1)
    first = make_engine(trace=JsonFileTraceSink(path))
    first.execute_sync(flow, id="W-1")
    first.close_sync()
    second = make_engine(trace=JsonFileTraceSink(path, reset=False))
    assert second.signal_sync(flow, "W-1", "go").status is RunStatus.COMPLETED
    second.close_sync()
    events = _read(path)
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
    assert [e["type"] for e in events][-1] == "workflow:complete"
    assert "signal:received" in [e["type"] for e in events]


def test_seq_is_unique_per_run_across_signal_resume_and_retry_step(make_engine: EngineFactory) -> None:
    sink = MemoryTraceSink()
    engine = make_engine(trace=sink)
    broken = {"b": True}

    def b(ctx: WorkflowContext[Any]) -> None:
        if broken["b"]:
            raise FatalError("b is broken")

    flow = (
        create_workflow("seq").step("ask", lambda ctx: Flux.wait("go")).step("b", b).step("c", lambda ctx: 1)
    )
    engine.execute_sync(flow, id="S-1")  # ends with step:suspend
    engine.signal_sync(flow, "S-1", "go")  # ends with workflow:error
    broken["b"] = False
    engine.resume_sync(flow, "S-1")  # ends with workflow:complete
    engine.retry_step_sync(flow, "S-1", "c")
    kinds = [e["type"] for e in sink.events]
    assert kinds.count("workflow:error") == 1 and kinds.count("workflow:complete") == 2
    assert [e["seq"] for e in sink.events] == list(range(1, len(sink.events) + 1))


def test_a_resume_is_traced_with_where_it_starts_and_why(make_engine: EngineFactory) -> None:
    sink = MemoryTraceSink()
    engine = make_engine(trace=sink)
    broken = {"b": True}

    def b(ctx: WorkflowContext[Any]) -> None:
        if broken["b"]:
            raise FatalError("b is broken")

    flow = create_workflow("res").step("a", lambda ctx: 1).step("b", b).version("v3")
    engine.execute_sync(flow, id="RE-1")
    broken["b"] = False
    engine.resume_sync(flow, "RE-1")
    [resume] = [e for e in sink.events if e["type"] == "workflow:resume"]
    assert resume["meta"]["fromStep"] == "b"
    assert resume["meta"]["reason"] == "resume"
    assert resume["meta"]["version"] == "v3"
    after = sink.events[sink.events.index(resume) + 1 :]
    assert [(e["type"], e.get("stepName")) for e in after] == [
        ("step:start", "b"),
        ("step:complete", "b"),
        ("workflow:complete", None),
    ]


def test_reset_true_empties_the_file_and_reset_false_appends(tmp_path: Path) -> None:
    path = tmp_path / "trace.ndjson"
    path.write_text('{"type":"old"}\n')
    sink = JsonFileTraceSink(path, reset=False)
    sink.emit({"type": "appended"})
    sink.close()
    assert [e["type"] for e in _read(path)] == ["old", "appended"]
    sink = JsonFileTraceSink(path, reset=True)
    assert path.read_text() == ""
    sink.emit({"type": "fresh"})
    sink.close()
    assert [e["type"] for e in _read(path)] == ["fresh"]


def test_events_reach_the_file_without_close(tmp_path: Path) -> None:
    path = tmp_path / "trace.ndjson"
    sink = JsonFileTraceSink(path)
    try:
        sink.emit({"type": "workflow:start", "workflowId": "x", "n": "é"})
        assert _wait_for_lines(path, 1) == [{"type": "workflow:start", "workflowId": "x", "n": "é"}]
        sink.emit({"type": "step:start", "workflowId": "x"})
        sink.emit({"type": "step:complete", "workflowId": "x"})
        assert [e["type"] for e in _wait_for_lines(path, 3)] == [
            "workflow:start",
            "step:start",
            "step:complete",
        ]
    finally:
        sink.close()


def test_an_engine_run_reaches_the_file_without_close(tmp_path: Path) -> None:
    path = tmp_path / "trace.ndjson"
    sink = JsonFileTraceSink(path)
    engine = FluxEngine(trace=sink)
    try:
        engine.execute_sync(create_workflow("live").step("a", lambda ctx: 1), id="L-1")
        events = _wait_for_lines(path, 4)
        assert [e["type"] for e in events] == [
            "workflow:start",
            "step:start",
            "step:complete",
            "workflow:complete",
        ]
    finally:
        engine.close_sync()


def test_close_is_idempotent_and_later_events_are_dropped(tmp_path: Path) -> None:
    path = tmp_path / "trace.ndjson"
    sink = JsonFileTraceSink(path)
    sink.emit({"type": "a"})
    sink.close()
    sink.close()
    sink.emit({"type": "b"})
    assert [e["type"] for e in _read(path)] == ["a"]


def test_values_json_cannot_hold_are_written_as_text(tmp_path: Path) -> None:
    path = tmp_path / "trace.ndjson"
    sink = JsonFileTraceSink(path)
    sink.emit({"type": "x", "when": Decimal("1.5"), "what": {1, 2}.__class__})
    sink.close()
    [event] = _read(path)
    assert event["when"] == "1.5"


_WRITER = textwrap.dedent(
    """
    import sys
    from flux import JsonFileTraceSink

    path, name, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
    sink = JsonFileTraceSink(path, reset=False)
    for i in range(count):
        sink.emit({"type": "step:complete", "workflowId": name, "seq": i, "pad": name * (i % 7000)})
    if sys.argv[4] == "close":
        sink.close()
    """
)


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}


def test_two_processes_appending_to_one_file_write_whole_lines(tmp_path: Path) -> None:
    path = tmp_path / "shared.ndjson"
    script = tmp_path / "writer.py"
    script.write_text(_WRITER)
    count = 400
    procs = [
        subprocess.Popen(
            [sys.executable, str(script), str(path), name, str(count), "close"],
            env=_env(),
            stderr=subprocess.PIPE,
            text=True,
        )
        for name in ("A", "B")
    ]
    for proc in procs:
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
    events = _read(path)  # every line parses: none was split or interleaved
    assert len(events) == 2 * count
    for name in ("A", "B"):
        mine = [e for e in events if e["workflowId"] == name]
        assert [e["seq"] for e in mine] == list(range(count))
        assert all(e["pad"] == name * (e["seq"] % 7000) for e in mine)


def test_a_process_that_exits_without_close_still_writes_its_events(tmp_path: Path) -> None:
    path = tmp_path / "exit.ndjson"
    script = tmp_path / "writer.py"
    script.write_text(_WRITER)
    proc = subprocess.run(
        [sys.executable, str(script), str(path), "C", "5", "no-close"],
        env=_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert [e["seq"] for e in _read(path)] == [0, 1, 2, 3, 4]


class BrokenSink:
    def __init__(self) -> None:
        self.calls = 0

    def emit(self, event: dict[str, Any]) -> None:
        self.calls += 1
        raise OSError("disk full")

    def close(self) -> None:
        return None


def test_a_sink_that_raises_never_fails_a_run(
    make_engine: EngineFactory, caplog: pytest.LogCaptureFixture
) -> None:
    sink = BrokenSink()
    engine = make_engine(trace=sink, logger=None)

    def fail(ctx: WorkflowContext[Any]) -> None:
        raise FatalError("no")

    with caplog.at_level(logging.ERROR, logger="flux"):
        ok = engine.execute_sync(create_workflow("t").step("a", lambda ctx: 1), id="BS-1")
        bad = engine.execute_sync(
            create_workflow("t2").step("a", lambda ctx: 1, compensate=lambda ctx: None).step("b", fail),
            id="BS-2",
        )
    assert ok.status is RunStatus.COMPLETED and ok.outputs == {"a": 1}
    assert bad.status is RunStatus.ROLLED_BACK
    assert make_engine().get_sync("BS-1").status is RunStatus.COMPLETED
    assert sink.calls > 0
    failures = [r for r in caplog.records if "trace sink" in r.getMessage()]
    assert failures and all("disk full" in r.getMessage() for r in failures)


def test_a_file_sink_that_cannot_write_is_logged(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "trace.ndjson"
    sink = JsonFileTraceSink(path)
    fd = sink._fd
    assert fd is not None
    os.close(fd)
    sink._fd = os.open(os.devnull, os.O_RDONLY)  # writes now fail with EBADF
    with caplog.at_level(logging.ERROR, logger="flux"):
        sink.emit({"type": "x"})
        sink.close()
    assert any("failed to write" in r.getMessage() for r in caplog.records)


def test_the_sinks_satisfy_the_protocol(tmp_path: Path) -> None:
    file_sink = JsonFileTraceSink(tmp_path / "t.ndjson")
    try:
        assert isinstance(file_sink, FluxTraceSink)
        assert isinstance(MemoryTraceSink(), FluxTraceSink)
    finally:
        file_sink.close()


def test_memory_sink_keeps_events_in_order(memory_engine: FluxEngine) -> None:
    sink = MemoryTraceSink()
    memory_engine.trace = sink
    memory_engine.execute_sync(create_workflow("m").step("a", lambda ctx: 1), id="m")
    assert [e["seq"] for e in sink.events] == [1, 2, 3, 4]
    assert sink.events[0]["input"] is None


# ---------------------------------------------------------------- a writer that survives anything


def test_the_default_appends_to_what_the_file_holds(tmp_path: Path) -> None:
    path = tmp_path / "trace.ndjson"
    path.write_text('{"type":"first run"}\n')
    sink = JsonFileTraceSink(path)
    sink.emit({"type": "second run"})
    sink.close()
    assert [e["type"] for e in _read(path)] == ["first run", "second run"]


class _Unprintable:
    def __str__(self) -> str:
        raise RuntimeError("no text for this one")


def _circular() -> dict[str, Any]:
    loop: dict[str, Any] = {}
    loop["self"] = loop
    return loop


@pytest.mark.parametrize(
    ("value", "back"),
    [
        ("\ud800 alone", "\ud800 alone"),  # a lone surrogate: UTF-8 cannot hold it
        ("nul \x00 byte", "nul \x00 byte"),
        (10**5000, None),  # past Python's int-to-text limit
        (_circular(), None),
        (_Unprintable(), None),
    ],
    ids=["surrogate", "nul", "huge-int", "circular", "unprintable"],
)
def test_a_value_the_file_cannot_hold_never_stops_the_writer(
    tmp_path: Path, value: Any, back: Any, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "trace.ndjson"
    sink = JsonFileTraceSink(path)
    caplog.set_level(logging.WARNING, logger="flux")
    try:
        sink.emit({"type": "step:complete", "workflowId": "W", "seq": 1, "output": value})
        sink.emit({"type": "workflow:complete", "workflowId": "W", "seq": 2})
        events = _wait_for_lines(path, 2)  # the writer thread is still alive
        sink.emit({"type": "later", "workflowId": "W", "seq": 3})
        assert _wait_for_lines(path, 3)[2]["type"] == "later"
    finally:
        sink.close()
    assert [e["seq"] for e in _read(path)] == [1, 2, 3]
    if back is not None:
        assert events[0]["output"] == back
    else:  # replaced by a text that says what it was, and logged
        assert isinstance(events[0]["output"], str) and type(value).__name__ in events[0]["output"]
        assert any("'output' replaced" in r.getMessage() and "'W'" in r.getMessage() for r in caplog.records)


def test_a_raw_value_with_a_lone_surrogate_is_written_escaped(tmp_path: Path) -> None:
    path = tmp_path / "trace.ndjson"
    sink = JsonFileTraceSink(path)
    sink.emit_raw({"type": "step:complete", "workflowId": "W"}, {"output": '"\ud83d half"'})
    sink.emit({"type": "next", "workflowId": "W"})
    sink.close()
    assert [e.get("output") for e in _read(path)] == ["\ud83d half", None]


def test_a_torn_last_line_is_not_glued_to_the_next_writers_first_event(tmp_path: Path) -> None:
    path = tmp_path / "trace.ndjson"
    path.write_bytes(b'{"type":"whole","workflowId":"W"}\n{"type":"torn","workflowId":"W","output":"abc')
    sink = JsonFileTraceSink(path)
    sink.emit({"type": "after", "workflowId": "W"})
    sink.close()
    lines = path.read_bytes().split(b"\n")
    assert lines[-1] == b""
    assert json.loads(lines[0])["type"] == "whole"
    assert lines[1].startswith(b'{"type":"torn"')
    assert json.loads(lines[2]) == {"type": "after", "workflowId": "W"}


_TORN_WRITER = textwrap.dedent(
    """
    import os, resource, signal, sys
    from flux import JsonFileTraceSink

    # A write that crosses the file size limit is cut short where the limit falls, as a
    # write is when its process dies inside it; the process then waits to be killed.
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    path, limit = sys.argv[1], int(sys.argv[2])
    sink = JsonFileTraceSink(path)
    sink.emit({"type": "step:start", "workflowId": "K", "seq": 1})
    sink.flush()
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    sink.emit({"type": "step:complete", "workflowId": "K", "seq": 2, "output": "x" * (4 * limit)})
    sink.flush()
    print(os.path.getsize(path), flush=True)
    sys.stdin.read()
    """
)


@pytest.mark.skipif(sys.platform == "win32", reason="RLIMIT_FSIZE and SIGKILL are POSIX")
def test_a_writer_killed_inside_a_large_write_leaves_a_line_the_next_one_ends(tmp_path: Path) -> None:
    import signal

    from viewer.trace import TraceIndex

    path = tmp_path / "trace.ndjson"
    script = tmp_path / "torn.py"
    script.write_text(_TORN_WRITER)
    limit = 1 << 20
    proc = subprocess.Popen(
        [sys.executable, str(script), str(path), str(limit)],
        env=_env(),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    size = proc.stdout.readline()
    proc.send_signal(signal.SIGKILL)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == -signal.SIGKILL, err
    assert int(size) == limit and path.stat().st_size == limit
    assert not path.read_bytes().endswith(b"\n")  # torn inside the second event

    sink = JsonFileTraceSink(path)  # the next process to write
    sink.emit({"type": "workflow:resume", "workflowId": "K", "seq": 3})
    sink.emit({"type": "step:start", "workflowId": "K", "seq": 4})
    sink.close()
    lines = path.read_bytes().split(b"\n")
    assert lines[-1] == b"" and len(lines) == 5
    parsed = []
    for line in lines[:-1]:
        try:
            parsed.append(json.loads(line)["seq"])
        except ValueError:
            parsed.append("torn")
    assert parsed == [1, "torn", 3, 4]

    index = TraceIndex()
    index.feed(path.read_bytes())
    assert index.malformed_count == 1 and index.malformed[0].line == 2
    assert index.runs["K"].events == 3 and index.pending == 0
