"""The dashboard's actions through a TestClient on a real SQLite file: each action's effect
in storage and in the trace, and each refusal changing nothing (SPEC §12)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from flux import FluxEngine, SQLiteStorage
from flux.events import EventType, check
from flux.logger import FluxSilentLogger
from tests.viewer.action_flows import WORKFLOWS, approval, flaky
from tests.viewer.actions_app import bare_app, csrf_of
from tests.viewer.conftest import TestClient

ORIGIN = {"origin": "http://127.0.0.1"}


class Dash:
    def __init__(self, tmp: Path, db: Path, client: TestClient) -> None:
        self.tmp, self.db, self.client = tmp, db, client
        self.trace = tmp / "trace.ndjson"

    @property
    def app(self) -> Any:
        return self.client.app

    def engine(self) -> FluxEngine:
        return FluxEngine(storage=SQLiteStorage(self.db), logger=FluxSilentLogger())

    def failed(self, run_id: str) -> Path:
        gate = self.tmp / f"gate-{run_id}"
        gate.touch()
        with self.engine() as engine:
            assert engine.execute_sync(flaky, {"gate": str(gate)}, id=run_id).status.value == "failed"
        return gate

    def suspended(self, run_id: str) -> None:
        with self.engine() as engine:
            assert engine.execute_sync(approval, None, id=run_id).status.value == "suspended"

    def run(self, run_id: str) -> Any:
        with self.engine() as engine:
            return _load(engine, run_id)

    def token(self, run_id: str = "") -> str:
        page = self.client.get(f"/stored/{run_id}" if run_id else "/stored")
        assert page.status_code == 200, page.text
        return csrf_of(page.text)

    def post(self, url: str, data: dict[str, str], headers: dict[str, str] | None = None) -> Any:
        return self.client.post(url, data=data, headers=ORIGIN if headers is None else headers,
                                follow_redirects=False)  # fmt: skip

    def idle(self) -> None:
        self.client.portal.call(self.app.state.actions.idle)  # type: ignore[union-attr]

    def actions(self) -> list[dict[str, Any]]:
        if not self.trace.exists():
            return []
        self.app.state.actions.engine.trace.flush()  # the sink writes within 100 ms: now
        events = [json.loads(line) for line in self.trace.read_text().splitlines() if line.strip()]
        return [ev for ev in events if ev["type"] == EventType.WORKFLOW_ACTION.value]


def _load(engine: FluxEngine, run_id: str) -> Any:
    return engine._run_on_loop(lambda: engine.storage.load_run(run_id))


@pytest.fixture
def dash(tmp_path: Path) -> Iterator[Dash]:
    db = tmp_path / "runs.db"
    SQLiteStorage(db)  # create the schema before the app opens it
    storage = SQLiteStorage(db)
    app = bare_app(storage, WORKFLOWS, tmp_path / "trace.ndjson")
    with TestClient(app, base_url="http://127.0.0.1") as client:
        yield Dash(tmp_path, db, client)
        client.portal.call(app.state.actions.idle)
        client.portal.call(storage.close)


def test_retry_from_a_step_finishes_the_run_and_is_written_to_the_trace(dash: Dash) -> None:
    gate = dash.failed("R-1")
    gate.unlink()
    response = dash.post("/runs/R-1/retry", {"csrf": dash.token("R-1"), "step": "pay"})
    assert response.status_code == 303, response.text
    assert response.headers["location"] == "/runs/R-1"
    dash.idle()
    assert dash.run("R-1").status.value == "completed"
    [ev] = dash.actions()
    assert (ev["action"], ev["by"], ev["stepName"], ev["workflowId"]) == ("retry", "dashboard", "pay", "R-1")
    assert check(ev) == []


def test_resume_continues_a_failed_run(dash: Dash) -> None:
    dash.failed("R-2").unlink()
    response = dash.post("/runs/R-2/resume", {"csrf": dash.token("R-2")})
    assert response.status_code == 303, response.text
    dash.idle()
    assert dash.run("R-2").status.value == "completed"
    assert [ev["action"] for ev in dash.actions()] == ["resume"]


def test_cancel_a_suspended_run(dash: Dash) -> None:
    dash.suspended("S-1")
    response = dash.post("/runs/S-1/cancel", {"csrf": dash.token("S-1"), "reason": "no longer needed"})
    assert response.status_code == 303, response.text
    run = dash.run("S-1")
    assert run.status.value == "cancelled"
    [ev] = dash.actions()
    assert (ev["action"], ev["reason"]) == ("cancel", "no longer needed")


def test_signal_with_a_json_payload_completes_the_run(dash: Dash) -> None:
    dash.suspended("S-2")
    token = dash.token("S-2")
    response = dash.post("/runs/S-2/signal", {"csrf": token, "signal": "approval", "payload": '{"ok": true}'})
    assert response.status_code == 303, response.text
    dash.idle()
    run = dash.run("S-2")
    assert run.status.value == "completed"
    [ev] = dash.actions()
    assert (ev["action"], ev["signal"], ev["data"]) == ("signal", "approval", {"ok": True})


def _unchanged(dash: Dash, run_id: str, before: Any) -> None:
    after = dash.run(run_id)
    assert (after.status, after.rev, after.updated_at) == (before.status, before.rev, before.updated_at)
    assert dash.actions() == []


def test_a_payload_that_is_not_json_is_refused_naming_the_field(dash: Dash) -> None:
    dash.suspended("S-3")
    before = dash.run("S-3")
    response = dash.post(
        "/runs/S-3/signal", {"csrf": dash.token("S-3"), "signal": "approval", "payload": "{ok"}
    )
    assert response.status_code == 400
    assert "field &#39;payload&#39; is not valid JSON" in response.text
    _unchanged(dash, "S-3", before)


def test_a_signal_the_run_does_not_wait_for_shows_the_engines_error(dash: Dash) -> None:
    dash.suspended("S-4")
    before = dash.run("S-4")
    response = dash.post("/runs/S-4/signal", {"csrf": dash.token("S-4"), "signal": "other", "payload": "1"})
    assert response.status_code == 409
    assert "it waits for &#39;approval&#39;" in response.text
    _unchanged(dash, "S-4", before)


@pytest.mark.parametrize(
    ("headers", "token", "why"),
    [
        ({"origin": "http://evil.example"}, "good", "cross-origin request refused"),
        ({"origin": "http://127.0.0.1:9999"}, "good", "cross-origin request refused"),
        ({"origin": "null"}, "good", "cross-origin request refused"),
        ({"referer": "http://evil.example/page"}, "good", "cross-origin request refused"),
        ({}, "good", "neither an Origin nor a Referer"),
        (ORIGIN, "", "carries no CSRF token"),
        (ORIGIN, "wrong", "stale or wrong"),
        (ORIGIN, "stale", "stale or wrong"),
    ],
)
def test_a_post_that_is_not_the_users_own_is_refused_and_changes_nothing(
    dash: Dash, headers: dict[str, str], token: str, why: str
) -> None:
    dash.failed("X-1").unlink()
    before = dash.run("X-1")
    good = dash.token("X-1")
    if token == "stale":  # a token from a flux dev that has since been restarted
        other = bare_app(None, WORKFLOWS, dash.tmp / "other.ndjson")
        with TestClient(other, base_url="http://127.0.0.1") as client:
            client.get("/")
            token = client.portal.call(lambda: _token_of(other, dash.client.cookies["flux_session"]))
    form = {"step": "pay", **({"csrf": good if token == "good" else token} if token else {})}
    response = dash.post("/runs/X-1/retry", form, headers=headers)
    assert response.status_code == 403
    assert why in response.text
    _unchanged(dash, "X-1", before)


async def _token_of(app: Any, session: str) -> str:
    from viewer.csrf import token_for

    # the secret lives in the app's middleware, built on its first request
    stack = app.middleware_stack
    while stack is not None and not hasattr(stack, "secret"):
        stack = getattr(stack, "app", None)
    assert stack is not None
    return token_for(stack.secret, session)


def test_a_post_without_the_session_cookie_is_refused(dash: Dash) -> None:
    dash.failed("X-2").unlink()
    before = dash.run("X-2")
    token = dash.token("X-2")
    dash.client.cookies.clear()
    response = dash.post("/runs/X-2/retry", {"csrf": token, "step": "pay"})
    assert response.status_code == 403
    assert "no session cookie" in response.text
    _unchanged(dash, "X-2", before)


def test_a_referer_of_this_dashboard_stands_in_for_a_missing_origin(dash: Dash) -> None:
    dash.failed("X-3").unlink()
    response = dash.post(
        "/runs/X-3/retry",
        {"csrf": dash.token("X-3"), "step": "pay"},
        headers={"referer": "http://127.0.0.1/stored/X-3"},
    )
    assert response.status_code == 303, response.text
    dash.idle()
    assert dash.run("X-3").status.value == "completed"


def test_read_only_refuses_every_action_and_shows_no_form(tmp_path: Path) -> None:
    db = tmp_path / "runs.db"
    dash = Dash(tmp_path, db, None)  # type: ignore[arg-type]
    SQLiteStorage(db)
    dash.failed("RO-1").unlink()
    dash.suspended("RO-2")
    storage = SQLiteStorage(db)
    app = bare_app(storage, WORKFLOWS, tmp_path / "trace.ndjson", read_only=True)
    with TestClient(app, base_url="http://127.0.0.1") as client:
        dash.client = client
        page = client.get("/stored/RO-1").text
        assert "--read-only" in page and "<form" not in page
        assert "--read-only" in client.get("/stored").text
        token = client.get("/").cookies.get("flux_session") or ""  # any token: refused before it is read
        before = {i: dash.run(i) for i in ("RO-1", "RO-2")}
        for url, form in [
            ("/runs/RO-1/retry", {"step": "pay"}),
            ("/runs/RO-1/resume", {}),
            ("/runs/RO-2/cancel", {}),
            ("/runs/RO-2/signal", {"signal": "approval"}),
            ("/runs/retry?status=failed", {"expected": "1"}),
            ("/runs/cancel", {"expected": "1"}),
        ]:
            response = dash.post(url, {"csrf": token, **form})
            assert response.status_code == 403, url
            assert "--read-only" in response.text
        for run_id, run in before.items():
            _unchanged(dash, run_id, run)
        client.portal.call(storage.close)


def test_the_page_offers_what_the_run_allows(dash: Dash) -> None:
    dash.failed("P-1")
    dash.suspended("P-2")
    failed = dash.client.get("/stored/P-1").text
    assert 'action="/runs/P-1/retry"' in failed and 'action="/runs/P-1/resume"' in failed
    assert '<option value="pay" selected>' in failed and '<option value="ship"' not in failed
    assert "/cancel" not in failed and "/signal" not in failed
    suspended = dash.client.get("/stored/P-2").text
    assert 'action="/runs/P-2/signal"' in suspended and 'name="signal" value="approval"' in suspended
    assert 'action="/runs/P-2/cancel"' in suspended and "/resume" not in suspended


def test_a_run_without_its_definition_shows_why_there_are_no_forms(tmp_path: Path) -> None:
    db = tmp_path / "runs.db"
    dash = Dash(tmp_path, db, None)  # type: ignore[arg-type]
    SQLiteStorage(db)
    dash.failed("D-1")
    storage = SQLiteStorage(db)
    with TestClient(bare_app(storage, {}, dash.trace), base_url="http://127.0.0.1") as client:
        page = client.get("/stored/D-1").text
        assert "is not loaded" in page and "<form" not in page
        token = csrf_of(client.get("/stored").text) if "csrf" in client.get("/stored").text else ""
        del token
        client.portal.call(storage.close)


def test_the_session_cookie_is_httponly_and_samesite_strict(dash: Dash) -> None:
    response = dash.client.get("/")
    cookie = response.headers["set-cookie"]
    assert cookie.startswith("flux_session=") and "HttpOnly" in cookie and "SameSite=Strict" in cookie
    assert "set-cookie" not in dash.client.get("/").headers  # one session, not one per page
    # Under the pages' no-referrer a form would be posted with `Origin: null`: the forms' own
    # page says same-origin (tests/e2e/test_actions.py proves Chromium then sends its origin).
    assert response.headers["referrer-policy"] == "no-referrer"
    dash.suspended("M-1")
    assert '<meta name="referrer" content="same-origin">' in dash.client.get("/stored/M-1").text
    assert '<meta name="referrer" content="same-origin">' in dash.client.get("/stored").text


def test_the_timeline_marks_the_action(dash: Dash) -> None:
    dash.failed("T-1").unlink()
    dash.post("/runs/T-1/retry", {"csrf": dash.token("T-1"), "step": "pay"})
    dash.idle()
    dash.app.state.actions.engine.trace.flush()
    # the trace run page reads the trace the action and the engine wrote to
    timeline = dash.client.get("/runs/T-1/timeline").text
    assert "retried from pay by dashboard" in timeline


def test_a_run_another_process_holds_is_not_driven_by_the_dashboard(dash: Dash) -> None:
    import time

    from flux.records import Lease

    with dash.engine() as engine:
        engine.start_sync(flaky, {"gate": str(dash.tmp / "no-gate")}, id="W-1")  # pending, for a worker
        worker = Lease("a-worker", "elsewhere", 1, time.time() + 60)
        assert engine._run_on_loop(lambda: engine.storage.acquire_lease("W-1", worker))
    response = dash.post("/runs/W-1/resume", {"csrf": dash.token("W-1")})
    assert response.status_code == 303, response.text
    dash.idle()
    run = dash.run("W-1")
    assert run.status.value == "pending" and run.lease.owner == "a-worker"
    assert [s.started_at for s in run.steps] == [None, None, None]  # the worker's to run, not ours


def test_what_storage_holds_is_escaped_in_the_forms(dash: Dash) -> None:
    from urllib.parse import quote

    hostile = "<img src=x onerror=alert(1)>\"'&"
    dash.failed(hostile)
    page = dash.client.get("/stored/" + quote(hostile, safe="")).text
    assert "<img src=x" not in page
    assert (
        'data-run="&lt;img src=x onerror=alert(1)&gt;&#34;&#39;&amp;" data-confirm="Retry run {run} from step'
        in page
    )
    assert f'action="/runs/{quote(hostile, safe="")}/retry"' in page
    # and the action on it works, by that encoded path
    form = {"csrf": csrf_of(page), "step": "fetch"}
    response = dash.post(f"/runs/{quote(hostile, safe='')}/retry", form)
    assert response.status_code == 303, response.text
    assert response.headers["location"] == "/runs/" + quote(hostile, safe="")
