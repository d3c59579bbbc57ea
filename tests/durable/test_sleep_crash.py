"""A run sleeping 2 s whose process is SIGKILLed: `flux worker` started in a new process
wakes it not before its wake time and within a second after it (issue 10)."""

from __future__ import annotations

import os
import selectors
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from ..services import needs_stored_identity
from .conftest import PYTHONPATH

SLEEPER = Path(__file__).with_name("sleeper.py")
ENV = {**os.environ, "PYTHONPATH": os.pathsep.join([str(SLEEPER.parent), PYTHONPATH])}


def read_line(proc: subprocess.Popen[str], timeout: float = 60.0) -> str:
    """The process's next line of output (an event awaited, bounded so a bug cannot hang)."""
    assert proc.stdout is not None
    with selectors.DefaultSelector() as sel:
        sel.register(proc.stdout, selectors.EVENT_READ)
        if not sel.select(timeout):
            proc.kill()
            raise AssertionError(f"no output within {timeout}s; stderr: {proc.communicate()[1]}")
    return proc.stdout.readline().strip()


@pytest.mark.parametrize("inline", ["0", "5"], ids=["suspended", "sleeping-in-process"])
@needs_stored_identity
def test_a_sleeping_run_whose_process_was_killed_wakes_on_time_in_a_new_worker(
    tmp_path: Path, inline: str
) -> None:
    db = tmp_path / "flux.db"
    procs: list[subprocess.Popen[str]] = []
    try:
        first = subprocess.Popen([sys.executable, str(SLEEPER), str(db), "nap-1", inline], env=ENV,
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
        procs.append(first)
        line = read_line(first)
        assert line.startswith("sleeping "), line
        wake_at = int(line.split()[1]) / 1000
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=30)
        worker = subprocess.Popen(
            [sys.executable, "-m", "flux.cli", "worker", "sleeper:flow", "--storage", f"sqlite:///{db}",
             "--poll", "0.2"],
            env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        procs.append(worker)
        woke = read_line(worker)
        assert woke.startswith("woke nap-1 "), woke
        at = float(woke.split()[2])
        assert at >= wake_at, f"woke {wake_at - at:.3f}s before its wake time"
        assert at - wake_at <= 1.0, f"woke {at - wake_at:.3f}s after its wake time"
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM if proc is not procs[0] else signal.SIGKILL)
                try:
                    proc.communicate(timeout=30)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.communicate()
            for stream in (proc.stdout, proc.stderr):
                if stream is not None:
                    stream.close()
