"""An adversarial review of `.parallel` across real processes (SPEC §5, §9, §11): SIGKILL with
a commit branch in flight, a commit beside a retried sibling, a sync branch blocking its
thread while a second worker tries to take the run, a cancel from another process, a lease
stolen in the middle of a group. A test marked xfail(strict) is a promise broken on main."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from flux import FluxEngine, FluxSilentLogger, RunStatus, SQLiteStorage

from ..services import postgres_url_or_skip
from .conftest import PYTHONPATH

CHILD = Path(__file__).with_name("groups_review_worker.py")
LEASE = 0.6
GUARD = 120.0  # seconds: only so that a broken engine fails instead of hanging


@dataclass
class Procs:
    storage: str
    tmp: Path
    procs: list[subprocess.Popen[str]] = field(default_factory=list)

    @property
    def effects(self) -> Path:
        return self.tmp / "effects.log"

    def start(self, flow: str, mode: str, run_id: str = "r-1", gate: str = "gate") -> subprocess.Popen[str]:
        args = [sys.executable, str(CHILD), self.storage, str(self.effects), str(LEASE), flow, mode, run_id,
                str(self.tmp / gate)]  # fmt: skip
        proc = subprocess.Popen(
            args,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, "PYTHONPATH": PYTHONPATH},
        )
        self.procs.append(proc)
        return proc

    def started_and_said_go(self, flow: str) -> subprocess.Popen[str]:
        proc = self.start(flow, "run")
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.strip() == "go", (line, proc.stderr.read() if proc.stderr else "")
        return proc

    def kill(self, proc: subprocess.Popen[str]) -> None:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        assert proc.returncode == -signal.SIGKILL

    def recover(self, flow: str) -> tuple[list[dict[str, Any]], str]:
        proc = self.start(flow, "recover")
        out, err = proc.communicate(timeout=GUARD)
        lines = out.splitlines()
        assert proc.returncode == 0 and lines[-2:] == ["recovered", "exit"], (out, err)
        return [json.loads(line) for line in lines[:-2]], err

    def effects_list(self) -> list[tuple[str, str, int]]:
        if not self.effects.exists():
            return []
        return [(n, e, int(p)) for n, e, p in (ln.split() for ln in self.effects.read_text().splitlines())]

    def count(self) -> Counter[tuple[str, str]]:
        return Counter((n, e) for n, e, _ in self.effects_list())


def _storage(request: pytest.FixtureRequest, tmp_path: Path, backend: str) -> str:
    return str(tmp_path / "flux.db") if backend == "sqlite" else postgres_url_or_skip(request)


@pytest.fixture(params=["sqlite", "postgres"])
def procs(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Procs]:
    p = Procs(_storage(request, tmp_path, request.param), tmp_path)
    yield p
    for proc in p.procs:
        if proc.poll() is None:
            proc.kill()
        proc.communicate()


@pytest.fixture
def sqlite_procs(tmp_path: Path) -> Iterator[Procs]:
    p = Procs(str(tmp_path / "flux.db"), tmp_path)
    yield p
    for proc in p.procs:
        if proc.poll() is None:
            proc.kill()
        proc.communicate()


def poll(what: str, done: Any) -> Any:
    deadline = time.monotonic() + GUARD
    while not (value := done()):
        assert time.monotonic() < deadline, f"never happened: {what}"
        time.sleep(0.01)
    return value


# ---------------------------------------------------------------- a commit branch in flight at a kill


def test_a_commit_branch_in_flight_at_a_kill_is_never_run_again_commit_first(procs: Procs) -> None:
    proc = procs.started_and_said_go("commit-then-step")
    procs.kill(proc)
    outcomes, _ = procs.recover("commit-then-step")
    assert len(outcomes) == 1
    outcome = outcomes[0]
    assert outcome["status"] == "failed", outcome
    assert outcome["error_type"] == "CommitInterruptedError"
    counts = procs.count()
    assert counts[("charge", "start")] == 1  # never again
    assert counts[("prep", "undo")] == 0  # the commit may have happened: nothing is undone
    assert counts[("after", "start")] == 0


def test_a_commit_branch_in_flight_at_a_kill_is_never_run_again_step_first(procs: Procs) -> None:
    proc = procs.started_and_said_go("step-then-commit")
    procs.kill(proc)
    outcomes, err = procs.recover("step-then-commit")
    assert len(outcomes) == 1, err
    outcome = outcomes[0]
    assert outcome["status"] == "failed", outcome
    assert outcome["error_type"] == "CommitInterruptedError"
    counts = procs.count()
    assert counts[("charge", "start")] == 1
    assert counts[("prep", "undo")] == 0


def test_a_commit_branch_done_while_its_sibling_retries_runs_once_across_a_kill(procs: Procs) -> None:
    proc = procs.started_and_said_go("retrying")  # charge stored completed, ship in its 2nd attempt
    procs.kill(proc)
    outcomes, err = procs.recover("retrying")
    assert [o["status"] for o in outcomes] == ["completed"], (outcomes, err)
    assert outcomes[0]["outputs"]["g"] == {"charge": "charge", "ship": "shipped"}
    counts = procs.count()
    assert counts[("charge", "start")] == 1
    assert counts[("ship", "start")] == 3  # failed, cut short by the kill, then recovered
    assert counts[("after", "start")] == 1


# ---------------------------------------------------------------- a blocking sync branch and the lease


def test_a_sync_branch_blocking_its_thread_keeps_the_run_and_its_async_sibling_runs(
    sqlite_procs: Procs,
) -> None:
    p = sqlite_procs
    a = p.started_and_said_go("block")
    db = Path(p.storage)

    def lease() -> tuple[str, float]:
        with closing(sqlite3.connect(db)) as conn, conn:
            row = conn.execute(
                "SELECT lease_owner, lease_expires_at FROM flux_runs WHERE id='r-1'"
            ).fetchone()
        return row[0], row[1]

    holder, first_expiry = lease()
    b = p.start("block", "take", gate="stop-b")
    tries = Path(f"{p.effects}.tries")

    def b_had_its_chances() -> bool:
        assert {pid for _, _, pid in p.effects_list()} == {a.pid}, "B took the run"
        lines = tries.read_text().splitlines() if tries.exists() else []
        return any(float(line.split()[1]) > first_expiry + 3 * LEASE for line in lines)

    poll("B tried well after A's first lease expiry", b_had_its_chances)
    poll(
        "the async sibling ran to its end while the sync one blocked", lambda: p.count()[("sibling", "done")]
    )
    owner, expiry = lease()
    assert owner == holder and expiry > first_expiry + 2 * LEASE
    (p.tmp / "stop-b").touch()
    out_b, err_b = b.communicate(timeout=GUARD)
    assert out_b.splitlines() == ["exit"], err_b
    (p.tmp / "gate").touch()
    out_a, err_a = a.communicate(timeout=GUARD)
    assert out_a.splitlines() == ["r-1 completed None", "exit"], err_a
    assert p.count() == Counter(
        {("blocking", "start"): 1, ("blocking", "done"): 1, ("sibling", "start"): 1, ("sibling", "done"): 1}
    )


# ---------------------------------------------------------------- cancel and lease loss from outside


def test_a_group_cancelled_from_another_process_stops_its_branches_and_compensates(procs: Procs) -> None:
    proc = procs.started_and_said_go("cancel")

    async def cancel() -> RunStatus:
        storage: Any = SQLiteStorage(procs.storage) if "://" not in procs.storage else procs.storage
        engine = FluxEngine(storage=storage, logger=FluxSilentLogger())
        try:
            return (await engine.cancel("r-1", reason="customer asked")).status
        finally:
            await engine.close()

    assert asyncio.run(cancel()) is RunStatus.RUNNING  # held elsewhere: its holder carries it out
    out, err = proc.communicate(timeout=GUARD)
    assert out.splitlines() == ["r-1 cancelled RunCancelledError", "exit"], err
    counts = procs.count()
    assert counts[("sync", "saw-cancel")] == 1, counts
    assert counts[("async", "cancelled")] == 1
    assert counts[("quick", "undo")] == 1 and counts[("prep", "undo")] == 1
    assert counts[("sync", "undo")] == 0 and counts[("async", "undo")] == 0
    assert counts[("after", "start")] == 0


def test_a_group_whose_lease_is_stolen_stops_its_branches_and_saves_nothing_more(sqlite_procs: Procs) -> None:
    p = sqlite_procs
    proc = p.started_and_said_go("lease")
    db = Path(p.storage)
    with closing(sqlite3.connect(db)) as conn, conn:
        conn.execute(
            "UPDATE flux_runs SET lease_owner='thief', lease_expires_at=? WHERE id='r-1'",
            (time.time() + 3600,),
        )

    def rows() -> tuple[Any, ...]:
        with closing(sqlite3.connect(db)) as conn, conn:
            run = conn.execute("SELECT * FROM flux_runs WHERE id='r-1'").fetchone()
            steps = conn.execute("SELECT * FROM flux_steps WHERE run_id='r-1' ORDER BY idx").fetchall()
        return run, steps

    taken = rows()
    out, err = proc.communicate(timeout=GUARD)
    assert out.splitlines() == ["LeaseLostError", "exit"], err
    counts = p.count()
    assert counts[("a", "cancelled")] == 1 and counts[("b", "cancelled")] == 1  # both stopped
    assert counts[("a", "done")] == 0 and counts[("after", "start")] == 0
    assert rows() == taken


# ---------------------------------------------------------------- found on the way: SQLite locks

_OTHER = """
import asyncio, sys
from flux import SQLiteStorage
from flux.records import RunRecord
from flux.status import RunStatus

async def main() -> None:
    storage = SQLiteStorage(sys.argv[1])
    await storage.create_run(RunRecord("other", "w", RunStatus.PENDING, "{}"))
    await storage.close()

asyncio.run(main())
"""
_READ = """
import asyncio, sys
from flux import SQLiteStorage

async def main() -> None:
    storage = SQLiteStorage(sys.argv[1])
    try:
        run = await storage.load_run("r")
        print(run.data_json if run else "gone")
    finally:
        await storage.close()

asyncio.run(main())
"""


def test_a_second_sqlite_storage_in_one_process_leaves_the_first_one_working(tmp_path: Path) -> None:
    """Found by the cancel test above (when its victim polled through a second SQLiteStorage):
    two storages on one file in one process (an engine and a dashboard, say), another process
    opens the file, writes and closes; the first storage's writes must go on, the file intact."""
    from flux.records import RunRecord

    db = tmp_path / "flux.db"

    env = {**os.environ, "PYTHONPATH": PYTHONPATH}

    async def main() -> str:
        first = SQLiteStorage(db)
        await first.create_run(RunRecord("r", "w", RunStatus.RUNNING, "{}"))
        second = SQLiteStorage(db)  # a second storage on the file, in this process
        try:
            assert await second.load_run("r") is not None
            other = await asyncio.create_subprocess_exec(sys.executable, "-c", _OTHER, str(db), env=env)
            assert await other.wait() == 0
            run = await first.load_run("r")
            assert run is not None
            for i in range(20):
                run.rev += 1
                run.data_json = f'{{"i": {i}}}'
                await first.save_run(run, (), None)
            # acknowledged writes: another process must see them
            reader = await asyncio.create_subprocess_exec(
                sys.executable, "-c", _READ, str(db), env=env, stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
            )  # fmt: skip
            out, err = await reader.communicate()
            return (out or err).decode().strip().splitlines()[-1]
        finally:
            await first.close()
            await second.close()

    assert asyncio.run(main()) == '{"i": 19}'


# ---------------------------------------------------------------- `flux worker` with concurrency


@pytest.mark.parametrize("backend", ["postgres", "sqlite"])
def test_groups_and_maps_run_by_flux_worker_with_concurrency(
    request: pytest.FixtureRequest, tmp_path: Path, backend: str
) -> None:
    from . import groups_review_flows as flows

    effects = tmp_path / "effects.log"
    url = postgres_url_or_skip(request) if backend == "postgres" else f"sqlite:///{tmp_path / 'flux.db'}"
    root = Path(__file__).parents[2]
    env = {**os.environ, "EFFECTS": str(effects), "PYTHONPATH": PYTHONPATH}
    ids = [f"w-{i}" for i in range(30)]

    async def enqueue() -> None:
        engine = FluxEngine(storage=url, logger=FluxSilentLogger())
        try:
            for i, run_id in enumerate(ids):
                await engine.start(flows.GROUPED, {"n": i}, id=run_id)
        finally:
            await engine.close()

    asyncio.run(enqueue())
    worker = subprocess.Popen(
        [sys.executable, "-m", "flux.cli", "worker", "tests.durable.groups_review_flows:GROUPED",
         "--storage", url, "--concurrency", "3", "--poll", "0.05", "--lease", "2"],
        cwd=root, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:

        async def results() -> dict[str, Any]:
            engine = FluxEngine(storage=url, logger=FluxSilentLogger())
            try:
                return {run_id: await engine.wait(run_id, timeout=GUARD) for run_id in ids}
            finally:
                await engine.close()

        got = asyncio.run(results())
    finally:
        worker.send_signal(signal.SIGTERM)
        _, err = worker.communicate(timeout=60)
    assert worker.returncode == 0, err
    for i, run_id in enumerate(ids):
        result = got[run_id]
        assert result.status is RunStatus.COMPLETED, (run_id, result.error)
        assert result.outputs["done"] == 10 * i
        assert result.data == {"charge": True, "mail": True, "stock": True}
    calls = Counter(tuple(line.split()[:2]) for line in effects.read_text().splitlines())
    assert all(calls[(run_id, "charge")] == 1 for run_id in ids)
    assert set(calls.values()) == {1}  # nothing ran twice: no crash, no takeover


# ---------------------------------------------------------------- crash loops end (max_crashes)


@pytest.mark.parametrize("flow", ["crash-branch", "crash-item"])
def test_a_member_that_kills_its_process_every_time_fails_after_max_crashes(procs: Procs, flow: str) -> None:
    first = procs.start(flow, "run")
    first.communicate(timeout=GUARD)
    assert first.returncode == -signal.SIGKILL
    outcome = None
    for _ in range(6):  # max_crashes=3: the 4th process at the latest fails the member for good
        proc = procs.start(flow, "recover")
        out, _ = proc.communicate(timeout=GUARD)
        if proc.returncode == 0:
            outcome = json.loads(out.splitlines()[0])
            break
        assert proc.returncode == -signal.SIGKILL
    assert outcome is not None, "the crash loop never ended"
    assert outcome["status"] == "failed" and outcome["error_type"] == "StepCrashedError", outcome
    member = "boom" if flow == "crash-branch" else "each[1]"
    assert procs.count()[(member, "start")] == 3


# ---------------------------------------------------------------- kills at many points


@pytest.mark.parametrize("after", [1, 5, 11, 19, 31])
def test_a_kill_at_any_point_of_a_chain_of_groups_never_runs_a_commit_twice(procs: Procs, after: int) -> None:
    proc = procs.start("chain", "run")
    poll(f"{after} effects", lambda: len(procs.effects_list()) >= after or proc.poll() is not None)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    outcomes, err = procs.recover("chain")
    counts = procs.count()
    commits = {k: counts[(f"c{k}", "start")] for k in range(6)}
    assert max(commits.values()) <= 1, commits
    if proc.returncode == 0:
        return  # it ended before the kill
    assert len(outcomes) <= 1, err
    if not outcomes:
        return  # killed before the run was stored
    outcome = outcomes[0]
    if outcome["status"] == "completed":
        assert set(commits.values()) == {1}
    else:
        assert outcome["error_type"] == "CommitInterruptedError", outcome
        cut = next(k for k in range(6) if outcome["steps"][f"c{k}"] == "failed")
        # killed after its start was stored: it ran once, or the kill came before its first line
        assert all(commits[k] == 1 for k in range(cut)) and all(commits[k] == 0 for k in range(cut + 1, 6))
