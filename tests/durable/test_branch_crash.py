"""SIGKILL in the middle of a parallel group and of a map (SPEC §11): after recovery only the
unfinished branches and items run; no completed branch, item or commit runs twice."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from ..services import postgres_url_or_skip
from .conftest import PYTHONPATH

CHILD = Path(__file__).with_name("branch_worker.py")


def _child(storage: str, effects: Path, flow: str, mode: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, str(CHILD), storage, str(effects), flow, mode],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": PYTHONPATH},
    )


def _kill_at_go(storage: str, effects: Path, flow: str) -> int:
    proc = _child(storage, effects, flow, "run")
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.strip() == "go", (line, proc.stderr.read() if proc.stderr else "")
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()
    assert proc.returncode == -signal.SIGKILL
    return proc.pid


def _recover(storage: str, effects: Path, flow: str) -> dict[str, object]:
    rec = _child(storage, effects, flow, "recover")
    out, err = rec.communicate(timeout=120)
    assert rec.returncode == 0, err
    lines = out.splitlines()
    assert lines[-1] == "recovered" and len(lines) == 2, out
    return json.loads(lines[0])  # type: ignore[no-any-return]


def _calls(effects: Path) -> list[tuple[str, int]]:
    return [(name, int(pid)) for name, pid in (ln.split() for ln in effects.read_text().splitlines())]


@pytest.fixture(params=["sqlite", "postgres"])
def storage(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return str(tmp_path / "flux.db")
    return postgres_url_or_skip(request)  # a fresh schema


def test_a_group_killed_in_the_middle_runs_only_its_unfinished_branch(storage: str, tmp_path: Path) -> None:
    effects = tmp_path / "effects.log"
    killed = _kill_at_go(storage, effects, "group")
    outcome = _recover(storage, effects, "group")
    assert outcome["status"] == "completed", outcome
    assert outcome["data"] == {"charge": True, "mail": True, "stock": True}
    calls = _calls(effects)
    by_name = Counter(name for name, _ in calls)
    assert by_name["charge"] == 1  # the commit: never twice
    assert by_name["stock"] == 1  # completed before the kill: not again
    assert by_name["prep"] == 1
    assert by_name["mail"] == 2  # cut short by the kill: run again, once
    assert next(pid for name, pid in calls if name == "mail") == killed


def test_a_map_killed_in_the_middle_runs_only_its_unfinished_items(storage: str, tmp_path: Path) -> None:
    effects = tmp_path / "effects.log"
    killed = _kill_at_go(storage, effects, "map")
    outcome = _recover(storage, effects, "map")
    assert outcome["status"] == "completed", outcome
    assert outcome["outputs"]["each"] == [i * 10 for i in range(10)]  # type: ignore[index]
    calls = _calls(effects)
    before = {name for name, pid in calls if pid == killed}
    after = [name for name, pid in calls if pid != killed]
    # items 0..5 were stored as completed before the kill: none runs again
    assert not {f"each[{i}]" for i in range(6)} & set(after)
    assert "each[6]" in before and "each[6]" in after  # the blocked one runs again
    assert Counter(after)["each[6]"] == 1
    assert set(after) - {"done"} <= {f"each[{i}]" for i in range(6, 10)}
    assert {f"each[{i}]" for i in range(10)} <= before | set(after)
