"""Google Cloud Functions (Cloud Run functions), with Google's Functions Framework.

    orders           HTTP function
        POST /                    start an order (body: the order as JSON)
        POST /{id}/approval       deliver the manager's decision (a signal)
        GET  /{id}                the order's run as it stands
    order_events     CloudEvent function for a Pub/Sub topic: one order per message,
                     the message id as the run id (a redelivery is idempotent)

The engine is built once per instance, at the first request, and reused by the next ones.
Its storage and trace live outside the function: `FLUX_STORAGE` (default
`sqlite:////tmp/flux.db`) and `FLUX_TRACE` (default `/tmp/.flux/trace.ndjson`). `/tmp` is
the instance's own memory: in production use PostgreSQL (`FLUX_STORAGE=postgresql://...`).

The Functions Framework serves requests from several threads; the engine's `_sync` methods
may be called from any number of threads at once (they hand the work to the engine's own
event loop), so only the building of the engine takes a lock.

Run it locally (`pip install functions-framework`)::

    functions-framework --source examples/serverless/gcp_function.py --target orders --port 8080
    curl -X POST localhost:8080/ -H 'content-type: application/json' \\
         -d '{"order_id": "ORD-1", "customer": "ada", "amount_cents": 250000, "items": ["laptop"]}'
    curl -X POST localhost:8080/ORD-1/approval -H 'content-type: application/json' \\
         -d '{"approved": true, "by": "maria"}'
    curl localhost:8080/ORD-1

or the demo, which sends the same requests through the framework's app in-process::

    python examples/serverless/gcp_function.py

Deploy with `gcloud functions deploy orders --gen2 --runtime python312 --trigger-http
--entry-point orders --source DIR`, where DIR holds this file as `main.py`,
`order_workflow.py` and a `requirements.txt` with `gravito-flux`.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import os
import threading
import uuid
from typing import Any

import flask
import functions_framework
from cloudevents.http import CloudEvent
from order_workflow import describe, error_code, order_flow, start_once_sync, status_code

from flux import FluxEngine, FluxError, InputValidationError, RunConflictError, RunStatus
from flux.integrations import FluxSettings

log = logging.getLogger("orders")

_engine: FluxEngine | None = None
_engine_lock = threading.Lock()

Response = tuple[dict[str, Any], int]


def engine() -> FluxEngine:
    """The instance's engine: built once, by the first request, then reused."""
    global _engine
    with _engine_lock:
        if _engine is None:
            settings = FluxSettings.from_env(
                storage="sqlite:////tmp/flux.db", trace_path="/tmp/.flux/trace.ndjson"
            )
            _engine = settings.create_engine()
        return _engine


@functions_framework.http
def orders(request: flask.Request) -> Response:
    """The HTTP entry point (`--target orders`)."""
    parts = [p for p in request.path.split("/") if p]
    if parts[:1] == ["orders"]:  # served under /orders as well as at the root
        parts = parts[1:]
    try:
        if request.method == "POST" and not parts:
            order = request.get_json(silent=True)
            if not isinstance(order, dict):
                return {"error": "the body must be a JSON object"}, 400
            run_id = str(order["order_id"]) if "order_id" in order else None  # a retried POST is idempotent
            result = engine().execute_sync(order_flow, order, id=run_id)
        elif request.method == "POST" and len(parts) == 2 and parts[1] == "approval":
            decision = request.get_json(silent=True)
            if not isinstance(decision, dict):
                return {"error": "the body must be a JSON object"}, 400
            result = engine().signal_sync(order_flow, parts[0], "approval", decision)
        elif request.method == "GET" and len(parts) == 1:
            result = engine().get_sync(parts[0])
        else:
            return {"error": f"no route for {request.method} {request.path}"}, 404
    except FluxError as exc:
        return {"error": str(exc), "type": type(exc).__name__}, error_code(exc)
    finally:
        _flush_trace()
    return describe(result), status_code(result)


@functions_framework.cloud_event
def order_events(cloud_event: CloudEvent) -> None:
    """The Pub/Sub entry point (`--target order_events --signature-type cloudevent`).

    Returning acknowledges the message; raising has it delivered again (with retries on)."""
    message = (cloud_event.get_data() or {}).get("message", {})
    message_id = str(message.get("messageId") or cloud_event["id"])
    try:
        order = json.loads(base64.b64decode(message.get("data", "")))
        result = start_once_sync(engine(), message_id, order)
    except (ValueError, binascii.Error, InputValidationError, RunConflictError) as exc:
        log.error("order message %s refused: %s", message_id, exc)  # it would never succeed
        return
    finally:
        _flush_trace()
    if result.status in (RunStatus.RUNNING, RunStatus.ROLLING_BACK):
        raise RuntimeError(f"run {message_id} is being executed by another instance; deliver it again later")
    log.info("order run %s: %s", result.id, result.status.value)


def _flush_trace() -> None:
    # An instance gets no CPU between requests: write the buffered trace events now.
    flush = getattr(_engine.trace if _engine is not None else None, "flush", None)
    if callable(flush):
        flush()


# ---------------------------------------------------------------- local demo


def demo() -> None:
    """Send requests through the Functions Framework's own app, in this process."""
    app: flask.Flask = functions_framework.create_app(target="orders", source=__file__)  # type: ignore[no-untyped-call]
    client = app.test_client()
    tag = uuid.uuid4().hex[:6]
    large = {"order_id": f"ORD-{tag}", "customer": "alan", "amount_cents": 250_000, "items": ["laptop"]}
    for title, response in (
        ("POST /", client.post("/", json=large)),
        (
            "POST approval",
            client.post(f"/{large['order_id']}/approval", json={"approved": True, "by": "maria"}),
        ),
        ("GET", client.get(f"/{large['order_id']}")),
    ):
        body = response.get_json()
        print(f"{title:<16} {response.status_code} {body.get('status')}  {json.dumps(body)}")
    print(f"storage: {os.environ.get('FLUX_STORAGE', 'sqlite:////tmp/flux.db')}")
    print(f"trace:   {os.environ.get('FLUX_TRACE', '/tmp/.flux/trace.ndjson')}  (flux dev --trace ...)")


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    demo()
