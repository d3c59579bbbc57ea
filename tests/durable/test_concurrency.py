"""Several processes on one SQLite file at once."""

from __future__ import annotations

import asyncio

from flux import FluxEngine, RunStatus, SQLiteStorage

from .conftest import Worker


def test_four_processes_two_hundred_runs_each(worker: Worker) -> None:
    procs = [worker.start("many", f"p{k}", "200") for k in range(4)]
    outputs = []
    for proc in procs:
        out, err = proc.communicate(timeout=600)
        assert proc.returncode == 0, err
        assert "locked" not in err
        outputs.append(out)
    # A shared id that another process is executing comes back "running"; all others completed.
    effects = worker.effects_count()
    run_ids = [f"p{k}-{i}" for k in range(4) for i in range(200)] + [f"shared-{i}" for i in range(50)]
    for run_id in run_ids:
        for step in ("s1", "s2", "c3", "s4", "s5"):
            assert effects[(run_id, step, "done")] == 1, (run_id, step)

    async def statuses() -> set[RunStatus]:
        engine = FluxEngine(storage=SQLiteStorage(worker.db))
        try:
            return {(await engine.get(r)).status for r in run_ids}
        finally:
            await engine.close()

    assert asyncio.run(statuses()) == {RunStatus.COMPLETED}
