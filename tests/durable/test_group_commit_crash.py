"""Group commit under SIGKILL: 64 runs at once in one process, killed while batches of their
saves are in flight, are recovered by a new process from their last durable step, and no
commit runs twice (SPEC §5, issue 12)."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from flux import FluxEngine, RunStatus, SQLiteStorage, StepStatus, WorkflowStorage
from flux.storage import open_storage

from ..services import postgres_url_or_skip
from .conftest import PYTHONPATH

CHILD = Path(__file__).with_name("group_worker.py")
RUNS = [f"g-{i}" for i in range(64)]
STEPS = ("s1", "s2", "c3", "s4", "s5", "s6")


def _child(storage: str, effects: Path, mode: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, str(CHILD), storage, str(effects), mode],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": PYTHONPATH},
    )


def _open(storage: str) -> WorkflowStorage:
    return open_storage(storage) if "://" in storage else SQLiteStorage(storage)


def _stored(storage: str) -> dict[str, set[str] | None]:
    """Run id → the steps stored as completed (None: the run was never stored)."""

    async def read() -> dict[str, set[str] | None]:
        engine = FluxEngine(storage=_open(storage))
        try:
            out = {}
            for run_id in RUNS:
                run = await engine.storage.load_run(run_id)
                out[run_id] = (
                    None if run is None else {s.name for s in run.steps if s.status is StepStatus.COMPLETED}
                )
            return out
        finally:
            await engine.close()

    return asyncio.run(read())


def _calls(effects: Path) -> list[tuple[str, str, int]]:
    out = []
    for line in effects.read_text().splitlines():
        run_id, step, _, pid = line.split()
        out.append((run_id, step, int(pid)))
    return out


@pytest.fixture(params=["sqlite", "postgres"])
def storage(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return str(tmp_path / "flux.db")
    return postgres_url_or_skip(request)


def test_kill_in_the_middle_of_batches_of_64_runs(storage: str, tmp_path: Path) -> None:
    effects = tmp_path / "effects.log"
    proc = _child(storage, effects, "run")
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
    killed_pid = proc.pid
    stored = _stored(storage)
    # Killed in the middle: some steps are stored, and many runs are not finished.
    before = {run_id: done for run_id, done in stored.items() if done is not None}
    assert sum(map(len, before.values())) > 0
    assert sum(len(done) < len(STEPS) for done in before.values()) > 16

    rec = _child(storage, effects, "recover")
    out, err = rec.communicate(timeout=300)
    assert rec.returncode == 0, err
    # A run that was never stored left nothing to recover (nor any call of its handlers).
    assert not {run_id for run_id, done in stored.items() if done is None} & {c[0] for c in _calls(effects)}
    lines = out.splitlines()
    assert lines[-1] == "recovered"
    outcomes = {run_id: (status, error) for run_id, status, error in (ln.split() for ln in lines[:-1])}

    calls = _calls(effects)
    by_step = Counter((run_id, step) for run_id, step, _ in calls)
    recovery_calls = {(run_id, step) for run_id, step, pid in calls if pid != killed_pid}
    after = _stored(storage)
    for run_id in before:
        # From its last durable step: nothing stored as completed before the kill runs again.
        assert not {(run_id, s) for s in before[run_id]} & recovery_calls, run_id
        # No commit twice, whatever the kill interrupted.
        assert by_step[(run_id, "c3")] <= 1, run_id
        unfinished = len(before[run_id]) < len(STEPS)
        if not unfinished:
            continue
        # A run the kill cut short is recovered: completed, or failed because its commit
        # may have happened (its start stored, its end not: never called again).
        status, error = outcomes[run_id]
        if status == RunStatus.COMPLETED.value:
            assert after[run_id] == set(STEPS), run_id
        else:
            assert (status, error) == (RunStatus.FAILED.value, "CommitInterruptedError"), run_id
            assert "c3" not in before[run_id], run_id
