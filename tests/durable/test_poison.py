"""SPEC §5 "Poison runs": a run whose state cannot be stored comes to rest with a named
error, and `work()` and `recover()` go on with the other runs.

The storage failure is real: a SQLite trigger refuses to store the run as completed (as a
full disk or a value the database rejects would), so every save of its end fails.
"""

from __future__ import annotations

import asyncio
import sqlite3
from contextlib import closing
from pathlib import Path
from typing import Any

from flux import FluxEngine, FluxSilentLogger, RunStatus, SQLiteStorage, WorkflowContext, create_workflow
from flux.records import Lease

calls: list[str] = []


def step(ctx: WorkflowContext[Any]) -> str:
    calls.append(ctx.id)
    return "ok"


FLOW = create_workflow("poison").step("only", step, retries=0)


def refuse_completion_of(db: Path, run_id: str) -> None:
    with closing(sqlite3.connect(db)) as conn, conn:
        conn.execute(
            f"CREATE TRIGGER refuse BEFORE UPDATE ON flux_runs WHEN NEW.id = '{run_id}' "
            "AND NEW.status = 'completed' BEGIN SELECT RAISE(ABORT, 'the disk says no'); END"
        )


def test_work_puts_a_poison_run_to_rest_and_drains_the_queue(tmp_path: Path) -> None:
    calls.clear()
    db = tmp_path / "flux.db"

    async def scenario() -> None:
        engine = FluxEngine(storage=SQLiteStorage(db), logger=FluxSilentLogger())
        for run_id in ("bad", "good-1", "good-2"):  # the poison one is the oldest
            await engine.start(FLOW, {}, id=run_id)
        refuse_completion_of(db, "bad")
        done = await engine.work([FLOW], stop=lambda: len(calls) > 6, burst=True, poll=0.001)
        assert done == 3
        bad = await engine.get("bad")
        assert bad.status is RunStatus.FAILED and bad.error_type == "StorageError"
        assert bad.error is not None and "the disk says no" in bad.error
        for good in ("good-1", "good-2"):
            assert (await engine.get(good)).status is RunStatus.COMPLETED
        await engine.close()

    asyncio.run(scenario())
    assert calls == ["bad", "good-1", "good-2"]  # the poison run's handler ran once


def test_recover_goes_on_past_a_run_it_cannot_store(tmp_path: Path) -> None:
    calls.clear()
    db = tmp_path / "flux.db"

    async def scenario() -> None:
        storage = SQLiteStorage(db)
        engine = FluxEngine(storage=storage, logger=FluxSilentLogger())
        for run_id in ("bad", "good"):  # orphans: running, with a lease that has expired
            await engine.start(FLOW, {}, id=run_id)
            assert await storage.acquire_lease(run_id, Lease("gone", "elsewhere", 1, 0.0))
            run = await storage.load_run(run_id)
            assert run is not None
            run.status = RunStatus.RUNNING
            await storage.save_run(run, [], None)
        refuse_completion_of(db, "bad")
        results = {r.id: r.status for r in await engine.recover([FLOW])}
        assert results == {"bad": RunStatus.FAILED, "good": RunStatus.COMPLETED}
        await engine.close()

    asyncio.run(scenario())


def test_a_run_whose_state_cannot_be_stored_at_all_gives_its_lease_back(tmp_path: Path) -> None:
    """When even the run's failure cannot be written, `execute` raises `StorageError` and
    the lease is released, so another process may take the run at once (not after 30 s)."""
    import pytest

    from flux import StorageError

    db = tmp_path / "flux.db"

    async def scenario() -> None:
        storage = SQLiteStorage(db)
        engine = FluxEngine(storage=storage, logger=FluxSilentLogger())
        await engine.start(FLOW, {}, id="stuck")
        with closing(sqlite3.connect(db)) as conn, conn:
            conn.execute(
                "CREATE TRIGGER refuse BEFORE UPDATE ON flux_runs WHEN NEW.id = 'stuck' "
                "AND NEW.status <> 'running' AND NEW.status <> 'pending' "
                "BEGIN SELECT RAISE(ABORT, 'the disk says no'); END"
            )
        run = await storage.load_run("stuck")
        assert run is not None
        with pytest.raises(StorageError, match="the disk says no"):
            await engine.resume(FLOW, "stuck")
        stored = await storage.load_run("stuck")
        assert stored is not None and stored.status is RunStatus.RUNNING
        assert stored.lease is None
        await engine.close()

    asyncio.run(scenario())
