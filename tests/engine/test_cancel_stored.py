"""A step cut short by a cancel is stored as cancelled (not left running or pending), and a
child's end cannot be signalled by hand (found while building `.call`)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from flux import FluxEngine, FluxSilentLogger, RunStateError, SQLiteStorage, StepStatus, create_workflow


def test_a_step_interrupted_by_a_cancel_is_stored_cancelled(tmp_path: Path) -> None:
    started = asyncio.Event()

    async def forever(ctx: Any) -> None:
        started.set()
        await asyncio.Event().wait()

    flow = create_workflow("stop").step("first", lambda ctx: 1).step("forever", forever)

    async def main() -> Any:
        engine = FluxEngine(SQLiteStorage(tmp_path / "c.db"), logger=FluxSilentLogger())
        task = asyncio.ensure_future(engine.execute(flow, {}, id="c-1"))
        await started.wait()
        await engine.cancel("c-1", reason="enough")
        await task
        await engine.close()
        storage = SQLiteStorage(tmp_path / "c.db")
        try:
            return await storage.load_run("c-1")
        finally:
            await storage.close()

    stored = asyncio.run(main())
    assert {s.name: s.status for s in stored.steps} == {
        "first": StepStatus.COMPLETED,
        "forever": StepStatus.CANCELLED,
    }


def test_a_child_end_cannot_be_signalled_by_hand(tmp_path: Path) -> None:
    flow = create_workflow("s").step("a", lambda ctx: 1)

    async def main() -> None:
        engine = FluxEngine(SQLiteStorage(tmp_path / "s.db"), logger=FluxSilentLogger())
        try:
            await engine.signal(flow, "p-1", "child:p-1/invoice", None)
        finally:
            await engine.close()

    with pytest.raises(RunStateError, match="end of a child run"):
        asyncio.run(main())
