"""flux.integrations.starlette: the lifespan that gives an app its engine, with a real
Starlette application driven through TestClient."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import threading
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from flux import (
    Flux,
    FluxEngine,
    FluxError,
    FluxResult,
    FluxSilentLogger,
    MemoryTraceSink,
    WaitRequest,
    WorkflowContext,
    create_workflow,
)
from flux.integrations import FluxSettings
from flux.integrations.starlette import flux_lifespan, get_flux

from .conftest import Records, TestClient

# ---------------------------------------------------------------- the application


def _review(ctx: WorkflowContext[Any]) -> dict[str, Any] | WaitRequest:
    if ctx.input["amount"] > 100:
        return Flux.wait("approval")
    return {"approved": True, "by": "policy"}


approval = (
    create_workflow("expense")
    .step("submit", lambda ctx: {"amount": ctx.input["amount"]})
    .step("approval", _review)
    .step("pay", lambda ctx: {"paid": ctx.input["amount"], "by": ctx.outputs["approval"]["by"]})
)


class Gate:
    """Blocks the `pack` step's first call, so that a run can be left `running`."""

    block = False
    entered: asyncio.Event | None = None


async def _pack(ctx: WorkflowContext[Any]) -> str:
    if Gate.block:
        assert Gate.entered is not None
        Gate.entered.set()
        await asyncio.Event().wait()
    return "packed"


shipping = create_workflow("shipping").step("label", lambda ctx: "L-1").step("pack", _pack)


def _body(result: FluxResult) -> dict[str, Any]:
    return {
        "id": result.id,
        "status": result.status.value,
        "waiting_for": result.waiting_for,
        "outputs": dict(result.outputs),
    }


async def start(request: Request) -> JSONResponse:
    body = await request.json()
    result = await get_flux(request).execute(approval, {"amount": body["amount"]}, id=body["id"])
    return JSONResponse(_body(result), status_code=202 if result.waiting_for else 200)


async def approve(request: Request) -> JSONResponse:
    payload = await request.json()
    run_id = request.path_params["run_id"]
    result = await get_flux(request).signal(approval, run_id, "approval", payload)
    return JSONResponse(_body(result))


async def show(request: Request) -> JSONResponse:
    return JSONResponse(_body(await get_flux(request).get(request.path_params["run_id"])))


routes = [
    Route("/expenses", start, methods=["POST"]),
    Route("/expenses/{run_id}/approve", approve, methods=["POST"]),
    Route("/expenses/{run_id}", show),
]


def make_app(**kwargs: Any) -> Starlette:
    kwargs.setdefault("logger", FluxSilentLogger())
    return Starlette(routes=routes, lifespan=flux_lifespan(**kwargs))


async def leave_running(storage: str, run_id: str) -> None:
    """Start a shipping run and stop its process's work mid-step, as a crash would."""
    Gate.block, Gate.entered = True, asyncio.Event()
    engine = FluxEngine(storage, logger=FluxSilentLogger())
    task = asyncio.create_task(engine.execute(shipping, {"order": run_id}, id=run_id))
    await Gate.entered.wait()
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    await engine.close()
    Gate.block = False
    async with FluxEngine(storage, logger=FluxSilentLogger()) as check:
        assert (await check.get(run_id)).status == "running"


# ---------------------------------------------------------------- tests


def test_a_request_starts_a_workflow_and_a_second_one_signals_it(tmp_path: Path) -> None:
    trace = tmp_path / "trace.ndjson"
    app = make_app(storage=f"sqlite:///{tmp_path / 'flux.db'}", trace_path=str(trace), flows=[approval])
    with TestClient(app) as client:
        started = client.post("/expenses", json={"id": "EXP-1", "amount": 420})
        assert started.status_code == 202
        assert started.json() == {"id": "EXP-1", "status": "suspended", "waiting_for": "approval",
                                  "outputs": {"submit": {"amount": 420}}}  # fmt: skip
        approved = client.post("/expenses/EXP-1/approve", json={"approved": True, "by": "maria"})
        assert approved.status_code == 200
        assert approved.json()["status"] == "completed"
        assert approved.json()["outputs"]["pay"] == {"paid": 420, "by": "maria"}
        assert client.get("/expenses/EXP-1").json()["status"] == "completed"
        small = client.post("/expenses", json={"id": "EXP-2", "amount": 12})
        assert small.status_code == 200 and small.json()["status"] == "completed"
    events = [json.loads(line) for line in trace.read_text().splitlines()]
    assert [e["type"] for e in events if e["workflowId"] == "EXP-1"][-2:] == [
        "step:complete",
        "workflow:complete",
    ]


def test_the_engine_lives_on_app_state_for_the_apps_lifetime(tmp_path: Path) -> None:
    app = make_app(storage=f"sqlite:///{tmp_path / 'flux.db'}")
    with TestClient(app):
        engine = app.state.flux
        assert isinstance(engine, FluxEngine)
        assert engine.storage.durable
    assert app.state.flux is None
    with pytest.raises(FluxError, match="closed"):
        engine.execute_sync(approval, {"amount": 1})


def test_settings_and_keyword_arguments_combine(tmp_path: Path) -> None:
    settings = FluxSettings(storage="memory://", default_retries=7, default_timeout=5.0)
    app = Starlette(
        routes=routes, lifespan=flux_lifespan(settings, default_retries=1, trace=MemoryTraceSink())
    )
    with TestClient(app):
        engine = app.state.flux
        assert (engine.default_retries, engine.default_timeout) == (1, 5.0)
        assert isinstance(engine.trace, MemoryTraceSink)


def test_a_run_left_running_is_recovered_at_startup(tmp_path: Path, flux_log: Records) -> None:
    storage = f"sqlite:///{tmp_path / 'flux.db'}"
    asyncio.run(leave_running(storage, "SHIP-1"))
    app = make_app(storage=storage, flows=[approval, shipping])
    with TestClient(app) as client:
        # Recovery finished before the app took its first request.
        assert client.get("/expenses/SHIP-1").json() == {
            "id": "SHIP-1",
            "status": "completed",
            "waiting_for": None,
            "outputs": {"label": "L-1", "pack": "packed"},
        }
    assert "flux: recovered 1 run(s) left running: 1 completed" in flux_log.messages(logging.INFO)


def test_recovery_can_run_in_the_background(tmp_path: Path) -> None:
    storage = f"sqlite:///{tmp_path / 'flux.db'}"
    asyncio.run(leave_running(storage, "SHIP-2"))
    finished = threading.Event()
    app = make_app(
        storage=storage,
        flows=[shipping],
        recover_in_background=True,
        on={"workflow_complete": lambda ctx: finished.set()},
    )
    with TestClient(app) as client:
        assert finished.wait(timeout=30)
        assert client.get("/expenses/SHIP-2").json()["status"] == "completed"


def test_recovery_can_be_turned_off(tmp_path: Path) -> None:
    storage = f"sqlite:///{tmp_path / 'flux.db'}"
    asyncio.run(leave_running(storage, "SHIP-3"))
    app = make_app(storage=storage, flows=[shipping], recover_on_startup=False)
    with TestClient(app) as client:
        assert client.get("/expenses/SHIP-3").json()["status"] == "running"


def test_without_flows_a_durable_app_warns_that_nothing_is_recovered(
    tmp_path: Path, flux_log: Records
) -> None:
    with TestClient(make_app(storage=f"sqlite:///{tmp_path / 'flux.db'}")):
        pass
    assert any("no flows=[...]" in m for m in flux_log.messages(logging.WARNING))
    flux_log.records.clear()
    with TestClient(make_app(storage="memory://")):
        pass
    assert flux_log.messages(logging.WARNING) == []


def test_the_apps_own_lifespan_runs_inside_with_the_engine_ready() -> None:
    seen: list[str] = []

    @contextlib.asynccontextmanager
    async def own(app: Starlette) -> AsyncIterator[dict[str, Any]]:
        engine: FluxEngine = app.state.flux
        result = await engine.execute(approval, {"amount": 1}, id="WARMUP")
        seen.append(f"start {result.status.value}")
        yield {"greeting": "hello"}
        seen.append(f"stop, engine still open: {app.state.flux is engine}")

    async def greet(request: Request) -> JSONResponse:
        return JSONResponse({"greeting": request.state.greeting})

    app = Starlette(
        routes=[Route("/greet", greet)],
        lifespan=flux_lifespan(storage="memory://", lifespan=own, logger=FluxSilentLogger()),
    )
    with TestClient(app) as client:
        assert client.get("/greet").json() == {"greeting": "hello"}
    assert seen == ["start completed", "stop, engine still open: True"]


def test_get_flux_without_the_lifespan_says_how_to_set_it_up() -> None:
    app = Starlette(routes=routes)
    with (
        TestClient(app, raise_server_exceptions=True) as client,
        pytest.raises(FluxError, match="flux_lifespan"),
    ):
        client.get("/expenses/X")


def test_bad_settings_are_refused_where_the_app_is_built() -> None:
    with pytest.raises(FluxError, match="unknown setting 'storag'"):
        flux_lifespan(storag="memory://")
    with pytest.raises(FluxError, match="expected workflows"):
        flux_lifespan(flows=["expense"])  # type: ignore[list-item]
