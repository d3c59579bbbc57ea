"""Adversarial review of `.call` across real processes, on a shared SQLite file and on
PostgreSQL (SPEC §11, §5 durability, §9): a process SIGKILLed just before or just after the
write that ends a child, or between a child's creation and its parent's next write; two
workers racing on the same parents; a child ended by a signal from another process; a
parent cancelled from another process while its child runs inside the parent's process."""

from __future__ import annotations

import asyncio
import os
import selectors
import signal
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from flux import FluxEngine, FluxResult, FluxSilentLogger, RunStatus

from ..services import postgres_url_or_skip
from .call_review_flows import PARENT

ROOT = Path(__file__).resolve().parents[2]
SPEC = "tests.durable.call_review_flows"


class Procs:
    def __init__(self, url: str, effects: Path) -> None:
        self.url = url
        self.effects = effects
        self.procs: list[subprocess.Popen[str]] = []

    def start(self, mode: str, *args: str, **env: str) -> subprocess.Popen[str]:
        full = {**os.environ, "EFFECTS": str(self.effects), "KILL_AT": "", "BLOCK_AT": "", **env}
        full["PYTHONPATH"] = os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])
        proc = subprocess.Popen([sys.executable, "-m", SPEC, self.url, mode, *args], cwd=ROOT, env=full,
                                text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE)  # fmt: skip
        self.procs.append(proc)
        return proc

    def run(self, mode: str, *args: str, **env: str) -> None:
        proc = self.start(mode, *args, **env)
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err

    def run_killed(self, mode: str, *args: str, **env: str) -> None:
        """Run a process that SIGKILLs itself (KILL_AT) and check that it did."""
        proc = self.start(mode, *args, **env)
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == -signal.SIGKILL, (proc.returncode, err)

    @staticmethod
    def wait_blocked(proc: subprocess.Popen[str], timeout: float = 60.0) -> None:
        assert proc.stdout is not None
        with selectors.DefaultSelector() as sel:
            sel.register(proc.stdout, selectors.EVENT_READ)
            if not sel.select(timeout):
                proc.kill()
                raise AssertionError(f"not blocked within {timeout}s: {proc.communicate()[1]}")
        assert proc.stdout.readline().strip() == "blocked"

    def count(self) -> Counter[tuple[str, str, str]]:
        text = self.effects.read_text() if self.effects.exists() else ""
        return Counter(tuple(line.split()[:3]) for line in text.splitlines())  # type: ignore[misc]


@pytest.fixture(params=["sqlite", "postgres"])
def procs(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Procs]:
    url = f"sqlite:///{tmp_path / 'flux.db'}" if request.param == "sqlite" else postgres_url_or_skip(request)
    p = Procs(url, tmp_path / "effects.log")
    yield p
    for proc in p.procs:
        if proc.poll() is None:
            proc.kill()
        proc.communicate()


def engine_call(url: str, fn: Any) -> Any:
    async def go() -> Any:
        engine = FluxEngine(storage=url, logger=FluxSilentLogger(), lease_seconds=2.0)
        try:
            return await fn(engine)
        finally:
            await engine.close()

    return asyncio.run(go())


def get(url: str, run_id: str) -> FluxResult:
    result = engine_call(url, lambda e: e.get(run_id))
    assert isinstance(result, FluxResult)
    return result


def start(url: str, run_id: str, **input: Any) -> None:
    engine_call(url, lambda e: e.start(PARENT, input, id=run_id))


def children(url: str, run_id: str) -> list[str]:
    return [r.id for r in engine_call(url, lambda e: e.list(parent_id=run_id))]


def assert_done_once(procs: Procs, run_id: str) -> None:
    done = get(procs.url, run_id)
    assert done.status is RunStatus.COMPLETED, (done.status, done.waiting_for, done.error)
    assert children(procs.url, run_id) == [f"{run_id}/pay"]
    count = procs.count()
    assert count[(f"{run_id}/pay", "charge", "done")] == 1  # the child's commit: once
    assert count[(f"{run_id}", "reserve", "done")] == 1 and count[(f"{run_id}", "ship", "done")] == 1


def test_a_child_killed_just_before_its_final_write_is_recovered_and_wakes_its_parent(
    procs: Procs,
) -> None:
    start(procs.url, "K1")
    procs.run_killed("work", KILL_AT="before-final")
    assert get(procs.url, "K1/pay").status is RunStatus.RUNNING
    assert get(procs.url, "K1").status is RunStatus.SUSPENDED
    procs.run("recover")  # the dead process: judged so at once (§5)
    assert_done_once(procs, "K1")
    assert procs.count()[("K1/pay", "receipt", "start")] == 2  # its last step: at-least-once


def test_a_child_killed_just_after_its_final_write_has_left_its_parent_due(procs: Procs) -> None:
    start(procs.url, "K2")
    procs.run_killed("work", KILL_AT="after-final")
    assert get(procs.url, "K2/pay").status is RunStatus.COMPLETED
    parent = get(procs.url, "K2")
    assert parent.status is RunStatus.SUSPENDED and parent.wake_at is not None  # due: in the same write
    procs.run("work")
    assert_done_once(procs, "K2")
    assert procs.count()[("K2/pay", "receipt", "start")] == 1


def test_a_worker_killed_between_the_childs_creation_and_the_parents_suspend(procs: Procs) -> None:
    start(procs.url, "K3")
    procs.run_killed("work", KILL_AT="after-create")
    assert get(procs.url, "K3").status is RunStatus.RUNNING  # its suspend never written
    assert get(procs.url, "K3/pay").status is RunStatus.PENDING
    procs.run("recover")  # the dead process: judged so at once (§5)
    assert_done_once(procs, "K3")
    assert procs.count()[("K3/pay", "prepare", "start")] == 1


def test_execute_killed_right_after_creating_its_child_in_process(procs: Procs) -> None:
    procs.run_killed("execute", "K4", KILL_AT="after-create")
    assert get(procs.url, "K4/pay").status is RunStatus.RUNNING  # created held, by a dead process
    procs.run("recover")  # the dead process: judged so at once (§5)
    assert_done_once(procs, "K4")


def test_two_workers_racing_on_the_same_parents_start_each_child_once(procs: Procs) -> None:
    ids = [f"W{i}" for i in range(6)]
    for run_id in ids:
        start(procs.url, run_id)
    racers = [procs.start("work"), procs.start("work")]
    for proc in racers:
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
    procs.run("work")  # whatever a racer left due when it ran out of work
    for run_id in ids:
        assert_done_once(procs, run_id)
        assert procs.count()[(f"{run_id}/pay", "prepare", "start")] == 1


def test_a_child_signalled_from_another_process_wakes_its_parent(procs: Procs) -> None:
    start(procs.url, "S1", wait=True)
    procs.run("work")
    assert get(procs.url, "S1/pay").waiting_for == "go"
    assert get(procs.url, "S1").waiting_for == "child:S1/pay"
    procs.run("signal", "S1/pay")
    assert get(procs.url, "S1/pay").status is RunStatus.COMPLETED
    assert get(procs.url, "S1").wake_at is not None
    procs.run("work")
    assert_done_once(procs, "S1")


def test_a_parent_cancelled_from_another_process_while_its_child_runs_in_the_parents_process(
    procs: Procs,
) -> None:
    holder = procs.start("execute", "X1", BLOCK_AT="cancel:prepare")
    procs.wait_blocked(holder)
    engine_call(procs.url, lambda e: e.cancel("X1", reason="customer asked", flow=PARENT))
    _, err = holder.communicate(timeout=120)
    assert holder.returncode == 0, err
    parent, child = get(procs.url, "X1"), get(procs.url, "X1/pay")
    assert child.status is RunStatus.CANCELLED, (child.status, child.error)
    assert parent.status is RunStatus.CANCELLED, (parent.status, parent.error_type, parent.error)
    assert parent.error_type == "RunCancelledError" and "customer asked" in (parent.error or "")
    count = procs.count()
    assert count[("X1", "reserve", "undo")] == 1 and count[("X1", "ship", "start")] == 0
    assert count[("X1/pay", "charge", "start")] == 0


def test_restarts_of_the_process_running_a_child_inline_do_not_count_as_crashes_of_the_call(
    procs: Procs,
) -> None:
    """`execute` drives the child in the parent's process. Two restarts of that process,
    each in another step of the child, crash no step twice: with max_crashes=2 the run must
    still finish (the crashes are the child's steps', one each, not the call's)."""
    env = {"MAX_CRASHES": "2"}
    first = procs.start("execute", "MC1", BLOCK_AT="in:prepare", **env)
    procs.wait_blocked(first)
    first.kill()
    first.wait(timeout=30)
    second = procs.start("recover", BLOCK_AT="in:receipt", **env)
    procs.wait_blocked(second)
    second.kill()
    second.wait(timeout=30)
    procs.run("recover", **env)
    child = get(procs.url, "MC1/pay")
    assert child.status is RunStatus.COMPLETED, (child.status, child.error_type, child.error)
    assert_done_once(procs, "MC1")


def test_a_child_whose_commit_was_interrupted_leaves_its_parent_uncompensated(procs: Procs) -> None:
    """§5: a commit cut short by a crash may have happened, so the run's earlier steps are not
    compensated and `retry_step` is the way on. The same must hold one level up: the
    parent must not undo its own steps (release the stock) while the child's charge may
    have gone through; retrying the child's commit, then the parent's call, finishes it."""
    victim = procs.start("execute", "CI1", BLOCK_AT="in:charge")
    procs.wait_blocked(victim)
    victim.kill()
    victim.wait(timeout=30)
    procs.run("recover")
    child = get(procs.url, "CI1/pay")
    assert child.status is RunStatus.FAILED and child.error_type == "CommitInterruptedError"
    parent = get(procs.url, "CI1")
    assert parent.status is RunStatus.FAILED, (parent.status, parent.error_type)
    assert procs.count()[("CI1", "reserve", "undo")] == 0
