"""SPEC §9: a run executed by one process is cancelled from another, within one heartbeat:
an async step in flight is cancelled where it awaits, a sync one sees `ctx.cancelled`, no
further step starts, the completed steps are compensated, and the run ends `cancelled`."""

from __future__ import annotations

import asyncio

import pytest

from flux import FluxEngine, FluxSilentLogger, RunStatus, SQLiteStorage

from .conftest import Worker


@pytest.mark.parametrize(("flow", "seen"), [("slow-async", None), ("slow-sync", "saw-cancel")])
def test_a_run_held_by_another_process_is_cancelled_within_a_heartbeat(
    worker: Worker, flow: str, seen: str | None
) -> None:
    proc = worker.start("execute", flow, "c-1", LEASE_SECONDS="1")
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "blocked"  # the step is in flight

    async def cancel() -> RunStatus:
        engine = FluxEngine(storage=SQLiteStorage(worker.db), logger=FluxSilentLogger())
        try:
            result = await engine.cancel("c-1", reason="customer asked")
            return result.status
        finally:
            await engine.close()

    # held (and heartbeating) elsewhere: the request is stored, the holder carries it out
    assert asyncio.run(cancel()) is RunStatus.RUNNING
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    assert out.splitlines() == ["c-1 cancelled RunCancelledError"]
    effects = worker.effects_count()
    assert effects[("c-1", "reserve", "undo-done")] == 1
    assert effects[("c-1", "never", "start")] == 0
    assert effects[("c-1", "work", "after-await")] == 0
    if seen is not None:
        assert effects[("c-1", "work", seen)] == 1
