"""Bulk retry and cancel of the runs a filter selects: the count the user confirmed is
checked again, and a filter that selects otherwise now does nothing (SPEC §12)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from flux import SQLiteStorage
from tests.viewer.action_flows import WORKFLOWS
from tests.viewer.actions_app import bare_app, csrf_of
from tests.viewer.conftest import TestClient
from tests.viewer.test_actions import Dash


@pytest.fixture
def dash(tmp_path: Path) -> Iterator[Dash]:
    db = tmp_path / "runs.db"
    SQLiteStorage(db)
    storage = SQLiteStorage(db)
    app = bare_app(storage, WORKFLOWS, tmp_path / "trace.ndjson")
    with TestClient(app, base_url="http://127.0.0.1") as client:
        yield Dash(tmp_path, db, client)
        client.portal.call(app.state.actions.idle)
        client.portal.call(storage.close)


def test_the_selection_counts_what_each_bulk_action_would_take(dash: Dash) -> None:
    for i in range(3):
        dash.failed(f"F-{i}")
    dash.suspended("S-1")
    body = dash.client.get("/actions/selection").json()
    assert {k: body[k] for k in ("retry", "cancel", "filter")} == {
        "retry": 3,
        "cancel": 1,
        "filter": "all runs",
    }
    assert body["retry_selection"] != body["cancel_selection"]  # which runs, hashed: the POST repeats it
    body = dash.client.get("/actions/selection?status=failed&q=F-1").json()
    assert (body["retry"], body["cancel"]) == (1, 0)
    assert body["filter"] == "status failed, id starting 'F-1'"
    assert dash.client.get("/actions/selection?q=f-").json()["retry"] == 0  # the start of the id, as typed
    body = dash.client.get("/actions/selection?workflow=approval").json()
    assert {k: body[k] for k in ("retry", "cancel", "filter")} == {
        "retry": 0,
        "cancel": 1,
        "filter": "workflow approval",
    }
    assert dash.client.get("/actions/selection?status=bogus").status_code == 400


def test_bulk_retry_takes_every_failed_run_of_the_filter(dash: Dash) -> None:
    gates = [dash.failed(f"F-{i}") for i in range(3)]
    for gate in gates:
        gate.unlink()
    token = csrf_of(dash.client.get("/stored").text)
    response = dash.post("/runs/retry?status=failed", {"csrf": token, "expected": "3"})
    assert response.status_code == 303, response.text
    assert response.headers["location"] == "/?status=failed"
    dash.idle()
    assert {dash.run(f"F-{i}").status.value for i in range(3)} == {"completed"}
    assert sorted((ev["workflowId"], ev["action"], ev["stepName"]) for ev in dash.actions()) == [
        ("F-0", "retry", "pay"),
        ("F-1", "retry", "pay"),
        ("F-2", "retry", "pay"),
    ]


def test_a_bulk_action_whose_selection_changed_since_the_confirmation_does_nothing(dash: Dash) -> None:
    dash.failed("F-1").unlink()
    dash.failed("F-2").unlink()
    before = {i: dash.run(i) for i in ("F-1", "F-2")}
    token = csrf_of(dash.client.get("/stored").text)
    response = dash.post("/runs/retry", {"csrf": token, "expected": "3"})  # the user saw 3; there are 2
    assert response.status_code == 409
    assert "now selects 2 run(s) to retry, not the 3 you confirmed: nothing was done" in response.text
    for run_id, run in before.items():
        after = dash.run(run_id)
        assert (after.status, after.rev) == (run.status, run.rev)
    assert dash.actions() == []


def test_bulk_cancel_cancels_the_unfinished_runs_only(dash: Dash) -> None:
    dash.suspended("S-1")
    dash.suspended("S-2")
    dash.failed("F-1")
    token = csrf_of(dash.client.get("/stored").text)
    assert dash.client.get("/actions/selection").json()["cancel"] == 2
    response = dash.post("/runs/cancel", {"csrf": token, "expected": "2"})
    assert response.status_code == 303, response.text
    assert [dash.run(i).status.value for i in ("S-1", "S-2", "F-1")] == ["cancelled", "cancelled", "failed"]
    assert sorted(ev["workflowId"] for ev in dash.actions() if ev["action"] == "cancel") == ["S-1", "S-2"]


def test_a_bulk_action_needs_a_count_and_the_token(dash: Dash) -> None:
    dash.suspended("S-1")
    token = csrf_of(dash.client.get("/stored").text)
    missing = dash.post("/runs/cancel", {"csrf": token})
    assert missing.status_code == 400 and "field &#39;expected&#39; is required" in missing.text
    forged = dash.post("/runs/cancel", {"csrf": "x", "expected": "1"})
    assert forged.status_code == 403
    assert dash.run("S-1").status.value == "suspended"


def test_the_runs_page_form_posts_the_filter_it_shows(dash: Dash) -> None:
    page = dash.client.get("/stored?status=failed&workflow=flaky").text
    assert 'action="/runs/retry?status=failed&amp;workflow=flaky"' in page
    assert 'data-filter="status=failed&amp;workflow=flaky"' in page
