"""AWS Lambda: one function for an API Gateway route set, an SQS queue and a schedule.

    POST /orders                      start an order (body: the order as JSON)
    POST /orders/{id}/approval        deliver the manager's decision (a signal)
    GET  /orders/{id}                 the order's run as it stands
    SQS batch                         one order per message; the message id is the run id
    EventBridge schedule              recover runs that a dead invocation left running

The engine is built once per container, at the first invocation, and reused by the next
ones (Lambda keeps the module loaded between invocations). Its storage and trace live
outside the handler: `FLUX_STORAGE` (default `sqlite:////tmp/flux.db`) and `FLUX_TRACE`
(default `/tmp/.flux/trace.ndjson`). `/tmp` belongs to one container: in production point
`FLUX_STORAGE` at PostgreSQL (`postgresql://...`) so that every container sees every run.

An SQS message may be delivered more than once. Its id is the run id, so a redelivery finds
the run: a finished one is returned as it is, an interrupted one goes on where it stopped,
and nothing runs twice. Failed messages are reported with `batchItemFailures` (enable
"ReportBatchItemFailures" on the event source mapping).

Run the local demo (it invokes the handler as Lambda would, with event dicts)::

    python examples/serverless/aws_lambda.py
"""

from __future__ import annotations

import base64
import json
import logging
import os
import uuid
from typing import Any

from order_workflow import describe, error_code, order_flow, start_once_sync, status_code

from flux import FluxEngine, FluxError, FluxResult, InputValidationError, RunConflictError, RunStatus
from flux.integrations import FluxSettings

log = logging.getLogger("orders")

_engine: FluxEngine | None = None


def engine() -> FluxEngine:
    """The container's engine: built at the first invocation, reused by the next ones."""
    global _engine
    if _engine is None:
        settings = FluxSettings.from_env(
            storage="sqlite:////tmp/flux.db", trace_path="/tmp/.flux/trace.ndjson"
        )
        _engine = settings.create_engine()
    return _engine


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """The Lambda entry point (`aws_lambda.handler`)."""
    try:
        if "Records" in event:
            return _sqs_batch(event["Records"])
        if event.get("source") == "aws.events":
            return _recover()
        return _http(event)
    finally:
        _flush_trace()  # Lambda may freeze the container as soon as the handler returns


# ---------------------------------------------------------------- API Gateway


def _http(event: dict[str, Any]) -> dict[str, Any]:
    # REST APIs (payload 1.0) and HTTP APIs (payload 2.0) name method and path differently.
    method = event.get("httpMethod") or event.get("requestContext", {}).get("http", {}).get("method", "GET")
    path = event.get("path") or event.get("rawPath") or "/"
    parts = [p for p in path.split("/") if p]
    try:
        if method == "POST" and parts == ["orders"]:
            order = _json_body(event)
            run_id = (
                str(order["order_id"]) if "order_id" in order else None
            )  # the order id: a retried POST is idempotent
            result = engine().execute_sync(order_flow, order, id=run_id)
        elif method == "POST" and len(parts) == 3 and parts[0] == "orders" and parts[2] == "approval":
            result = engine().signal_sync(order_flow, parts[1], "approval", _json_body(event))
        elif method == "GET" and len(parts) == 2 and parts[0] == "orders":
            result = engine().get_sync(parts[1])
        else:
            return _response(404, {"error": f"no route for {method} {path}"})
    except ValueError as exc:
        return _response(400, {"error": f"the body is not a JSON object: {exc}"})
    except FluxError as exc:
        return _response(error_code(exc), {"error": str(exc), "type": type(exc).__name__})
    return _response(status_code(result), describe(result))


def _json_body(event: dict[str, Any]) -> dict[str, Any]:
    body = event.get("body") or "{}"
    if event.get("isBase64Encoded"):
        body = base64.b64decode(body).decode("utf-8")
    value = json.loads(body)
    if not isinstance(value, dict):
        raise ValueError(f"expected an object, got {type(value).__name__}")
    return value


def _response(status: int, body: dict[str, Any]) -> dict[str, Any]:
    return {
        "statusCode": status,
        "headers": {"content-type": "application/json"},
        "body": json.dumps(body, default=str),
    }


# ---------------------------------------------------------------- SQS


def _sqs_batch(records: list[dict[str, Any]]) -> dict[str, Any]:
    failures = []
    for record in records:
        message_id = record["messageId"]
        try:
            result = start_once_sync(engine(), message_id, json.loads(record["body"]))
        except (ValueError, InputValidationError, RunConflictError) as exc:
            # A malformed order never succeeds: acknowledge it (a real function would send
            # it to a dead-letter queue) rather than receive it again and again.
            log.error("order message %s refused: %s", message_id, exc)
            continue
        except Exception:
            log.exception("order message %s: will be received again", message_id)
            failures.append({"itemIdentifier": message_id})
            continue
        if result.status in (RunStatus.RUNNING, RunStatus.ROLLING_BACK):
            # Another invocation holds this run right now: try again after the visibility timeout.
            failures.append({"itemIdentifier": message_id})
        _log_result(result)
    return {"batchItemFailures": failures}


# ---------------------------------------------------------------- schedule


def _recover() -> dict[str, Any]:
    results = engine().recover_sync([order_flow])
    for result in results:
        _log_result(result)
    return {"recovered": [describe(r) for r in results]}


def _log_result(result: FluxResult) -> None:
    log.info("order run %s: %s", result.id, result.status.value)


def _flush_trace() -> None:
    flush = getattr(engine().trace, "flush", None)
    if callable(flush):
        flush()


# ---------------------------------------------------------------- local demo


def _api_event(method: str, path: str, body: Any = None) -> dict[str, Any]:
    """An API Gateway REST proxy event, as Lambda delivers it (trimmed to what is read)."""
    return {
        "resource": path,
        "path": path,
        "httpMethod": method,
        "headers": {"content-type": "application/json"},
        "requestContext": {"stage": "prod", "requestId": str(uuid.uuid4())},
        "body": None if body is None else json.dumps(body),
        "isBase64Encoded": False,
    }


def _sqs_event(*messages: tuple[str, Any]) -> dict[str, Any]:
    return {
        "Records": [
            {
                "messageId": message_id,
                "receiptHandle": f"handle-{message_id}",
                "body": json.dumps(body),
                "attributes": {"ApproximateReceiveCount": "1"},
                "eventSource": "aws:sqs",
                "eventSourceARN": "arn:aws:sqs:eu-west-1:123456789012:orders",
            }
            for message_id, body in messages
        ]
    }


def demo() -> None:
    tag = uuid.uuid4().hex[:6]
    small = {"order_id": f"ORD-1-{tag}", "customer": "ada", "amount_cents": 4_200, "items": ["book"]}
    large = {"order_id": f"ORD-2-{tag}", "customer": "alan", "amount_cents": 250_000, "items": ["laptop"]}

    def show(title: str, response: dict[str, Any]) -> None:
        if "statusCode" in response:
            body = json.loads(response["body"])
            print(f"{title:<24} {response['statusCode']} {body.get('status')}  {json.dumps(body)}")
        else:
            print(f"{title:<24} {json.dumps(response)}")

    show("POST /orders (small)", handler(_api_event("POST", "/orders", small), None))
    show("POST /orders (large)", handler(_api_event("POST", "/orders", large), None))
    approval = {"approved": True, "by": "maria"}
    show(
        "POST approval", handler(_api_event("POST", f"/orders/{large['order_id']}/approval", approval), None)
    )
    show("GET", handler(_api_event("GET", f"/orders/{large['order_id']}"), None))
    queued = {"order_id": f"ORD-3-{tag}", "customer": "grace", "amount_cents": 990, "items": ["pen"]}
    message = (f"msg-{tag}", queued)
    show("SQS batch", handler(_sqs_event(message), None))
    show("SQS redelivery", handler(_sqs_event(message), None))
    show("schedule", handler({"source": "aws.events", "detail-type": "Scheduled Event"}, None))
    print(f"storage: {os.environ.get('FLUX_STORAGE', 'sqlite:////tmp/flux.db')}")
    print(f"trace:   {os.environ.get('FLUX_TRACE', '/tmp/.flux/trace.ndjson')}  (flux dev --trace ...)")


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    demo()
