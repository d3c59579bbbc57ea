"""`flux dev --demo`: `viewer.demo.run_demo` runs every example into one trace file."""

from __future__ import annotations

import asyncio
import importlib.util
import json
from collections import Counter
from pathlib import Path

import pytest

from viewer.demo import EXAMPLES, examples_dir, run_demo


def read(trace: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in trace.read_text(encoding="utf-8").splitlines() if line]


def test_demo_writes_every_feature_into_the_trace(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    trace = tmp_path / "flux" / "trace.ndjson"
    run_demo(trace)
    events = read(trace)
    types = Counter(e["type"] for e in events)
    for kind in (
        "step:retry",
        "step:skipped",
        "workflow:rollback_start",
        "step:compensate",
        "workflow:rollback_complete",
        "step:suspend",
        "signal:received",
        "workflow:resume",
        "workflow:complete",
        "workflow:error",
    ):
        assert types[kind] >= 1, f"no {kind} in the demo trace: {types}"
    ends = Counter(e["status"] for e in events if e["type"] == "workflow:rollback_complete")
    assert ends["rolled_back"] >= 1
    assert ends["rollback_failed"] >= 1
    # A run is left waiting: suspended with no signal after it.
    suspended = {e["workflowId"] for e in events if e["type"] == "step:suspend"}
    signalled = {e["workflowId"] for e in events if e["type"] == "signal:received"}
    assert suspended - signalled
    assert signalled <= suspended
    # A signal completed its run.
    completed = {e["workflowId"] for e in events if e["type"] == "workflow:complete"}
    assert signalled & completed

    names = {e["workflowName"] for e in events}
    expected = {
        "order-fulfillment",
        "event-routing",
        "multi-node-notify",
        "report-generation",
        "travel-booking",
        "invoice-delivery",
        "expense-approval",
    }
    if importlib.util.find_spec("PIL") is not None:
        expected.add("image-processing")
    assert names == expected

    out = capsys.readouterr().out
    assert "travel-booking" in out
    assert "rollback_failed" in out
    assert "expense-approval     3 runs: 2 completed, 1 suspended" in out
    # The files the examples write go next to the trace, not into the working folder.
    assert list((tmp_path / "flux" / "demo" / "reports").glob("*.csv"))


def test_demo_resets_the_trace(tmp_path: Path) -> None:
    trace = tmp_path / "trace.ndjson"
    trace.write_text('{"type": "stale", "workflowId": "old"}\n', encoding="utf-8")
    run_demo(trace)
    first = read(trace)
    assert all(e["workflowId"] != "old" for e in first)
    run_demo(trace)
    assert len(read(trace)) == len(first)  # emptied again, not appended


def test_demo_finds_the_examples() -> None:
    folder = examples_dir()
    assert sorted(EXAMPLES) == sorted(p.stem for p in folder.glob("*.py"))


def test_demo_skips_an_example_whose_package_is_missing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import viewer.demo

    monkeypatch.setitem(viewer.demo.NEEDS, "image_processing", ("no_such_package_for_flux", "x"))
    trace = tmp_path / "trace.ndjson"
    run_demo(trace)
    out = capsys.readouterr().out
    assert "image_processing     skipped: needs no_such_package_for_flux (pip install x)" in out
    assert "image-processing" not in {e["workflowName"] for e in read(trace)}


def test_demo_runs_from_inside_an_event_loop(tmp_path: Path) -> None:
    async def caller() -> None:
        run_demo(tmp_path / "trace.ndjson")

    asyncio.run(caller())
    assert any(e["type"] == "step:suspend" for e in read(tmp_path / "trace.ndjson"))
