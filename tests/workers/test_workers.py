"""`flux worker` processes on the real PostgreSQL server: queued runs, a SIGKILLed worker,
signals from another process, graceful SIGTERM."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from flux import FluxEngine, FluxSilentLogger, RunStatus
from flux.records import RunRecord

from ..services import postgres_url_or_skip
from . import flows

ROOT = Path(__file__).resolve().parents[2]


class Workers:
    def __init__(self, url: str, effects: Path) -> None:
        self.url = url
        self.effects = effects
        self.procs: list[subprocess.Popen[str]] = []

    def start(self, *specs: str, concurrency: int = 2, extra: tuple[str, ...] = ()) -> subprocess.Popen[str]:
        proc = subprocess.Popen(
            [sys.executable, "-m", "flux.cli", "worker", *specs, "--storage", self.url,
             "--concurrency", str(concurrency), "--poll", "0.05", "--lease", "2", *extra],
            cwd=ROOT, env={**os.environ, "EFFECTS": str(self.effects)},
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        self.procs.append(proc)
        return proc

    def effects_count(self) -> Counter[tuple[str, str, str]]:
        if not self.effects.exists():
            return Counter()
        return Counter(tuple(line.split()[:3]) for line in self.effects.read_text().splitlines())  # type: ignore[misc]

    def wait_for_effects(self, predicate: object, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while not predicate(self.effects_count()):  # type: ignore[operator]
            assert time.monotonic() < deadline, "the workers made no progress"
            for p in self.procs:
                assert p.poll() is None or p.returncode in (0, -signal.SIGKILL), p.communicate()[1]
            time.sleep(0.02)


@pytest.fixture
def pg(request: pytest.FixtureRequest) -> str:
    return postgres_url_or_skip(request)


@pytest.fixture
def workers(pg: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Workers]:
    monkeypatch.setenv("EFFECTS", str(tmp_path / "effects.log"))
    w = Workers(pg, tmp_path / "effects.log")
    yield w
    for p in w.procs:
        if p.poll() is None:
            p.kill()
        p.communicate()


def engine(url: str) -> FluxEngine:
    return FluxEngine(storage=url, logger=FluxSilentLogger())


def stored(url: str, run_id: str) -> RunRecord:
    async def load() -> RunRecord:
        e = engine(url)
        try:
            run = await e.storage.load_run(run_id)
        finally:
            await e.close()
        assert run is not None
        return run

    return asyncio.run(load())


def test_three_workers_500_runs_one_killed_midway(workers: Workers, pg: str) -> None:
    async def enqueue() -> list[str]:
        e = engine(pg)
        ids = [await e.start(flows.TEN, {"n": i}, id=f"run-{i}") for i in range(500)]
        await e.close()
        return ids

    ids = asyncio.run(enqueue())
    victim = workers.start("tests.workers.flows:TEN")
    others = [workers.start("tests.workers.flows:TEN") for _ in range(2)]
    # midway: once a good share of the runs is done and the victim is busy
    workers.wait_for_effects(lambda c: sum(1 for k in c if k[1] == "s9" and k[2] == "done") >= 150)
    victim.send_signal(signal.SIGKILL)
    victim.wait()

    async def results() -> dict[str, RunStatus]:
        e = engine(pg)
        out = {i: (await e.wait(i, timeout=300)).status for i in ids}
        await e.close()
        return out

    statuses = asyncio.run(results())
    assert set(statuses.values()) == {RunStatus.COMPLETED}
    effects = workers.effects_count()
    for run_id in ids:
        assert effects[(run_id, "s9", "done")] == 1, run_id
        for s in range(10):
            # at-least-once: a step in flight in the killed worker may have run twice
            assert 1 <= effects[(run_id, f"s{s}", "done")] <= 2, (run_id, s)
    twice = [k for k, n in effects.items() if k[2] == "done" and n == 2]
    assert len(twice) <= 2 * 2, twice  # at most the victim's in-flight steps (2 threads)
    for p in others:
        p.send_signal(signal.SIGTERM)
        _, err = p.communicate(timeout=60)
        assert p.returncode == 0, err


def test_signal_from_a_process_that_is_not_a_worker(workers: Workers, pg: str) -> None:
    w = workers.start("tests.workers.flows:APPROVAL")

    async def scenario() -> None:
        e = engine(pg)
        await e.start(flows.APPROVAL, {}, id="ap-1")
        suspended = await e.wait("ap-1", timeout=60)
        assert suspended.status is RunStatus.SUSPENDED and suspended.waiting_for == "approval"
        queued = await e.signal(flows.APPROVAL, "ap-1", "approval", {"by": "ann"}, enqueue=True)
        assert queued.status is RunStatus.PENDING
        done = await e.wait("ap-1", timeout=60)
        assert done.status is RunStatus.COMPLETED and done.outputs["ask"] == {"by": "ann"}
        await e.close()

    asyncio.run(scenario())
    effects = workers.effects_count()
    pids = {line.split()[3] for line in workers.effects.read_text().splitlines()}
    assert pids == {str(w.pid)}  # every step ran on the worker, none in this process
    assert effects[("ap-1", "after", "done")] == 1


def test_sigterm_finishes_the_run_in_hand(workers: Workers, pg: str, tmp_path: Path) -> None:
    gate = tmp_path / "gate"
    w = workers.start("tests.workers.flows:GATED", concurrency=1)

    async def enqueue() -> None:
        e = engine(pg)
        await e.start(flows.GATED, {"gate": str(gate)}, id="g-1")
        await e.close()

    asyncio.run(enqueue())
    workers.wait_for_effects(lambda c: c[("g-1", "wait", "start")] == 1)
    w.send_signal(signal.SIGTERM)
    gate.touch()
    _, err = w.communicate(timeout=60)
    assert w.returncode == 0, err
    assert stored(pg, "g-1").status is RunStatus.COMPLETED


def test_sigterm_past_the_grace_releases_the_run_for_another_worker(
    workers: Workers, pg: str, tmp_path: Path
) -> None:
    gate = tmp_path / "gate"
    w = workers.start("tests.workers.flows:GATED", concurrency=1, extra=("--grace", "0.5"))

    async def enqueue() -> None:
        e = engine(pg)
        await e.start(flows.GATED, {"gate": str(gate)}, id="g-2")
        await e.close()

    asyncio.run(enqueue())
    workers.wait_for_effects(lambda c: c[("g-2", "wait", "start")] == 1)
    w.send_signal(signal.SIGTERM)
    _, err = w.communicate(timeout=60)
    assert w.returncode == 1 and "released 1 unfinished run" in err
    left = stored(pg, "g-2")
    assert left.status is RunStatus.RUNNING and left.lease is None
    gate.touch()
    second = workers.start("tests.workers.flows:GATED", concurrency=1, extra=("--burst",))
    _, err = second.communicate(timeout=60)
    assert second.returncode == 0, err
    assert stored(pg, "g-2").status is RunStatus.COMPLETED
    assert workers.effects_count()[("g-2", "after", "done")] == 1


def test_a_commit_in_flight_on_a_killed_worker_is_never_run_again(
    workers: Workers, pg: str, tmp_path: Path
) -> None:
    gate = tmp_path / "gate"  # never opened while the first worker lives
    w = workers.start("tests.workers.flows:GATED_COMMIT", concurrency=1)

    async def enqueue() -> None:
        e = engine(pg)
        await e.start(flows.GATED_COMMIT, {"gate": str(gate)}, id="c-1")
        await e.close()

    asyncio.run(enqueue())
    workers.wait_for_effects(lambda c: c[("c-1", "ship", "start")] == 1)
    w.send_signal(signal.SIGKILL)
    w.wait()
    gate.touch()
    heir = workers.start("tests.workers.flows:GATED_COMMIT", concurrency=1)

    async def outcome() -> tuple[RunStatus, str | None]:
        e = engine(pg)
        result = await e.wait("c-1", timeout=120)
        await e.close()
        return result.status, result.error_type

    assert asyncio.run(outcome()) == (RunStatus.FAILED, "CommitInterruptedError")
    assert workers.effects_count()[("c-1", "ship", "start")] == 1
    heir.send_signal(signal.SIGTERM)
    heir.communicate(timeout=60)
