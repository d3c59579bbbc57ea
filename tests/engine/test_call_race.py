"""The race of a `.call` under a worker: the child ends (on another worker) after the parent
created it but before the parent's write that suspends it on the child. The child's last
write found no parent asleep to wake; the parent's own write must then see the ended child
and make the parent due at once, or it would sleep forever."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from flux import FluxEngine, FluxSilentLogger, MemoryStorage, RunStatus, SQLiteStorage, WorkflowStorage
from flux.records import RunRecord

from .test_call import CHECKOUT, INVOICE


class Race:
    """Before the parent's suspending write reaches the storage, a second engine (another
    worker's view of the same storage) runs the child to its end."""

    def __init__(self) -> None:
        self.other: FluxEngine | None = None
        self.raced = False

    async def before_save(self, run: RunRecord) -> None:
        if not self.raced and run.status is RunStatus.SUSPENDED and run.waiting_for == "child:R1/invoice":
            self.raced = True
            assert self.other is not None
            assert await self.other.work([INVOICE], burst=True) == 1
            child = await self.other.storage.load_run("R1/invoice")
            assert child is not None and child.status is RunStatus.COMPLETED


class RacingMemory(MemoryStorage):
    def __init__(self, race: Race) -> None:
        super().__init__()
        self.race = race

    async def save_run(self, run: RunRecord, steps: Sequence[int], owner: str | None) -> None:
        await self.race.before_save(run)
        await super().save_run(run, steps, owner)


class RacingSQLite(SQLiteStorage):
    def __init__(self, path: Path, race: Race) -> None:
        super().__init__(path)
        self.race = race

    async def save_run(self, run: RunRecord, steps: Sequence[int], owner: str | None) -> None:
        await self.race.before_save(run)
        await super().save_run(run, steps, owner)


@pytest.mark.parametrize("kind", ["memory", "sqlite"])
def test_a_child_that_ends_before_its_parent_suspends_leaves_the_parent_due(
    kind: str, tmp_path: Path
) -> None:
    race = Race()
    storage: WorkflowStorage
    if kind == "memory":
        storage = other_storage = RacingMemory(race)
    else:
        storage = RacingSQLite(tmp_path / "flux.db", race)
        other_storage = SQLiteStorage(tmp_path / "flux.db")
    engine = FluxEngine(storage=storage, logger=FluxSilentLogger())
    race.other = FluxEngine(storage=other_storage, logger=FluxSilentLogger())

    async def scenario() -> Any:
        await engine.start(CHECKOUT, {"id": 4}, id="R1")
        claimed = await storage.claim_next(["checkout"], engine.leases.new())
        assert claimed is not None
        await engine._run_claimed(CHECKOUT, claimed, inline=False)
        assert race.raced
        parked = await storage.load_run("R1")
        assert parked is not None and parked.status is RunStatus.SUSPENDED
        assert parked.timer == "child" and parked.due_at() is not None  # due, not asleep
        assert await engine.work([CHECKOUT], burst=True) == 1
        return await engine.get("R1")

    try:
        result = asyncio.run(scenario())
    finally:
        engine.close_sync()
        if kind == "sqlite":
            race.other.close_sync()
    assert result.status is RunStatus.COMPLETED, result.error
    assert result.outputs["after"]["invoice"] == "INV-4"
