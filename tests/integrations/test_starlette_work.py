"""`flux_lifespan(..., work=True)`: the application is also a worker, and takes due runs."""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from starlette.applications import Starlette

from flux import Flux, FluxEngine, FluxError, RunStatus, SQLiteStorage, create_workflow
from flux.integrations.starlette import flux_lifespan

from .conftest import TestClient

nap = create_workflow("nap").step("sleep", lambda ctx: Flux.sleep(5)).step("after", lambda ctx: "awake")


class Earlier:
    """The system clock, ten seconds ago: a run stored with it is due now for real."""

    def now(self) -> float:
        return time.time() - 10

    async def sleep(self, seconds: float) -> None:  # pragma: no cover - nothing sleeps here
        await asyncio.sleep(seconds)


def test_the_application_worker_wakes_a_due_run(tmp_path: Path) -> None:
    db = tmp_path / "flux.db"

    async def store() -> None:
        engine = FluxEngine(storage=SQLiteStorage(db), clock=Earlier(), inline_sleep=0)
        try:
            assert (await engine.execute(nap, id="nap-1")).status is RunStatus.SUSPENDED
        finally:
            await engine.close()

    asyncio.run(store())
    finished = threading.Event()
    app = Starlette(
        lifespan=flux_lifespan(
            storage=f"sqlite:///{db}",
            flows=[nap],
            work=True,
            on={"workflow_complete": lambda ctx: finished.set()},
        )
    )
    with TestClient(app):
        assert finished.wait(timeout=30)
        engine: Any = app.state.flux
        assert engine.get_sync("nap-1").outputs == {"sleep": None, "after": "awake"}


def test_work_needs_flows() -> None:
    with pytest.raises(FluxError, match=r"work=True.*flows="):
        flux_lifespan(storage="memory://", work=True)
