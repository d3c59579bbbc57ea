"""examples/serverless/azure_function.py, as the Azure Functions host sees it: the v2 app's
function index, and its functions called with `azure.functions` request and queue objects."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import azure.functions as func
import pytest

from .conftest import close_engine, load_example, run_demo, trace_events


@pytest.fixture
def az(serverless: Path) -> Iterator[ModuleType]:
    module = load_example("azure_function")
    yield module
    engine = getattr(module, "_engine", None)
    if engine is not None:
        asyncio.run(engine.close())
    close_engine(module)


def function(module: ModuleType, name: str) -> Callable[..., Awaitable[Any]]:
    """The user function the host would call for `name`."""
    built: Callable[..., Awaitable[Any]] = getattr(module, name).build().get_user_function()
    return built


def order(order_id: str, amount_cents: int = 4_200) -> dict[str, Any]:
    return {"order_id": order_id, "customer": "ada", "amount_cents": amount_cents, "items": ["book"]}


def http_request(method: str, url: str, body: Any = None, **route_params: str) -> func.HttpRequest:
    return func.HttpRequest(
        method=method,
        url=f"https://shop.azurewebsites.net{url}",
        headers={"content-type": "application/json"},
        route_params=route_params,
        body=b"" if body is None else (body if isinstance(body, bytes) else json.dumps(body).encode()),
    )


async def call(module: ModuleType, name: str, req: func.HttpRequest) -> tuple[int, dict[str, Any]]:
    response: func.HttpResponse = await function(module, name)(req)
    assert response.mimetype == "application/json"
    return response.status_code, json.loads(response.get_body())


def test_the_app_indexes_its_functions_as_the_host_reads_them(az: ModuleType) -> None:
    functions = {f.get_function_name(): json.loads(f.get_function_json()) for f in az.app.get_functions()}
    assert set(functions) == {"place_order", "approve_order", "get_order", "order_from_queue"}
    routes = {
        name: (b["route"], b["methods"], b["authLevel"])
        for name, spec in functions.items()
        for b in spec["bindings"]
        if b["type"] == "httpTrigger"
    }
    assert routes == {
        "place_order": ("orders", ["POST"], "FUNCTION"),
        "approve_order": ("orders/{order_id}/approval", ["POST"], "FUNCTION"),
        "get_order": ("orders/{order_id}", ["GET"], "FUNCTION"),
    }
    queue = next(b for b in functions["order_from_queue"]["bindings"] if b["type"] == "queueTrigger")
    assert (queue["queueName"], queue["name"]) == ("orders", "msg")


def test_a_request_starts_an_order_and_a_second_approves_it(az: ModuleType, serverless: Path) -> None:
    import order_workflow

    async def scenario() -> None:
        status, body = await call(
            az, "place_order", http_request("POST", "/api/orders", order("ORD-1", 250_000))
        )
        assert (status, body["status"], body["waiting_for"]) == (202, "suspended", "approval")
        first_engine = az._engine
        approval = http_request("POST", "/api/orders/ORD-1/approval", {"approved": True}, order_id="ORD-1")
        status, body = await call(az, "approve_order", approval)
        assert (status, body["status"]) == (200, "completed")
        assert body["outputs"]["charge"]["payment"] == "ORD-1:charge"
        status, body = await call(az, "get_order", http_request("GET", "/api/orders/ORD-1", order_id="ORD-1"))
        assert (status, body["status"]) == (200, "completed")
        assert az._engine is first_engine  # one engine for the worker

    asyncio.run(scenario())
    assert order_workflow.services.charge_calls == 1
    assert [e["type"] for e in trace_events(serverless)][-1] == "workflow:complete"


def test_errors_have_their_status(az: ModuleType) -> None:
    async def scenario() -> None:
        missing = http_request("GET", "/api/orders/NOPE", order_id="NOPE")
        assert (await call(az, "get_order", missing))[0] == 404
        assert (await call(az, "place_order", http_request("POST", "/api/orders", b"{oops")))[0] == 400
        status, body = await call(az, "place_order", http_request("POST", "/api/orders", {"order_id": "X"}))
        assert (status, body["type"]) == (400, "InputValidationError")
        await call(az, "place_order", http_request("POST", "/api/orders", order("ORD-2")))
        again = http_request("POST", "/api/orders/ORD-2/approval", {"approved": True}, order_id="ORD-2")
        status, body = await call(az, "approve_order", again)
        assert (status, body["type"]) == (409, "RunStateError")

    asyncio.run(scenario())


def test_a_redelivered_queue_message_does_not_run_the_workflow_twice(
    az: ModuleType, serverless: Path
) -> None:
    import order_workflow

    message = func.QueueMessage(id="q-1", body=json.dumps(order("Q1")).encode())

    async def scenario() -> None:
        queue = function(az, "order_from_queue")
        await queue(message)
        await queue(message)  # visible again after a timeout: delivered a second time

    asyncio.run(scenario())
    assert order_workflow.services.charge_calls == 1
    assert order_workflow.services.mails == ["ada: order Q1 confirmed"]
    starts = [e["stepName"] for e in trace_events(serverless) if e["type"] == "step:start"]
    assert starts == ["validate", "reserve", "approval", "charge", "notify"]


def test_a_malformed_queue_message_is_consumed(az: ModuleType, serverless: Path) -> None:
    async def scenario() -> None:
        queue = function(az, "order_from_queue")
        await queue(func.QueueMessage(id="q-2", body=b"{not json"))
        await queue(func.QueueMessage(id="q-3", body=json.dumps({"order_id": "no fields"}).encode()))

    asyncio.run(scenario())
    assert trace_events(serverless) == []


def test_the_demo_runs_as_a_script(tmp_path: Path) -> None:
    out = run_demo("azure_function", tmp_path)
    assert "POST approval      200 completed" in out
    assert "completed" in out.splitlines()[3]
