"""`.call` across real processes on a shared SQLite file and on PostgreSQL (SPEC §11): the
parent runs on one worker, its child on another, and the parent is finished by a worker once
the child has ended; a child's worker SIGKILLed mid-step, and a parent's process SIGKILLed
while it waits, are recovered with the child's commit done once; a parent cancelled while its
child runs on another worker ends cancelled with its child."""

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

import pytest

from flux import FluxEngine, FluxResult, FluxSilentLogger, RunStatus

from ..services import postgres_url_or_skip
from .call_flows import PARENT

ROOT = Path(__file__).resolve().parents[2]
SPEC = "tests.durable.call_flows"


class Procs:
    def __init__(self, url: str, effects: Path) -> None:
        self.url = url
        self.effects = effects
        self.procs: list[subprocess.Popen[str]] = []

    def _start(self, args: list[str], block: str = "") -> subprocess.Popen[str]:
        env = {**os.environ, "EFFECTS": str(self.effects), "BLOCK_AT": block}
        env["PYTHONPATH"] = os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])
        proc = subprocess.Popen([sys.executable, *args], cwd=ROOT, env=env, text=True,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)  # fmt: skip
        self.procs.append(proc)
        return proc

    def script(self, mode: str, *args: str, block: str = "") -> subprocess.Popen[str]:
        return self._start(["-m", SPEC, self.url, mode, *args], block)

    def worker(self, flow: str, *, block: str = "", burst: bool = True) -> subprocess.Popen[str]:
        args = ["-m", "flux.cli", "worker", f"{SPEC}:{flow}", "--storage", self.url, "--poll", "0.05",
                "--lease", "2"] + (["--burst"] if burst else [])  # fmt: skip
        return self._start(args, block)

    @staticmethod
    def finish(proc: subprocess.Popen[str]) -> str:
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
        return out

    @staticmethod
    def wait_blocked(proc: subprocess.Popen[str], timeout: float = 60.0) -> None:
        assert proc.stdout is not None
        with selectors.DefaultSelector() as sel:
            sel.register(proc.stdout, selectors.EVENT_READ)
            if not sel.select(timeout):
                proc.kill()
                raise AssertionError(f"not blocked within {timeout}s: {proc.communicate()[1]}")
        line = proc.stdout.readline().strip()
        assert line == "blocked", (line, proc.stderr.read() if proc.stderr else "")

    @staticmethod
    def kill(proc: subprocess.Popen[str]) -> None:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        assert proc.returncode == -signal.SIGKILL

    def effects_by(self) -> dict[tuple[str, str, str], list[int]]:
        seen: dict[tuple[str, str, str], list[int]] = {}
        text = self.effects.read_text() if self.effects.exists() else ""
        for line in text.splitlines():
            run_id, step, event, pid = line.split()
            seen.setdefault((run_id, step, event), []).append(int(pid))
        return seen

    def count(self) -> Counter[tuple[str, str, str]]:
        return Counter({k: len(v) for k, v in self.effects_by().items()})


@pytest.fixture(params=["sqlite", "postgres"])
def procs(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Procs]:
    url = f"sqlite:///{tmp_path / 'flux.db'}" if request.param == "sqlite" else postgres_url_or_skip(request)
    p = Procs(url, tmp_path / "effects.log")
    yield p
    for proc in p.procs:
        if proc.poll() is None:
            proc.kill()
        proc.communicate()


def engine_call(url: str, fn: object) -> object:
    async def go() -> object:
        engine = FluxEngine(storage=url, logger=FluxSilentLogger(), lease_seconds=2.0)
        try:
            return await fn(engine)  # type: ignore[operator]
        finally:
            await engine.close()

    return asyncio.run(go())


def get(url: str, run_id: str) -> FluxResult:
    result = engine_call(url, lambda e: e.get(run_id))
    assert isinstance(result, FluxResult)
    return result


def start(url: str, run_id: str) -> None:
    engine_call(url, lambda e: e.start(PARENT, {"amount": 5}, id=run_id))


def test_the_parent_on_one_worker_its_child_on_another(procs: Procs) -> None:
    start(procs.url, "O1")
    procs.finish(procs.script("parent-once"))
    parent = get(procs.url, "O1")
    assert (parent.status, parent.waiting_for) == (RunStatus.SUSPENDED, "child:O1/pay")
    stored = engine_call(procs.url, lambda e: e.storage.load_run("O1"))
    assert stored.lease is None  # type: ignore[attr-defined]  # nothing holds it while the child runs
    assert get(procs.url, "O1/pay").status is RunStatus.PENDING
    child_worker = procs.worker("CHILD")
    procs.finish(child_worker)
    assert get(procs.url, "O1/pay").status is RunStatus.COMPLETED
    assert get(procs.url, "O1").wake_at is not None  # made due by the child's last write
    last = procs.worker("PARENT")
    procs.finish(last)
    done = get(procs.url, "O1")
    assert done.status is RunStatus.COMPLETED, done.error
    by = procs.effects_by()
    first = procs.procs[0].pid
    assert by[("O1", "reserve", "done")] == [first]
    assert by[("O1/pay", "charge", "done")] == [child_worker.pid]
    assert by[("O1", "ship", "done")] == [last.pid]
    assert done.outputs["pay"] == {"prepare": child_worker.pid, "charge": child_worker.pid,
                                   "receipt": child_worker.pid}  # fmt: skip
    assert engine_call(procs.url, lambda e: e.list(parent_id="O1"))[0].id == "O1/pay"  # type: ignore[index]


def test_a_child_whose_worker_is_killed_mid_step_is_recovered_and_its_commit_runs_once(
    procs: Procs,
) -> None:
    start(procs.url, "O2")
    procs.finish(procs.script("parent-once"))
    victim = procs.worker("CHILD", block="in:receipt", burst=False)
    procs.wait_blocked(victim)
    procs.kill(victim)
    assert get(procs.url, "O2/pay").status is RunStatus.RUNNING
    procs.finish(procs.worker("PARENT"))  # recovers the child, then finishes the parent
    done = get(procs.url, "O2")
    assert done.status is RunStatus.COMPLETED, done.error
    count = procs.count()
    assert count[("O2/pay", "charge", "done")] == 1
    assert count[("O2/pay", "receipt", "start")] == 2  # a step is at-least-once
    assert count[("O2", "ship", "done")] == 1


def test_a_parent_whose_process_is_killed_while_it_waits_is_finished_by_a_worker(procs: Procs) -> None:
    victim = procs.script("execute", "O3", block="in:receipt")  # the child runs in its process
    procs.wait_blocked(victim)
    procs.kill(victim)
    assert get(procs.url, "O3").status is RunStatus.RUNNING
    procs.finish(procs.worker("PARENT"))
    done = get(procs.url, "O3")
    assert done.status is RunStatus.COMPLETED, done.error
    count = procs.count()
    assert count[("O3/pay", "charge", "done")] == 1
    assert count[("O3", "reserve", "done")] == 1 and count[("O3", "ship", "done")] == 1
    assert get(procs.url, "O3/pay").parent_id == "O3"
    assert engine_call(procs.url, lambda e: e.list(parent_id="O3")).__len__() == 1  # type: ignore[attr-defined]


def test_a_parent_cancelled_while_its_child_runs_on_another_worker(procs: Procs) -> None:
    start(procs.url, "O4")
    procs.finish(procs.script("parent-once"))
    child_worker = procs.worker("CHILD", block="cancel:prepare", burst=False)
    procs.wait_blocked(child_worker)
    parent = engine_call(procs.url, lambda e: e.cancel("O4", reason="changed my mind", flow=PARENT))
    assert isinstance(parent, FluxResult) and parent.status is RunStatus.CANCELLED
    child = engine_call(procs.url, lambda e: e.wait("O4/pay", timeout=60))
    assert isinstance(child, FluxResult)
    assert child.status is RunStatus.CANCELLED and "changed my mind" in (child.error or "")
    child_worker.send_signal(signal.SIGTERM)
    child_worker.communicate(timeout=60)
    count = procs.count()
    assert count[("O4/pay", "prepare", "cancelled")] == 1
    assert count[("O4/pay", "charge", "start")] == 0 and count[("O4", "ship", "start")] == 0
    assert get(procs.url, "O4").status is RunStatus.CANCELLED
