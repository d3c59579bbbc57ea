"""Azure Functions (Python v2 programming model), with the `azure-functions` library.

    POST /api/orders                  start an order (body: the order as JSON)
    POST /api/orders/{id}/approval    deliver the manager's decision (a signal)
    GET  /api/orders/{id}             the order's run as it stands
    queue "orders"                    one order per message; the message id is the run id

The functions are `async`: the Functions host runs them on its event loop, and they await
the engine's async methods. The engine is built once per worker, at the first invocation,
and reused by the next ones. Its storage and trace live outside the functions:
`FLUX_STORAGE` (default `sqlite:////tmp/flux.db`) and `FLUX_TRACE` (default
`/tmp/.flux/trace.ndjson`), set as application settings. In production use PostgreSQL
(`FLUX_STORAGE=postgresql://...`), which every instance of the app shares.

The Functions host loads `function_app.py`: deploy this file under that name, next to
`order_workflow.py`, a `requirements.txt` with `gravito-flux` and azure-functions, and a
`host.json`. With Azure Functions Core Tools installed, `func start` in that folder serves it.

Run the local demo (it calls the functions with `azure.functions.HttpRequest` objects, as the
host does)::

    python examples/serverless/azure_function.py
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import uuid
from typing import Any

import azure.functions as func
from order_workflow import describe, error_code, order_flow, start_once, status_code

from flux import FluxEngine, FluxError, InputValidationError, RunConflictError, RunStatus
from flux.integrations import FluxSettings

log = logging.getLogger("orders")

app = func.FunctionApp(http_auth_level=func.AuthLevel.FUNCTION)

_engine: FluxEngine | None = None


def engine() -> FluxEngine:
    """The worker's engine: built at the first invocation, reused by the next ones."""
    global _engine
    if _engine is None:
        settings = FluxSettings.from_env(
            storage="sqlite:////tmp/flux.db", trace_path="/tmp/.flux/trace.ndjson"
        )
        _engine = settings.create_engine()
    return _engine


def _json(body: dict[str, Any], status: int) -> func.HttpResponse:
    return func.HttpResponse(json.dumps(body, default=str), status_code=status, mimetype="application/json")


def _body(req: func.HttpRequest) -> dict[str, Any] | None:
    try:
        value = req.get_json()
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


async def _run(step: Any) -> func.HttpResponse:
    try:
        result = await step
    except FluxError as exc:
        return _json({"error": str(exc), "type": type(exc).__name__}, error_code(exc))
    finally:
        _flush_trace()
    return _json(describe(result), status_code(result))


@app.route(route="orders", methods=["POST"])
async def place_order(req: func.HttpRequest) -> func.HttpResponse:
    order = _body(req)
    if order is None:
        return _json({"error": "the body must be a JSON object"}, 400)
    run_id = str(order["order_id"]) if "order_id" in order else None  # a retried POST is idempotent
    return await _run(engine().execute(order_flow, order, id=run_id))


@app.route(route="orders/{order_id}/approval", methods=["POST"])
async def approve_order(req: func.HttpRequest) -> func.HttpResponse:
    decision = _body(req)
    if decision is None:
        return _json({"error": "the body must be a JSON object"}, 400)
    return await _run(engine().signal(order_flow, req.route_params["order_id"], "approval", decision))


@app.route(route="orders/{order_id}", methods=["GET"])
async def get_order(req: func.HttpRequest) -> func.HttpResponse:
    return await _run(engine().get(req.route_params["order_id"]))


@app.queue_trigger(arg_name="msg", queue_name="orders", connection="AzureWebJobsStorage")
async def order_from_queue(msg: func.QueueMessage) -> None:
    """Returning deletes the message; raising makes it visible again (up to the queue's
    maxDequeueCount, then it goes to the poison queue)."""
    message_id = str(msg.id)
    try:
        result = await start_once(engine(), message_id, msg.get_json())
    except (ValueError, InputValidationError, RunConflictError) as exc:
        log.error("order message %s refused: %s", message_id, exc)  # it would never succeed
        return
    finally:
        _flush_trace()
    if result.status in (RunStatus.RUNNING, RunStatus.ROLLING_BACK):
        raise RuntimeError(f"run {message_id} is being executed by another instance; deliver it again later")
    log.info("order run %s: %s", result.id, result.status.value)


def _flush_trace() -> None:
    flush = getattr(_engine.trace if _engine is not None else None, "flush", None)
    if callable(flush):
        flush()


# ---------------------------------------------------------------- local demo


def http_request(method: str, url: str, body: Any = None, **route_params: str) -> func.HttpRequest:
    """An `HttpRequest` as the Functions host builds it for a route."""
    return func.HttpRequest(
        method=method,
        url=f"https://shop.azurewebsites.net{url}",
        headers={"content-type": "application/json"},
        route_params=route_params,
        body=b"" if body is None else json.dumps(body).encode(),
    )


async def demo() -> None:
    tag = uuid.uuid4().hex[:6]
    order_id = f"ORD-{tag}"
    large = {"order_id": order_id, "customer": "alan", "amount_cents": 250_000, "items": ["laptop"]}
    calls = (
        ("POST /api/orders", place_order, http_request("POST", "/api/orders", large)),
        (
            "POST approval",
            approve_order,
            http_request("POST", f"/api/orders/{order_id}/approval", {"approved": True}, order_id=order_id),
        ),
        ("GET", get_order, http_request("GET", f"/api/orders/{order_id}", order_id=order_id)),
    )
    for title, function, req in calls:
        response = await function.build().get_user_function()(req)
        body = json.loads(response.get_body())
        print(f"{title:<18} {response.status_code} {body.get('status')}  {json.dumps(body)}")
    small = {**large, "order_id": f"Q-{tag}", "amount_cents": 990}
    message = func.QueueMessage(id=f"msg-{tag}", body=json.dumps(small).encode())
    queue = order_from_queue.build().get_user_function()
    await queue(message)
    await queue(message)  # delivered twice: the run is not started again
    print(f"queue message {message.id}: {(await engine().get(str(message.id))).status.value}")
    print(f"storage: {os.environ.get('FLUX_STORAGE', 'sqlite:////tmp/flux.db')}")
    print(f"trace:   {os.environ.get('FLUX_TRACE', '/tmp/.flux/trace.ndjson')}  (flux dev --trace ...)")
    await engine().close()


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    asyncio.run(demo())
