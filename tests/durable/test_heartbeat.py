"""Leases between real processes on one SQLite file: a holder whose event loop is blocked
keeps its run, and a holder whose lease is taken over stops at once (SPEC §5)."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

HELPER = Path(__file__).with_name("hold_worker.py")
ROOT = Path(__file__).parents[2]
LEASE = 0.6
HANG_GUARD = 120.0  # seconds: only so that a broken engine fails instead of hanging


@dataclass
class Procs:
    tmp: Path
    procs: list[subprocess.Popen[str]] = field(default_factory=list)

    @property
    def db(self) -> Path:
        return self.tmp / "flux.db"

    @property
    def effects(self) -> Path:
        return self.tmp / "effects.log"

    def start(self, mode: str, run_id: str, gate: Path) -> subprocess.Popen[str]:
        # This checkout's flux, not whichever one the environment has installed.
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
        args = [sys.executable, str(HELPER), self.db, self.effects, str(LEASE), mode, run_id, gate]
        proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
        self.procs.append(proc)
        return proc

    def effects_of(self, run_id: str) -> list[tuple[str, str, int]]:
        if not self.effects.exists():
            return []
        lines = [line.split() for line in self.effects.read_text().splitlines()]
        return [(step, event, int(pid)) for rid, step, event, pid in lines if rid == run_id]

    def row(self, run_id: str) -> tuple[Any, ...]:
        with closing(sqlite3.connect(self.db)) as conn, conn:
            run = conn.execute("SELECT * FROM flux_runs WHERE id=?", (run_id,)).fetchone()
            steps = conn.execute("SELECT * FROM flux_steps WHERE run_id=? ORDER BY idx", (run_id,)).fetchall()
        return run, steps

    def lease(self, run_id: str) -> tuple[str, float]:
        with closing(sqlite3.connect(self.db)) as conn, conn:
            owner, expires = conn.execute(
                "SELECT lease_owner, lease_expires_at FROM flux_runs WHERE id=?", (run_id,)
            ).fetchone()
        return owner, expires


@pytest.fixture
def procs(tmp_path: Path) -> Iterator[Procs]:
    p = Procs(tmp_path)
    yield p
    for proc in p.procs:
        if proc.poll() is None:
            proc.kill()
        proc.communicate()


def wait_until_blocked(proc: subprocess.Popen[str]) -> None:
    assert proc.stdout is not None
    line = proc.stdout.readline()
    assert line.strip() == "blocked", (line, proc.stderr.read() if proc.stderr else "")


def poll(what: str, done: Any) -> Any:
    deadline = time.monotonic() + HANG_GUARD
    while not (value := done()):
        assert time.monotonic() < deadline, f"never happened: {what}"
        time.sleep(0.01)
    return value


def test_a_holder_whose_loop_is_blocked_keeps_its_run(procs: Procs) -> None:
    """A runs a sync step without timeout that blocks its event loop for several lease
    periods; B keeps calling recover() and work(burst=True). B never takes the run, and the
    step runs exactly once."""
    gate_a, gate_b = procs.tmp / "release-a", procs.tmp / "release-b"
    a = procs.start("sync", "r1", gate_a)
    wait_until_blocked(a)
    holder, first_expiry = procs.lease("r1")
    b = procs.start("take", "-", gate_b)
    tries = Path(f"{procs.effects}.tries")

    def b_had_its_chances() -> bool:
        """B tried after A's first lease (had it not been renewed) was 3 periods over."""
        assert {pid for _, _, pid in procs.effects_of("r1")} == {a.pid}, "B took the run"
        lines = tries.read_text().splitlines() if tries.exists() else []
        return any(float(line.split()[1]) > first_expiry + 3 * LEASE for line in lines)

    poll("B tried well after A's first lease expiry", b_had_its_chances)
    owner, expiry = procs.lease("r1")
    assert owner == holder and expiry > first_expiry + 2 * LEASE  # renewed while A was blocked
    gate_b.touch()
    out_b, err_b = b.communicate(timeout=HANG_GUARD)
    assert out_b.splitlines() == ["exit"], err_b  # it recovered and worked nothing
    gate_a.touch()
    out_a, err_a = a.communicate(timeout=HANG_GUARD)
    assert out_a.splitlines() == ["r1 completed", "exit"], err_a
    assert procs.effects_of("r1") == [
        ("wait", "start", a.pid),
        ("wait", "done", a.pid),
        ("after", "start", a.pid),
        ("after", "done", a.pid),
    ]


def test_a_holder_whose_lease_is_taken_stops_at_once_and_saves_nothing(procs: Procs) -> None:
    """Another owner is written into the run's row while A's step is in flight: A stops at
    once (the step is never released), its next step never starts, nothing more is saved."""
    a = procs.start("async", "r2", procs.tmp / "never")
    wait_until_blocked(a)
    with closing(sqlite3.connect(procs.db)) as conn, conn:
        conn.execute(
            "UPDATE flux_runs SET lease_owner='thief', lease_expires_at=? WHERE id='r2'",
            (time.time() + 3600,),
        )
    taken = procs.row("r2")
    out, err = a.communicate(timeout=HANG_GUARD)
    first, *rest = out.splitlines()
    assert first.startswith("LeaseLostError run 'r2' (hold)"), (out, err)
    assert rest == ["exit"]
    assert procs.effects_of("r2") == [("wait", "start", a.pid)]
    assert procs.row("r2") == taken
