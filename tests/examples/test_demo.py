"""`flux dev --demo`: `viewer.demo.run_demo` runs every example into files of the demo's own."""

from __future__ import annotations

import asyncio
import importlib.util
import json
import os
import shlex
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

import flux
from viewer.demo import EXAMPLES, examples_dir, run_demo


def read(trace: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in trace.read_text(encoding="utf-8").splitlines() if line]


def test_demo_writes_every_feature_into_the_trace(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    trace = run_demo(tmp_path / "flux" / "trace.ndjson")
    assert trace == tmp_path / "flux" / "demo" / "trace.ndjson"
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
        "step:sleep",
    ):
        assert types[kind] >= 1, f"no {kind} in the demo trace: {types}"
    # Trials are left asleep for days; a run was started by a schedule.
    sleeps = [e for e in events if e["type"] == "step:sleep"]
    assert {e["workflowId"] for e in sleeps} == {"trial-ada-demo", "trial-bob-demo"}
    assert all(int(str(e["wakeAt"])) - int(str(e["timestamp"])) > 86400_000 for e in sleeps)
    scheduled = [e for e in events if e["type"] == "workflow:start" and "schedule" in e["meta"]]  # type: ignore[operator]
    assert len(scheduled) == 1 and scheduled[0]["meta"]["schedule"]["id"] == "digest-now-demo"  # type: ignore[index]
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
        "trial-reminders",
        "daily-digest",
        "checkout-parallel",
        "thumbnails-map",
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


def test_demo_leaves_the_users_trace_untouched(tmp_path: Path) -> None:
    mine = tmp_path / ".flux" / "trace.ndjson"
    mine.parent.mkdir()
    mine.write_text('{"type": "workflow:start", "workflowId": "mine", "workflowName": "mine"}\n')
    before = mine.read_bytes()
    demo = run_demo(mine)
    assert mine.read_bytes() == before
    first = read(demo)
    assert all(e["workflowId"] != "mine" for e in first)
    run_demo(mine)  # a second demo starts its own files over: the same runs, not twice as many
    assert len(read(demo)) == len(first)
    assert mine.read_bytes() == before


def test_the_waiting_run_is_approved_by_the_printed_command(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "examples").symlink_to(examples_dir())  # as from the checkout's root
    demo = run_demo(Path(".flux/trace.ndjson"))
    printed = capsys.readouterr().out.splitlines()
    command = printed[printed.index("  EXP-3-demo waits for its approval; approve it with:") + 1].strip()
    assert command.startswith("flux runs signal EXP-3-demo approval ")
    env = {**os.environ, "PYTHONPATH": str(Path(flux.__file__).resolve().parent.parent)}  # this flux
    done = subprocess.run(
        [sys.executable, "-m", "flux.cli", *shlex.split(command)[1:]],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "run EXP-3-demo  workflow expense-approval  status completed" in done.stdout
    received = [e for e in read(demo) if e["type"] == "signal:received"]
    assert "EXP-3-demo" in {e["workflowId"] for e in received}  # the dashboard sees it live


def test_demo_finds_the_examples() -> None:
    folder = examples_dir()
    assert sorted(EXAMPLES) == sorted(p.stem for p in folder.glob("*.py"))


def test_demo_skips_an_example_whose_package_is_missing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import viewer.demo

    monkeypatch.setitem(viewer.demo.NEEDS, "image_processing", ("no_such_package_for_flux", "x"))
    trace = run_demo(tmp_path / "trace.ndjson")
    out = capsys.readouterr().out
    assert "image_processing     skipped: needs no_such_package_for_flux (pip install x)" in out
    assert "image-processing" not in {e["workflowName"] for e in read(trace)}


def test_demo_runs_from_inside_an_event_loop(tmp_path: Path) -> None:
    async def caller() -> None:
        run_demo(tmp_path / "trace.ndjson")

    asyncio.run(caller())
    assert any(e["type"] == "step:suspend" for e in read(tmp_path / "demo" / "trace.ndjson"))
