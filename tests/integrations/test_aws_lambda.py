"""examples/serverless/aws_lambda.py, invoked as Lambda would: event dicts and a context."""

from __future__ import annotations

import base64
import json
import logging
import threading
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType, SimpleNamespace
from typing import Any

import pytest

from flux import FluxEngine, FluxSilentLogger

from .conftest import Records, close_engine, load_example, run_demo, trace_events


@pytest.fixture
def lam(serverless: Path) -> Iterator[ModuleType]:
    module = load_example("aws_lambda")
    yield module
    close_engine(module)


CONTEXT = SimpleNamespace(
    aws_request_id="req-1", function_name="orders", get_remaining_time_in_millis=lambda: 30_000
)


def order(order_id: str, amount_cents: int = 4_200, items: list[str] | None = None) -> dict[str, Any]:
    return {"order_id": order_id, "customer": "ada", "amount_cents": amount_cents, "items": items or ["book"]}


def rest_event(method: str, path: str, body: Any = None) -> dict[str, Any]:
    """An API Gateway REST API proxy event (payload format 1.0)."""
    return {
        "resource": "/{proxy+}",
        "path": path,
        "httpMethod": method,
        "headers": {"content-type": "application/json"},
        "queryStringParameters": None,
        "pathParameters": {"proxy": path.lstrip("/")},
        "requestContext": {"stage": "prod", "requestId": "r-1", "httpMethod": method},
        "body": None if body is None else json.dumps(body),
        "isBase64Encoded": False,
    }


def http_api_event(method: str, path: str, body: Any = None) -> dict[str, Any]:
    """An API Gateway HTTP API event (payload format 2.0), with a base64 body."""
    return {
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": path,
        "rawQueryString": "",
        "headers": {"content-type": "application/json"},
        "requestContext": {"http": {"method": method, "path": path}, "requestId": "r-2"},
        "body": None if body is None else base64.b64encode(json.dumps(body).encode()).decode(),
        "isBase64Encoded": True,
    }


def sqs_event(*messages: tuple[str, Any]) -> dict[str, Any]:
    return {
        "Records": [
            {
                "messageId": message_id,
                "receiptHandle": f"handle-{message_id}",
                "body": body if isinstance(body, str) else json.dumps(body),
                "attributes": {"ApproximateReceiveCount": "1"},
                "messageAttributes": {},
                "eventSource": "aws:sqs",
                "eventSourceARN": "arn:aws:sqs:eu-west-1:123456789012:orders",
                "awsRegion": "eu-west-1",
            }
            for message_id, body in messages
        ]
    }


def call(lam: ModuleType, event: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    response: dict[str, Any] = lam.handler(event, CONTEXT)
    assert response["headers"] == {"content-type": "application/json"}
    return response["statusCode"], json.loads(response["body"])


# ---------------------------------------------------------------- API Gateway


def test_a_request_starts_an_order_and_a_second_approves_it(lam: ModuleType, serverless: Path) -> None:
    import order_workflow

    status, body = call(lam, rest_event("POST", "/orders", order("ORD-1", amount_cents=250_000)))
    assert (status, body["status"], body["waiting_for"]) == (202, "suspended", "approval")
    status, body = call(lam, rest_event("POST", "/orders/ORD-1/approval", {"approved": True, "by": "maria"}))
    assert (status, body["status"]) == (200, "completed")
    assert body["outputs"]["charge"] == {"charged_cents": 250_000, "payment": "ORD-1:charge"}
    status, body = call(lam, rest_event("GET", "/orders/ORD-1"))
    assert (status, body["status"]) == (200, "completed")
    assert order_workflow.services.charges == {"ORD-1:charge": 250_000}
    types = [e["type"] for e in trace_events(serverless) if e["workflowId"] == "ORD-1"]
    assert types[0] == "workflow:start" and types[-1] == "workflow:complete"  # flushed before returning


def test_the_engine_is_built_once_per_container(lam: ModuleType) -> None:
    assert getattr(lam, "_engine") is None  # noqa: B009 - read anew after each call
    call(lam, rest_event("POST", "/orders", order("ORD-2")))
    first = getattr(lam, "_engine")  # noqa: B009
    assert isinstance(first, FluxEngine) and first.storage.durable
    call(lam, rest_event("POST", "/orders", order("ORD-3")))
    assert getattr(lam, "_engine") is first  # noqa: B009


def test_http_api_events_with_a_base64_body(lam: ModuleType) -> None:
    status, body = call(lam, http_api_event("POST", "/orders", order("ORD-4")))
    assert (status, body["status"]) == (200, "completed")
    status, body = call(lam, http_api_event("GET", "/orders/ORD-4"))
    assert (status, body["id"]) == (200, "ORD-4")


def test_a_retried_post_does_not_charge_twice(lam: ModuleType) -> None:
    import order_workflow

    for _ in range(2):
        status, body = call(lam, rest_event("POST", "/orders", order("ORD-5")))
        assert (status, body["status"]) == (200, "completed")
    assert order_workflow.services.charge_calls == 1


def test_a_rejected_order_releases_its_reservation(lam: ModuleType) -> None:
    import order_workflow

    call(lam, rest_event("POST", "/orders", order("ORD-6", amount_cents=500_000)))
    status, body = call(lam, rest_event("POST", "/orders/ORD-6/approval", {"approved": False, "by": "maria"}))
    assert (status, body["status"]) == (422, "rolled_back")
    assert "rejected by maria" in body["error"]
    assert order_workflow.services.released == ["R-ORD-6"]
    assert order_workflow.services.charge_calls == 0


@pytest.mark.parametrize(
    ("event", "status", "error"),
    [
        (rest_event("GET", "/orders/NOPE"), 404, "no run with id 'NOPE'"),
        (rest_event("DELETE", "/orders/ORD-1"), 404, "no route"),
        ({**rest_event("POST", "/orders"), "body": "{not json"}, 400, "not a JSON object"),
        (rest_event("POST", "/orders", [1, 2]), 400, "not a JSON object"),
        (rest_event("POST", "/orders", {"order_id": "X", "customer": "ada"}), 400, "amount_cents"),
    ],
)
def test_bad_requests_get_an_error_status(
    lam: ModuleType, event: dict[str, Any], status: int, error: str
) -> None:
    got, body = call(lam, event)
    assert got == status
    assert error in body["error"]


def test_a_signal_to_an_order_that_does_not_wait_is_a_conflict(lam: ModuleType) -> None:
    call(lam, rest_event("POST", "/orders", order("ORD-7")))
    status, body = call(lam, rest_event("POST", "/orders/ORD-7/approval", {"approved": True}))
    assert (status, body["type"]) == (409, "RunStateError")


# ---------------------------------------------------------------- SQS


def test_a_batch_runs_one_order_per_message(lam: ModuleType, serverless: Path) -> None:
    import order_workflow

    result = lam.handler(sqs_event(("m-1", order("A")), ("m-2", order("B", amount_cents=300_000))), CONTEXT)
    assert result == {"batchItemFailures": []}
    assert set(order_workflow.services.charges) == {"m-1:charge"}  # m-2 waits for approval
    runs = {e["workflowId"] for e in trace_events(serverless) if e["type"] == "workflow:start"}
    assert runs == {"m-1", "m-2"}


def test_a_redelivered_message_does_not_run_the_workflow_twice(lam: ModuleType, serverless: Path) -> None:
    import order_workflow

    message = ("m-3", order("C"))
    assert lam.handler(sqs_event(message), CONTEXT) == {"batchItemFailures": []}
    fresh_container = load_example("aws_lambda")  # the redelivery may land on another container
    try:
        assert fresh_container.handler(sqs_event(message), CONTEXT) == {"batchItemFailures": []}
        assert lam.handler(sqs_event(message), CONTEXT) == {"batchItemFailures": []}
    finally:
        close_engine(fresh_container)
    assert order_workflow.services.charge_calls == 1
    assert order_workflow.services.mails == ["ada: order C confirmed"]
    starts = [e for e in trace_events(serverless) if e["workflowId"] == "m-3" and e["type"] == "step:start"]
    assert [e["stepName"] for e in starts] == ["validate", "reserve", "approval", "charge", "notify"]


def test_a_redelivered_message_of_a_failed_order_is_not_run_again(lam: ModuleType, serverless: Path) -> None:
    message = ("m-4", order("D", items=["x"], amount_cents=0))
    for _ in range(2):
        assert lam.handler(sqs_event(message), CONTEXT) == {"batchItemFailures": []}
    events = [e for e in trace_events(serverless) if e["workflowId"] == "m-4"]
    assert [e["type"] for e in events] == ["workflow:start", "step:start", "step:error", "workflow:error"]


def test_a_message_that_can_never_succeed_is_acknowledged_and_logged(
    lam: ModuleType, flux_log: Records
) -> None:
    orders_log = logging.getLogger("orders")
    orders_log.addHandler(flux_log)
    try:
        result = lam.handler(
            sqs_event(("m-5", "{not json"), ("m-6", {"order_id": "E"}), ("m-7", order("F"))), CONTEXT
        )
    finally:
        orders_log.removeHandler(flux_log)
    assert result == {"batchItemFailures": []}
    refused = [m for m in flux_log.messages(logging.ERROR) if "refused" in m]
    assert [m.split()[2] for m in refused] == ["m-5", "m-6"]


def test_a_message_whose_run_another_container_holds_is_received_again(
    lam: ModuleType, serverless: Path
) -> None:
    import order_workflow

    entered, release = threading.Event(), threading.Event()

    class Blocking(dict[str, list[str]]):
        def __setitem__(self, key: str, value: list[str]) -> None:
            entered.set()
            release.wait(timeout=30)
            super().__setitem__(key, value)

    order_workflow.services.reserved = Blocking()
    other = FluxEngine(f"sqlite:///{serverless.parent / 'flux.db'}", logger=FluxSilentLogger())
    results: list[str] = []
    worker = threading.Thread(
        target=lambda: results.append(
            other.execute_sync(order_workflow.order_flow, order("G"), id="m-8").status
        )
    )
    worker.start()
    try:
        assert entered.wait(timeout=30)
        assert lam.handler(sqs_event(("m-8", order("G"))), CONTEXT) == {
            "batchItemFailures": [{"itemIdentifier": "m-8"}]
        }
    finally:
        release.set()
        worker.join()
        other.close_sync()
    assert results == ["completed"]
    assert lam.handler(sqs_event(("m-8", order("G"))), CONTEXT) == {"batchItemFailures": []}
    assert order_workflow.services.charge_calls == 1


# ---------------------------------------------------------------- schedule


def test_a_scheduled_event_recovers_runs_left_running(lam: ModuleType, serverless: Path) -> None:
    import order_workflow

    class Dies(dict[str, list[str]]):
        def __setitem__(self, key: str, value: list[str]) -> None:
            raise SystemExit("the container was stopped mid-step")

    order_workflow.services.reserved = Dies()
    dead = FluxEngine(f"sqlite:///{serverless.parent / 'flux.db'}", logger=FluxSilentLogger())
    with pytest.raises(SystemExit):
        dead.execute_sync(order_workflow.order_flow, order("H"), id="ORD-H")
    dead.close_sync()
    order_workflow.services.reserved = {}
    result = lam.handler({"source": "aws.events", "detail-type": "Scheduled Event", "detail": {}}, CONTEXT)
    assert [(r["id"], r["status"]) for r in result["recovered"]] == [("ORD-H", "completed")]


def test_the_demo_runs_as_a_script(tmp_path: Path) -> None:
    out = run_demo("aws_lambda", tmp_path)
    assert "POST approval            200 completed" in out
    assert 'SQS redelivery           {"batchItemFailures": []}' in out
