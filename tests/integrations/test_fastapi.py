"""flux.integrations.fastapi: a real FastAPI app, its engine handed over by a dependency."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any

from fastapi import Depends, FastAPI, HTTPException
from pydantic import BaseModel

from flux import (
    Flux,
    FluxEngine,
    FluxSilentLogger,
    MemoryTraceSink,
    RunNotFoundError,
    RunStateError,
    WaitRequest,
    WorkflowContext,
    create_workflow,
)
from flux.integrations.fastapi import FluxEngineDep, FluxSettings, flux_lifespan, get_flux

from .conftest import TestClient


class Order(BaseModel):
    id: str
    customer: str
    total: Decimal


class Approval(BaseModel):
    approved: bool
    by: str


def _check(ctx: WorkflowContext[Any]) -> dict[str, Any] | WaitRequest:
    if Decimal(ctx.input["total"]) >= 1000:
        return Flux.wait("approval")
    return {"approved": True, "by": "policy"}


def _ship(ctx: WorkflowContext[Any]) -> dict[str, str]:
    if not ctx.outputs["review"]["approved"]:
        return {"shipped": "no"}
    return {"shipped": "yes", "key": ctx.idempotency_key}


orders = create_workflow("order").step("review", _check).commit("ship", _ship)


def create_app(settings: FluxSettings, trace: MemoryTraceSink) -> FastAPI:
    app = FastAPI(lifespan=flux_lifespan(settings, flows=[orders], trace=trace, logger=FluxSilentLogger()))

    @app.post("/orders", status_code=202)
    async def place(order: Order, flux: FluxEngineDep) -> dict[str, Any]:
        result = await flux.execute(orders, order.model_dump(mode="json"), id=order.id)
        return {"id": result.id, "status": result.status, "waiting_for": result.waiting_for}

    @app.post("/orders/{order_id}/approval")
    async def decide(order_id: str, decision: Approval, flux: FluxEngineDep) -> dict[str, Any]:
        try:
            result = await flux.signal(orders, order_id, "approval", decision.model_dump())
        except RunNotFoundError:
            raise HTTPException(404, f"no order {order_id}") from None
        except RunStateError as exc:
            raise HTTPException(409, str(exc)) from None
        return {"id": result.id, "status": result.status, "outputs": dict(result.outputs)}

    @app.get("/orders/{order_id}")
    async def status(order_id: str, flux: Annotated[FluxEngine, Depends(get_flux)]) -> dict[str, Any]:
        result = await flux.get(order_id)
        return {"status": result.status, "history": [(s.name, s.status) for s in result.history]}

    return app


def test_a_request_starts_a_run_and_a_second_request_signals_it(tmp_path: Path) -> None:
    trace = MemoryTraceSink()
    app = create_app(FluxSettings(storage=f"sqlite:///{tmp_path / 'flux.db'}"), trace)
    with TestClient(app) as client:
        placed = client.post("/orders", json={"id": "ORD-1", "customer": "ada", "total": "1250.00"})
        assert placed.status_code == 202
        assert placed.json() == {"id": "ORD-1", "status": "suspended", "waiting_for": "approval"}

        decided = client.post("/orders/ORD-1/approval", json={"approved": True, "by": "maria"})
        assert decided.status_code == 200
        assert decided.json() == {
            "id": "ORD-1",
            "status": "completed",
            "outputs": {
                "review": {"approved": True, "by": "maria"},
                "ship": {"shipped": "yes", "key": "ORD-1:ship"},
            },
        }
        assert client.get("/orders/ORD-1").json() == {
            "status": "completed",
            "history": [["review", "completed"], ["ship", "completed"]],
        }

        again = client.post("/orders/ORD-1/approval", json={"approved": True, "by": "maria"})
        assert again.status_code == 409 and "not suspended" in again.json()["detail"]
        assert client.post("/orders/NOPE/approval", json={"approved": True, "by": "x"}).status_code == 404

        # The same order posted twice (a client retry) is the same run: nothing runs twice.
        replay = client.post("/orders", json={"id": "ORD-1", "customer": "ada", "total": "1250.00"})
        assert replay.json()["status"] == "completed"
    assert [e["type"] for e in trace.events].count("step:start") == 2  # review, then ship: once each


def test_small_orders_complete_in_the_first_request() -> None:
    app = create_app(FluxSettings(), MemoryTraceSink())
    with TestClient(app) as client:
        placed = client.post("/orders", json={"id": "ORD-2", "customer": "alan", "total": "12.50"})
        assert placed.json() == {"id": "ORD-2", "status": "completed", "waiting_for": None}
