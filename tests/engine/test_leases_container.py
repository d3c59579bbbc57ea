"""Containers that share a hostname do not take each other's live runs.

The holder runs in a pid namespace of its own (`unshare --pid --fork --mount-proc`, as a
container does), on a SQLite file shared with a process outside that has the same hostname.
Its pid is chosen to be one that does not exist outside, so that hostname + pid would call
it dead. The process outside calls `recover()`: the run must stay with its holder.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[2]
HELPER = ROOT / "tests" / "durable" / "hold_worker.py"
HANG_GUARD = 120.0  # seconds: only so that a broken engine fails instead of hanging

# Run as pid 1 of the new namespace: fork until a child gets pid TARGET, exec the worker in
# it, and wait for it (the namespace ends with its pid 1).
LAUNCHER = r"""
import os, sys
target, argv = int(sys.argv[1]), sys.argv[2:]
while True:
    try:
        with open("/proc/sys/kernel/ns_last_pid", "w") as f:
            f.write(str(target - 1))
    except OSError:
        pass  # not writable here: forking walks the pids up to the target anyway
    pid = os.fork()
    if pid == 0:
        if os.getpid() == target:
            os.execv(argv[0], argv)
        os._exit(0)
    status = os.waitpid(pid, 0)[1]
    if pid == target:
        sys.exit(os.waitstatus_to_exitcode(status))
    if pid > target:
        sys.exit("could not get pid %d in the new namespace" % target)
"""


def _unshare_or_skip() -> list[str]:
    if not sys.platform.startswith("linux"):
        pytest.skip("pid namespaces are a Linux feature")
    unshare = shutil.which("unshare")
    if unshare is None:
        pytest.skip("the `unshare` command (util-linux) is not installed")
    cmd = [unshare, "--pid", "--fork", "--mount-proc", "--kill-child"]
    probe = subprocess.run([*cmd, "true"], capture_output=True, text=True)
    if probe.returncode != 0:
        pytest.skip(f"this machine refuses a new pid namespace ({' '.join(cmd)}): {probe.stderr.strip()}")
    return cmd


def _free_pid() -> int:
    """A pid that no process has outside the namespace."""
    return next(p for p in range(300, 30_000) if not os.path.exists(f"/proc/{p}"))


@pytest.fixture
def procs() -> Iterator[list[subprocess.Popen[str]]]:
    """Processes started in a session of their own: the whole namespace is killed at the end."""
    started: list[subprocess.Popen[str]] = []
    yield started
    for proc in started:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()


def test_a_holder_in_another_pid_namespace_keeps_its_run(
    tmp_path: Path, procs: list[subprocess.Popen[str]]
) -> None:
    unshare = _unshare_or_skip()
    db, effects, gate = tmp_path / "flux.db", tmp_path / "effects.log", tmp_path / "release"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}

    def worker(mode: str) -> list[str]:
        # A lease long enough that only the holder's identity can free the run in this test.
        return [sys.executable, str(HELPER), str(db), str(effects), "30", mode, "r1", str(gate)]

    target = _free_pid()
    inside = subprocess.Popen(
        [*unshare, sys.executable, "-c", LAUNCHER, str(target), *worker("async")],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, start_new_session=True,
    )  # fmt: skip
    procs.append(inside)
    assert inside.stdout is not None
    line = inside.stdout.readline()
    assert line.strip() == "blocked", (line, inside.stderr.read() if inside.stderr else "")
    assert not os.path.exists(f"/proc/{target}"), "the holder's pid exists outside its namespace"

    outside = subprocess.Popen(
        worker("recover"), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
        start_new_session=True,
    )  # fmt: skip
    procs.append(outside)

    def starts() -> list[str]:
        return [line.split()[3] for line in effects.read_text().splitlines() if "wait start" in line]

    deadline = time.monotonic() + HANG_GUARD
    while outside.poll() is None:
        assert starts() == [str(target)], "the process outside took the live run"
        assert time.monotonic() < deadline, "recover() never returned"
        time.sleep(0.01)
    out, err = outside.communicate()
    assert outside.returncode == 0, err
    assert out.splitlines() == ["exit"], "the process outside took the live run"

    gate.touch()
    out, err = inside.communicate(timeout=HANG_GUARD)
    assert out.splitlines() == ["r1 completed", "exit"], err
    events = [line.split()[1:] for line in effects.read_text().splitlines()]
    assert events == [
        ["wait", "start", str(target)],
        ["wait", "done", str(target)],
        ["after", "start", str(target)],
        ["after", "done", str(target)],
    ]


def test_the_pid_namespace_is_part_of_the_identity() -> None:
    unshare = _unshare_or_skip()
    code = "from flux.leases import process_identity; print(process_identity())"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    inside = subprocess.run([*unshare, sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert inside.returncode == 0, inside.stderr
    from flux.leases import parse_identity, process_identity

    theirs, ours = parse_identity(inside.stdout.strip()), parse_identity(process_identity())
    assert theirs is not None and ours is not None
    assert theirs.boot == ours.boot
    assert theirs.pid_ns != ours.pid_ns
