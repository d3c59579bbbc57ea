from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

WORKER = Path(__file__).with_name("worker.py")
# The worker imports this checkout's flux, not whichever one the environment has installed.
PYTHONPATH = os.pathsep.join([str(Path(__file__).parents[2]), os.environ.get("PYTHONPATH", "")])


@dataclass
class Worker:
    """Starts worker.py processes on one database and one effects file."""

    db: Path
    effects: Path
    procs: list[subprocess.Popen[str]]

    def start(self, mode: str, *args: str, **env: str) -> subprocess.Popen[str]:
        proc = subprocess.Popen(
            [sys.executable, str(WORKER), str(self.db), str(self.effects), mode, *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, "PYTHONPATH": PYTHONPATH, **env},
        )
        self.procs.append(proc)
        return proc

    def run(self, mode: str, *args: str, **env: str) -> list[str]:
        proc = self.start(mode, *args, **env)
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
        return out.splitlines()

    def start_and_kill_when_blocked(self, mode: str, *args: str, **env: str) -> None:
        """Run until the worker says it is blocked at BLOCK_AT, then SIGKILL it."""
        proc = self.start(mode, *args, **env)
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.strip() == "blocked", (line, proc.stderr.read() if proc.stderr else "")
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        assert proc.returncode == -signal.SIGKILL

    def effects_count(self) -> Counter[tuple[str, str, str]]:
        if not self.effects.exists():
            return Counter()
        return Counter(tuple(line.split()[:3]) for line in self.effects.read_text().splitlines())  # type: ignore[misc]


@pytest.fixture
def worker(tmp_path: Path) -> Iterator[Worker]:
    w = Worker(tmp_path / "flux.db", tmp_path / "effects.log", [])
    yield w
    for proc in w.procs:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()
