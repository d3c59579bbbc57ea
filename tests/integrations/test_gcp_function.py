"""examples/serverless/gcp_function.py, invoked as Google's Functions Framework would: a
flask Request with a JSON body (through the framework's own app, and built directly with
werkzeug's EnvironBuilder), and a Pub/Sub CloudEvent."""

from __future__ import annotations

import base64
import json
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import flask
import functions_framework
import pytest
from cloudevents.http import CloudEvent
from werkzeug.test import EnvironBuilder

from .conftest import SERVERLESS, close_engine, load_example, run_demo, trace_events

SOURCE = str(SERVERLESS / "gcp_function.py")


def order(order_id: str, amount_cents: int = 4_200) -> dict[str, Any]:
    return {"order_id": order_id, "customer": "ada", "amount_cents": amount_cents, "items": ["book"]}


@pytest.fixture
def client(serverless: Path) -> Iterator[flask.testing.FlaskClient]:
    """A client of the app the Functions Framework builds for `--target orders`."""
    app: flask.Flask = functions_framework.create_app(target="orders", source=SOURCE)  # type: ignore[no-untyped-call]
    yield app.test_client()
    close_engine(sys.modules["gcp_function"])


@pytest.fixture
def gcf(serverless: Path) -> Iterator[ModuleType]:
    module = load_example("gcp_function")
    yield module
    close_engine(module)


def request(method: str, path: str, body: Any = None) -> flask.Request:
    return flask.Request(EnvironBuilder(method=method, path=path, json=body).get_environ())


def pubsub_event(message_id: str, data: Any) -> CloudEvent:
    """A Pub/Sub "message published" CloudEvent, as Eventarc delivers it."""
    payload = data if isinstance(data, bytes) else json.dumps(data).encode()
    return CloudEvent(
        {
            "type": "google.cloud.pubsub.topic.v1.messagePublished",
            "source": "//pubsub.googleapis.com/projects/shop/topics/orders",
            "id": message_id,
        },
        {
            "message": {"data": base64.b64encode(payload).decode(), "messageId": message_id},
            "subscription": "projects/shop/subscriptions/orders-fn",
        },
    )


# ---------------------------------------------------------------- through the framework


def test_a_request_starts_an_order_and_a_second_approves_it(
    client: flask.testing.FlaskClient, serverless: Path
) -> None:
    import order_workflow

    started = client.post("/", json=order("ORD-1", amount_cents=250_000))
    assert started.status_code == 202
    assert started.get_json()["waiting_for"] == "approval"
    approved = client.post("/ORD-1/approval", json={"approved": True, "by": "maria"})
    assert approved.status_code == 200
    assert approved.get_json()["outputs"]["charge"] == {"charged_cents": 250_000, "payment": "ORD-1:charge"}
    shown = client.get("/ORD-1")
    assert (shown.status_code, shown.get_json()["status"]) == (200, "completed")
    assert client.get("/orders/ORD-1").get_json()["status"] == "completed"
    assert order_workflow.services.charge_calls == 1
    assert [e["type"] for e in trace_events(serverless)][-1] == "workflow:complete"


def test_the_engine_is_built_once_per_instance(client: flask.testing.FlaskClient) -> None:
    client.post("/", json=order("ORD-2"))
    first = sys.modules["gcp_function"]._engine
    client.post("/", json=order("ORD-3"))
    assert sys.modules["gcp_function"]._engine is first is not None


def test_concurrent_requests_each_get_their_run(client: flask.testing.FlaskClient) -> None:
    """The framework serves requests from several threads at once, on one engine."""
    assert client.post("/", json=order("ORD-C")).status_code == 200  # the engine exists now
    statuses: dict[str, int] = {}
    start = threading.Barrier(6)

    def post(order_id: str) -> None:
        start.wait(timeout=30)
        statuses[order_id] = client.post("/", json=order(order_id)).status_code

    threads = [threading.Thread(target=post, args=(f"ORD-C{i}",)) for i in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert statuses == {f"ORD-C{i}": 200 for i in range(6)}


def test_errors_have_their_status(client: flask.testing.FlaskClient) -> None:
    assert client.get("/NOPE").status_code == 404
    assert client.delete("/ORD-1").status_code == 404
    assert client.post("/", data="not json", content_type="application/json").status_code == 400
    bad = client.post("/", json={"order_id": "X"})
    assert bad.status_code == 400 and bad.get_json()["type"] == "InputValidationError"
    client.post("/", json=order("ORD-4"))
    conflict = client.post("/ORD-4/approval", json={"approved": True})
    assert conflict.status_code == 409 and conflict.get_json()["type"] == "RunStateError"


def test_a_pubsub_event_through_the_framework(serverless: Path) -> None:
    import order_workflow

    app: flask.Flask = functions_framework.create_app(  # type: ignore[no-untyped-call]
        target="order_events", source=SOURCE, signature_type="cloudevent"
    )
    message = {
        "message": {"data": base64.b64encode(json.dumps(order("P")).encode()).decode(), "messageId": "ps-1"},
        "subscription": "projects/shop/subscriptions/orders-fn",
    }
    headers = {
        "ce-id": "ps-1",
        "ce-specversion": "1.0",
        "ce-type": "google.cloud.pubsub.topic.v1.messagePublished",
        "ce-source": "//pubsub.googleapis.com/projects/shop/topics/orders",
    }
    try:
        client = app.test_client()
        for _ in range(2):  # delivered twice
            assert client.post("/", json=message, headers=headers).status_code == 200
    finally:
        close_engine(sys.modules["gcp_function"])
    assert order_workflow.services.charge_calls == 1
    assert [e["workflowId"] for e in trace_events(serverless) if e["type"] == "workflow:start"] == ["ps-1"]


# ---------------------------------------------------------------- called directly


def test_the_function_takes_a_flask_request(gcf: ModuleType) -> None:
    body, status = gcf.orders(request("POST", "/", order("ORD-5")))
    assert (status, body["status"], body["id"]) == (200, "completed", "ORD-5")
    body, status = gcf.orders(request("GET", "/ORD-5"))
    assert (status, body["outputs"]["notify"]) == (200, "sent")


def test_a_redelivered_pubsub_message_does_not_run_the_workflow_twice(
    gcf: ModuleType, serverless: Path
) -> None:
    import order_workflow

    event = pubsub_event("ps-2", order("Q"))
    gcf.order_events(event)
    gcf.order_events(event)
    assert order_workflow.services.charge_calls == 1
    assert order_workflow.services.mails == ["ada: order Q confirmed"]
    starts = [e for e in trace_events(serverless) if e["type"] == "step:start"]
    assert [e["stepName"] for e in starts] == ["validate", "reserve", "approval", "charge", "notify"]


def test_a_malformed_message_is_acknowledged(gcf: ModuleType, serverless: Path) -> None:
    gcf.order_events(pubsub_event("ps-3", b"{not json"))
    gcf.order_events(pubsub_event("ps-4", {"order_id": "missing fields"}))
    assert trace_events(serverless) == []


def test_the_demo_runs_as_a_script(tmp_path: Path) -> None:
    out = run_demo("gcp_function", tmp_path)
    assert "POST /           202 suspended" in out
    assert "POST approval    200 completed" in out
