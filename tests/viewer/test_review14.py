"""Adversarial review of `flux dev --storage` (issue 14, SPEC §12): the real app of
``viewer.server.create_app`` on a real SQLite file, driven through a TestClient as a hostile
web page, a careless user and a busy database would. Every refusal is checked in storage and
in the trace: nothing changed in either."""

from __future__ import annotations

import asyncio
import html
import json
import os
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

from flux import Flux, FluxEngine, SQLiteStorage, create_workflow
from flux.events import EventType
from flux.logger import FluxSilentLogger
from flux.records import Lease, RunRecord
from flux.status import RunStatus
from tests.viewer.action_flows import WORKFLOWS, approval, flaky
from tests.viewer.conftest import TestClient  # type: ignore[attr-defined]
from tests.viewer.test_actions import _token_of
from viewer.server import create_app

ORIGIN = {"origin": "http://127.0.0.1"}
EVIL = "\"'><script>alert(1)</script>"
EVIL_STEP = "<img src=x onerror=alert(2)>"
EVIL_SIGNAL = "sig\"'><script>alert(3)</script>"

hostile_wait = (
    create_workflow(f"wf-{EVIL}")
    .step(EVIL_STEP, lambda ctx: {"html": EVIL, "link": "javascript:alert(4)"})
    .step("javascript:alert(5)", lambda ctx: Flux.wait(EVIL_SIGNAL))
)
FLOWS: dict[str, Any] = {**WORKFLOWS, hostile_wait.name: hostile_wait}


class Dash:
    """The dashboard on ``db`` and the trace it writes its actions to."""

    def __init__(self, tmp: Path, db: Path, client: TestClient, storage: SQLiteStorage) -> None:
        self.tmp, self.db, self.client, self.storage = tmp, db, client, storage
        self.trace = tmp / "trace.ndjson"

    @property
    def app(self) -> Any:
        return self.client.app

    def engine(self) -> FluxEngine:
        return FluxEngine(storage=SQLiteStorage(self.db), logger=FluxSilentLogger())

    def failed(self, run_id: str) -> Path:
        gate = self.tmp / f"gate-{abs(hash(run_id))}"
        gate.touch()
        with self.engine() as engine:
            assert engine.execute_sync(flaky, {"gate": str(gate)}, id=run_id).status.value == "failed"
        return gate

    def suspended(self, run_id: str, flow: Any = approval) -> None:
        with self.engine() as engine:
            assert engine.execute_sync(flow, None, id=run_id).status.value == "suspended"

    def completed(self, run_id: str) -> None:
        with self.engine() as engine:
            gate = self.tmp / "no-gate"
            assert engine.execute_sync(flaky, {"gate": str(gate)}, id=run_id).status.value == "completed"

    def run(self, run_id: str) -> Any:
        with self.engine() as engine:
            return engine._run_on_loop(lambda: engine.storage.load_run(run_id))

    def call(self, fn: Any) -> Any:
        assert self.client.portal is not None
        return self.client.portal.call(fn)

    def token(self, run_id: str | None = None) -> str:
        page = self.client.get(quote_run(run_id) if run_id else "/")
        assert page.status_code == 200, page.text
        match = re.search(r'name="csrf" value="([^"]*)"', page.text)
        assert match, "no CSRF field on the page"
        return match.group(1)

    def seen(self, run_id: str) -> str:
        """The `seen` field of the run's action forms: what the page showed of the run."""
        page = self.client.get(quote_run(run_id))
        match = re.search(r'name="seen" value="([^"]*)"', page.text)
        assert match, "no seen field on the page"
        return html.unescape(match.group(1))

    def post(self, url: str, data: Any = None, headers: dict[str, str] | None = None, **kw: Any) -> Any:
        return self.client.post(url, data=data, headers=ORIGIN if headers is None else headers,
                                follow_redirects=False, **kw)  # fmt: skip

    def idle(self) -> None:
        self.call(self.app.state.actions.idle)

    def events(self) -> list[dict[str, Any]]:
        sink = self.app.state.actions.engine.trace
        if sink is not None:
            sink.flush()
        if not self.trace.exists():
            return []
        return [json.loads(line) for line in self.trace.read_text().splitlines() if line.strip()]

    def actions(self) -> list[dict[str, Any]]:
        return [ev for ev in self.events() if ev["type"] == EventType.WORKFLOW_ACTION.value]

    def unchanged(self, run_id: str, before: Any) -> None:
        after = self.run(run_id)
        assert (after.status, after.rev, after.updated_at) == (before.status, before.rev, before.updated_at)
        assert self.actions() == []


def quote_run(run_id: str, suffix: str = "") -> str:
    return "/runs/" + quote(run_id, safe="") + suffix


def _app(db: Path, tmp: Path, *, read_only: bool = False, stuck_after: float = 3600.0) -> tuple[Any, Any]:
    storage = SQLiteStorage(db)
    app = create_app(
        None,
        storage=storage,
        workflows=FLOWS,
        read_only=read_only,
        stuck_after=stuck_after,
        trace_paths=[tmp / "trace.ndjson"],
    )
    return app, storage


@pytest.fixture
def dash(tmp_path: Path) -> Iterator[Dash]:
    db = tmp_path / "runs.db"
    SQLiteStorage(db)  # the schema, before the app opens it
    app, storage = _app(db, tmp_path)
    with TestClient(app, base_url="http://127.0.0.1") as client:
        d = Dash(tmp_path, db, client, storage)
        yield d
        d.idle()
        client.portal.call(storage.close)


# ---------------------------------------------------------------- CSRF, Origin, Host


def _other_session_token(dash: Dash) -> str:
    other = TestClient(dash.app, base_url="http://127.0.0.1")
    page = other.get("/")
    match = re.search(r'name="csrf" value="([^"]*)"', page.text)
    assert match
    return match.group(1)


@pytest.mark.parametrize(
    "attack",
    [
        "token_of_another_session",
        "token_in_query_string_only",
        "json_body",
        "multipart_body",
        "origin_other_scheme",
        "origin_suffix_host",
        "origin_other_port_referer_ok",
        "null_origin_with_own_referer",
        "dns_rebinding_host",
        "malformed_cookie",
    ],
)
def test_a_forged_retry_changes_nothing_in_storage_nor_trace(dash: Dash, attack: str) -> None:
    dash.failed("F-1").unlink()
    before = dash.run("F-1")
    good = dash.token("F-1")
    form: Any = {"csrf": good, "step": "pay"}
    url, headers = quote_run("F-1", "/retry"), dict(ORIGIN)
    kw: dict[str, Any] = {}
    if attack == "token_of_another_session":
        form["csrf"] = _other_session_token(dash)
    elif attack == "token_in_query_string_only":
        url += "?csrf=" + good
        form.pop("csrf")
    elif attack == "json_body":
        kw = {"content": json.dumps(form), "headers": {**ORIGIN, "content-type": "application/json"}}
        form = None
    elif attack == "multipart_body":
        kw = {"files": {"csrf": (None, good), "step": (None, "pay")}}
        form = None
    elif attack == "origin_other_scheme":
        headers = {"origin": "https://127.0.0.1"}
    elif attack == "origin_suffix_host":
        headers = {"origin": "http://127.0.0.1.evil.example"}
    elif attack == "origin_other_port_referer_ok":
        headers = {"origin": "http://127.0.0.1:4281", "referer": "http://127.0.0.1/runs/F-1"}
    elif attack == "null_origin_with_own_referer":
        headers = {"origin": "null", "referer": "http://127.0.0.1/runs/F-1"}
    elif attack == "dns_rebinding_host":
        headers = {"origin": "http://evil.example", "host": "evil.example"}
    elif attack == "malformed_cookie":
        headers = {**ORIGIN, "cookie": 'flux_session="unterminated; x'}
    if "headers" in kw:
        response = dash.client.post(url, follow_redirects=False, **kw)
    else:
        response = dash.post(url, form, headers=headers, **kw)
    assert response.status_code in (400, 403), response.text
    dash.unchanged("F-1", before)


@pytest.mark.parametrize("action", ["retry", "resume", "cancel", "signal"])
def test_a_get_to_an_action_url_changes_nothing(dash: Dash, action: str) -> None:
    dash.suspended("S-1")
    before = dash.run("S-1")
    token = dash.token("S-1")
    response = dash.client.get(
        quote_run("S-1", f"/{action}") + f"?csrf={token}&signal=approval&payload=1&step=ask",
        headers=ORIGIN,
        follow_redirects=False,
    )
    assert response.status_code in (404, 405), response.text
    dash.unchanged("S-1", before)


def test_a_huge_body_is_refused_before_it_is_read_whole(dash: Dash) -> None:
    dash.suspended("S-2")
    before = dash.run("S-2")
    token = dash.token("S-2")
    payload = json.dumps({"blob": "x" * 10_000_000})
    response = dash.post(
        quote_run("S-2", "/signal"), {"csrf": token, "signal": "approval", "payload": payload}
    )
    assert response.status_code == 413, response.text
    dash.unchanged("S-2", before)


def test_read_only_refuses_every_action_and_bulk_action(tmp_path: Path) -> None:
    db = tmp_path / "runs.db"
    setup = Dash(tmp_path, db, None, None)  # type: ignore[arg-type]
    SQLiteStorage(db)
    setup.failed("F-1").unlink()
    setup.suspended("S-1")
    app, storage = _app(db, tmp_path, read_only=True)
    with TestClient(app, base_url="http://127.0.0.1") as client:
        dash = Dash(tmp_path, db, client, storage)
        before = {r: dash.run(r) for r in ("F-1", "S-1")}
        page = client.get("/runs/F-1").text
        assert 'action="/runs/F-1/retry"' not in page and "--read-only" in page
        client.get("/")  # a session, and its token (the page offers no form to read it from)
        token = client.portal.call(lambda: _token_of(app, client.cookies["flux_session"]))
        posts = [
            ("/runs/F-1/retry", {"step": "pay"}),
            ("/runs/F-1/resume", {}),
            ("/runs/F-1/cancel", {}),
            ("/runs/S-1/signal", {"signal": "approval", "payload": "{}"}),
            ("/runs/S-1/cancel", {}),
            ("/runs/retry", {"expected": "1"}),
            ("/runs/cancel", {"expected": "1"}),
        ]
        for url, form in posts:
            response = dash.post(url, {"csrf": token, **form})
            assert response.status_code == 403, (url, response.text)
        for run_id, run in before.items():
            dash.unchanged(run_id, run)
        client.portal.call(storage.close)


# ---------------------------------------------------------------- escaping


def _no_markup_injected(html: str) -> None:
    assert "<script>alert(" not in html
    assert "<img src=x" not in html
    assert 'href="javascript:' not in html.lower() and "href='javascript:" not in html.lower()
    assert "\x1b" not in html and "\x00" not in html


def _surrogate_error(ctx: Any) -> None:
    # A file name that is not UTF-8, as os.listdir gives it (surrogateescape): a real error text.
    raise ValueError("cannot read " + os.fsdecode(b"/data/report-\xff.csv"))


surrogate_flow = create_workflow("surrogate").step("read", _surrogate_error)
FLOWS[surrogate_flow.name] = surrogate_flow
HOSTILE_ID = f"R-{EVIL}-javascript:alert(6)-\u202eRTL-\x1b[31m"
PAGES = {
    "runs": "/",
    "runs fragment": "/fragments/runs?" + f"q={quote('R-')}&workflow={quote(hostile_wait.name)}",
    "run": quote_run(HOSTILE_ID),
    "run live": quote_run(HOSTILE_ID, "/live"),
    "graph tab": quote_run(HOSTILE_ID, "/graph"),
    "stuck": "/stuck",
    "stuck fragment": "/fragments/stuck",
    "surrogate runs": "/?q=SUR",
    "surrogate run": "/runs/SUR-1",
    "surrogate live": "/runs/SUR-1/live",
}
SURROGATE_500 = "a lone surrogate in a stored error makes the stored runs list answer 500 (pages._render)"
RAW_CONTROLS = "the runs list and the stuck view render text with pages._render, not runpage._render_clean"


@pytest.fixture(scope="module")
def hostile_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("hostile")
    db = tmp / "runs.db"
    SQLiteStorage(db)
    setup = Dash(tmp, db, None, None)  # type: ignore[arg-type]
    setup.suspended(HOSTILE_ID, hostile_wait)
    with setup.engine() as engine:
        assert engine.execute_sync(surrogate_flow, None, id="SUR-1").status.value == "failed"
    return db


@pytest.mark.parametrize(
    "page",
    [
        "runs",
        "runs fragment",
        "run",
        "run live",
        "graph tab",
        "stuck",
        "stuck fragment",
        "surrogate runs",
        "surrogate run",
        "surrogate live",
    ],
)
def test_hostile_ids_steps_signals_and_errors_are_escaped(hostile_db: Path, page: str) -> None:
    app, storage = _app(hostile_db, hostile_db.parent, stuck_after=0.0)  # every suspended run is stuck
    with TestClient(app, base_url="http://127.0.0.1", raise_server_exceptions=False) as client:
        headers = {"hx-request": "true"} if page == "graph tab" else {}
        response = client.get(PAGES[page], headers=headers)
        client.portal.call(storage.close)
    assert response.status_code == 200, response.text[:300]
    _no_markup_injected(response.text)
    if page.startswith("stuck"):
        assert "suspended_long" in response.text
    if page == "run":
        assert 'data-confirm="Send signal' in response.text
        for attr in re.findall(r'data-confirm="([^"]*)"', response.text):
            assert "<" not in attr and "'" not in attr


@pytest.mark.parametrize("page", ["run", "stuck"])
def test_a_bidi_override_in_an_id_cannot_reorder_the_text_around_it(hostile_db: Path, page: str) -> None:
    app, storage = _app(hostile_db, hostile_db.parent, stuck_after=0.0)
    with TestClient(app, base_url="http://127.0.0.1") as client:
        response = client.get(PAGES[page])
        client.portal.call(storage.close)
    assert response.status_code == 200
    assert "\u202e" not in response.text  # shown as a mark, or isolated, as ESC is shown as ␛


def test_the_stored_run_page_has_a_graph_tab(dash: Dash) -> None:
    dash.suspended("G-1")
    html = dash.client.get("/runs/G-1?tab=graph").text
    assert 'data-tab="graph"' in html and 'id="graph-panel"' in html


def test_the_graph_json_of_a_hostile_run_holds_no_raw_markup(hostile_db: Path) -> None:
    app, storage = _app(hostile_db, hostile_db.parent)
    with TestClient(app, base_url="http://127.0.0.1") as client:
        graph = client.get(quote_run(HOSTILE_ID, "/graph.json"))
        client.portal.call(storage.close)
    assert graph.status_code == 200
    assert graph.headers["content-type"].startswith("application/json")
    assert EVIL_STEP in json.loads(graph.text)["nodes"][0]["name"]  # data, for textContent


def test_a_ten_megabyte_value_and_a_nul_in_an_error_do_not_break_the_run_page(dash: Dash) -> None:
    now = time.time()
    big = json.dumps({"blob": "<b>" * 3_500_000})

    async def plant() -> None:
        await dash.storage.create_run(
            RunRecord(
                "BIG-1",
                "flaky",
                RunStatus.FAILED,
                big,
                created_at=now,
                updated_at=now,
                error="bad \x00 nul \x1b[2J end",
                error_type="ValueError",
            )
        )

    dash.call(plant)
    for url in ("/runs/BIG-1", "/runs/BIG-1/live"):
        response = dash.client.get(url)
        assert response.status_code == 200, (url, response.text[:300])
        assert "<b><b>" not in response.text
        assert "\x00" not in response.text and "\x1b" not in response.text


# ---------------------------------------------------------------- child ids holding "/"


@pytest.mark.parametrize(
    "last",
    [
        "live",
        "retry",
        "cancel",
        "graph",
        "graph.json",
        "header",
        "timeline",
        "step",
    ],
)
def test_a_run_whose_id_ends_like_a_route_is_shown_and_acted_on_as_itself(dash: Dash, last: str) -> None:
    dash.suspended("P")
    dash.suspended(f"P/{last}")
    page = dash.client.get(quote_run(f"P/{last}"))
    assert page.status_code == 200
    assert 'data-run="P/' + last + '"' in page.text
    parent = dash.run("P")
    token = dash.token(f"P/{last}")
    response = dash.post(quote_run(f"P/{last}", "/cancel"), {"csrf": token, "reason": "x"})
    assert response.status_code == 303, response.text
    assert response.headers["location"] == quote_run(f"P/{last}")
    assert dash.run(f"P/{last}").status is RunStatus.CANCELLED
    assert dash.run("P").rev == parent.rev and dash.run("P").status is RunStatus.SUSPENDED


# ---------------------------------------------------------------- actions on runs in the wrong state


def test_a_signal_for_a_run_no_longer_waiting_is_refused_and_changes_nothing(dash: Dash) -> None:
    dash.completed("C-1")
    before = dash.run("C-1")
    token = dash.token("C-1")
    response = dash.post("/runs/C-1/signal", {"csrf": token, "signal": "approval", "payload": '{"ok": 1}'})
    assert response.status_code == 409, response.text
    dash.unchanged("C-1", before)


def test_a_double_click_on_send_signal_signals_once(dash: Dash) -> None:
    dash.suspended("S-1")
    token = dash.token("S-1")
    form = {"csrf": token, "signal": "approval", "payload": '{"ok": true}'}
    first = dash.post("/runs/S-1/signal", form)
    second = dash.post("/runs/S-1/signal", form)
    assert first.status_code == 303, first.text
    assert second.status_code == 409, second.text
    dash.idle()
    assert dash.run("S-1").status is RunStatus.COMPLETED
    assert [ev["action"] for ev in dash.actions()] == ["signal"]


def test_cancel_of_a_finished_run_is_refused_and_changes_nothing(dash: Dash) -> None:
    dash.completed("C-2")
    before = dash.run("C-2")
    response = dash.post("/runs/C-2/cancel", {"csrf": dash.token("C-2")})
    assert response.status_code == 409, response.text
    dash.unchanged("C-2", before)


def _hold(dash: Dash, run_id: str) -> Any:
    """``run_id``, a failed run, made ``running`` under a live lease of a process elsewhere."""
    lease = Lease("worker-elsewhere:77:x", "elsewhere", 77, time.time() + 600, "")
    with sqlite3.connect(dash.db) as conn:
        conn.execute(
            "UPDATE flux_runs SET status='running', lease_owner=?, lease_host=?, lease_pid=?, "
            "lease_expires_at=? WHERE id=?",
            (lease.owner, lease.host, lease.pid, lease.expires_at, run_id),
        )
    return dash.run(run_id)


@pytest.mark.parametrize("action", ["retry", "resume"])
def test_retry_or_resume_of_a_run_a_live_worker_holds_is_refused(dash: Dash, action: str) -> None:
    dash.failed("H-1").unlink()
    before = _hold(dash, "H-1")
    assert before.status is RunStatus.RUNNING and before.lease is not None
    page = dash.client.get("/runs/H-1").text
    assert 'action="/runs/H-1/retry"' not in page and 'action="/runs/H-1/resume"' not in page
    response = dash.post(f"/runs/H-1/{action}", {"csrf": dash.token("H-1"), "step": "pay"})
    assert response.status_code == 409, response.text
    dash.idle()
    dash.unchanged("H-1", before)


def test_an_action_on_a_run_whose_workflow_is_not_loaded_is_refused(dash: Dash) -> None:
    now = time.time()

    async def plant() -> None:
        await dash.storage.create_run(
            RunRecord("U-1", "unknown-flow", RunStatus.FAILED, "{}", created_at=now, updated_at=now)
        )

    dash.call(plant)
    before = dash.run("U-1")
    page = dash.client.get("/runs/U-1").text
    assert "is not loaded" in page
    token = dash.token()
    for action, form in (("retry", {"step": "x"}), ("resume", {}), ("signal", {"signal": "s"})):
        response = dash.post(f"/runs/U-1/{action}", {"csrf": token, **form})
        assert response.status_code == 409, (action, response.text)
        assert "not loaded" in response.text
    dash.unchanged("U-1", before)


# ---------------------------------------------------------------- bulk actions


def clone(db: Path, template: str, count: int, prefix: str, base: float) -> None:
    """``count`` copies of the stored run ``template`` (and its steps), ids ``prefix`` + n,
    created one millisecond apart from ``base``: a busy database in a second."""
    with sqlite3.connect(db) as conn:
        runs = [r[1] for r in conn.execute("PRAGMA table_info(flux_runs)")]
        steps = [r[1] for r in conn.execute("PRAGMA table_info(flux_steps)")]
        conn.execute(
            "CREATE TEMP TABLE n AS WITH RECURSIVE c(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM c "
            "WHERE i + 1 < ?) SELECT i FROM c",
            (count,),
        )
        pick = ", ".join(
            {"id": "? || printf('%06d', n.i)", "created_at": "? + n.i / 1000.0"}.get(c, c) for c in runs
        )
        conn.execute(
            f"INSERT INTO flux_runs ({', '.join(runs)}) SELECT {pick} FROM flux_runs, n WHERE id = ?",
            (prefix, base, template),
        )
        pick = ", ".join("? || printf('%06d', n.i)" if c == "run_id" else c for c in steps)
        conn.execute(
            f"INSERT INTO flux_steps ({', '.join(steps)}) SELECT {pick} FROM flux_steps, n WHERE run_id = ?",
            (prefix, template),
        )
        conn.execute("DROP TABLE n")


@pytest.fixture(scope="module")
def busy_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """10,000 failed runs of ``flaky`` (ids ``B-000000``...), plus their template ``T-0``."""
    tmp = tmp_path_factory.mktemp("busy")
    db = tmp / "runs.db"
    SQLiteStorage(db)
    Dash(tmp, db, None, None).failed("T-0")  # type: ignore[arg-type]
    clone(db, "T-0", 10_000, "B-", time.time() - 3600)
    return db


@pytest.fixture
def busy(busy_db: Path, tmp_path: Path) -> Iterator[Dash]:
    db = tmp_path / "runs.db"
    shutil.copy(busy_db, db)
    app, storage = _app(db, tmp_path)
    with TestClient(app, base_url="http://127.0.0.1") as client:
        d = Dash(tmp_path, db, client, storage)
        yield d
        d.idle()
        client.portal.call(storage.close)


def _failed_count(db: Path) -> int:
    with sqlite3.connect(db) as conn:
        return int(conn.execute("SELECT count(*) FROM flux_runs WHERE status='failed'").fetchone()[0])


def test_a_bulk_retry_over_ten_thousand_runs_is_refused_at_once_and_changes_nothing(busy: Dash) -> None:
    counted = busy.client.get("/actions/selection")
    assert counted.status_code == 409 and "narrow it" in counted.json()["error"]
    token = busy.token()
    for action in ("retry", "cancel"):
        response = busy.post(f"/runs/{action}", {"csrf": token, "expected": "10001"})
        assert response.status_code == 409, response.text
        assert "narrow it" in response.text or action == "cancel"  # failed runs: none to cancel
    assert _failed_count(busy.db) == 10_001
    assert busy.actions() == []


def _statements(dash: Dash, fn: Any) -> list[str]:
    seen: list[str] = []
    conn: sqlite3.Connection = dash.storage._conn
    conn.set_trace_callback(seen.append)
    try:
        fn()
    finally:
        conn.set_trace_callback(None)
    return seen


def test_a_bulk_count_for_a_search_reads_only_the_runs_it_finds(busy: Dash) -> None:
    seen = _statements(busy, lambda: busy.client.get("/actions/selection?q=T-"))
    assert busy.client.get("/actions/selection?q=T-").json()["retry"] == 1
    assert len(seen) < 50, f"{len(seen)} statements to count 1 run"


def test_a_bulk_retry_after_the_selection_changed_acts_on_nothing(dash: Dash) -> None:
    dash.failed("A-1").unlink()
    token = dash.token()
    shown = dash.client.get("/actions/selection").json()
    assert shown["retry"] == 1  # the user confirms 1: A-1
    with dash.engine() as engine:  # meanwhile a worker takes A-1 on, and B-1 fails
        assert engine.resume_sync(flaky, "A-1").status is RunStatus.COMPLETED
    dash.failed("B-1")
    before = dash.run("B-1")
    response = dash.post(
        "/runs/retry", {"csrf": token, "expected": "1", "selection": shown["retry_selection"]}
    )
    dash.idle()
    assert response.status_code == 409, response.text
    dash.unchanged("B-1", before)


# ---------------------------------------------------------------- no query reads the whole table


@pytest.fixture(scope="module")
def huge_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """100,000 stored runs: ``R-000000``... of ``flaky`` and ``other``, most completed, some
    failed, some running under an expired lease, some suspended."""
    tmp = tmp_path_factory.mktemp("huge")
    db = tmp / "runs.db"
    SQLiteStorage(db)
    Dash(tmp, db, None, None).failed("T-0")  # type: ignore[arg-type]
    clone(db, "T-0", 100_000, "R-", time.time() - 86400)
    with sqlite3.connect(db) as conn:
        conn.execute(
            "UPDATE flux_runs SET status='completed' "
            "WHERE id LIKE 'R-%' AND substr(id, 8) NOT IN ('7', '8', '9')"
        )
        conn.execute(
            "UPDATE flux_runs SET name='other' WHERE id LIKE 'R-%' AND substr(id, 7, 1) IN ('1', '3')"
        )
        conn.execute("UPDATE flux_runs SET status='running', lease_expires_at=1 WHERE substr(id, 8) = '8'")
        conn.execute(
            "UPDATE flux_runs SET status='suspended', waiting_for='approval' WHERE substr(id, 8) = '9'"
        )
    return db


def _plans(db: Path, statements: list[str]) -> list[tuple[str, list[str]]]:
    out = []
    with sqlite3.connect(db) as conn:
        for sql in statements:
            if sql.lstrip().upper().startswith("SELECT") and "FROM flux_runs" in sql:
                plan = [str(row[3]) for row in conn.execute("EXPLAIN QUERY PLAN " + sql)]
                out.append((sql, plan))
    return out


def _whole(plan: list[str]) -> bool:
    """Whether a plan reads every matching row before it can stop: a scan with no index, or
    a sort of all of them (a sort of only the ties, "RIGHT PART OF ORDER BY", is fine)."""
    return any(
        (p.startswith("SCAN flux_runs") and "INDEX" not in p) or p == "USE TEMP B-TREE FOR ORDER BY"
        for p in plan
    )


FULL_SORT = (
    "list_runs by id prefix or by several statuses sorts every matching run before LIMIT (TEMP B-TREE)"
)
QUERIED_PAGES = [
    "/",
    "/?page=3",
    "/?status=failed",
    "/?workflow=flaky",
    "/?status=failed&workflow=flaky",
    pytest.param("/?q=R-0", marks=pytest.mark.xfail(strict=True, reason=FULL_SORT)),
    "/?q=R-0&status=failed",
    "/stuck",
    "/runs/R-000001",
    "/actions/selection?workflow=flaky",
    pytest.param("/actions/selection", marks=pytest.mark.xfail(strict=True, reason=FULL_SORT)),
    pytest.param("/actions/selection?q=R-0", marks=pytest.mark.xfail(strict=True, reason=FULL_SORT)),
]


@pytest.mark.parametrize("url", QUERIED_PAGES)
def test_each_page_over_100000_runs_is_an_indexed_query(huge_db: Path, tmp_path: Path, url: str) -> None:
    app, storage = _app(huge_db, tmp_path)
    with TestClient(app, base_url="http://127.0.0.1") as client:
        dash = Dash(tmp_path, huge_db, client, storage)
        seen = _statements(dash, lambda: client.get(url))
        response = client.get(url)
        client.portal.call(storage.close)
    assert response.status_code in (200, 409), response.text[:300]
    plans = _plans(huge_db, seen)
    assert plans, "no query of flux_runs"
    for sql, plan in plans:
        assert not _whole(plan), f"{plan} for {sql[-200:]}"


# ---------------------------------------------------------------- the stuck view, and what unsticks


def _block(ctx: Any) -> str:
    hold = Path(ctx.input["hold"])
    if hold.exists():
        print("started", flush=True)  # the test reads this line, then SIGKILLs this process
        threading.Event().wait()
    return "done"


blocker = create_workflow("blocker").step("hold", _block).step("after", lambda ctx: "after")
FLOWS[blocker.name] = blocker

HOLDER = """
import sys
from flux import FluxEngine, SQLiteStorage, FluxSilentLogger
from tests.viewer.test_review14 import blocker
engine = FluxEngine(storage=SQLiteStorage(sys.argv[1]), logger=FluxSilentLogger())
engine.execute_sync(blocker, {"hold": sys.argv[2]}, id="K-1")
"""


def _killed_holder(tmp_path: Path, db: Path, while_held: Any = None) -> None:
    """Run K-1 of ``blocker`` in another process, and SIGKILL it while it holds the run
    (after ``while_held()``, if given)."""
    hold = tmp_path / "hold"
    hold.touch()
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(db), str(hold)], stdout=subprocess.PIPE, env=env
    )
    try:
        assert proc.stdout is not None and proc.stdout.readline() == b"started\n"
        if while_held is not None:
            while_held()
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()
    hold.unlink()


def test_a_sigkilled_holder_is_stuck_and_resume_really_finishes_the_run(tmp_path: Path) -> None:
    db = tmp_path / "runs.db"
    SQLiteStorage(db)
    _killed_holder(tmp_path, db)
    app, storage = _app(db, tmp_path)
    with TestClient(app, base_url="http://127.0.0.1") as client:
        dash = Dash(tmp_path, db, client, storage)
        assert dash.run("K-1").status is RunStatus.RUNNING
        stuck = client.get("/stuck").text
        assert 'data-reason="holder_dead"' in stuck and "K-1" in stuck
        response = dash.post("/runs/K-1/resume", {"csrf": dash.token("K-1")})
        assert response.status_code == 303, response.text
        dash.idle()
        assert dash.run("K-1").status is RunStatus.COMPLETED
        assert "K-1" not in client.get("/stuck").text
        client.portal.call(storage.close)


def test_a_run_a_live_process_of_this_machine_holds_is_not_offered_nor_driven(tmp_path: Path) -> None:
    db = tmp_path / "runs.db"
    SQLiteStorage(db)
    app, storage = _app(db, tmp_path)
    with TestClient(app, base_url="http://127.0.0.1") as client:
        dash = Dash(tmp_path, db, client, storage)

        def act() -> None:
            before = dash.run("K-1")
            assert before.status is RunStatus.RUNNING
            page = client.get("/runs/K-1").text
            assert 'action="/runs/K-1/retry"' not in page and 'action="/runs/K-1/resume"' not in page
            assert "K-1" not in client.get("/stuck").text
            token = dash.token("K-1")
            for action in ("retry", "resume"):
                response = dash.post(f"/runs/K-1/{action}", {"csrf": token, "step": "hold"})
                assert response.status_code == 409, (action, response.text[:300])
            dash.idle()
            dash.unchanged("K-1", before)

        _killed_holder(tmp_path, db, while_held=act)
        client.portal.call(storage.close)


def test_an_expired_lease_is_stuck_and_resume_takes_it_over_and_finishes(tmp_path: Path) -> None:
    db = tmp_path / "runs.db"
    SQLiteStorage(db)
    _killed_holder(tmp_path, db)
    with sqlite3.connect(db) as conn:  # its holder ran on another machine: only the lease's end tells
        conn.execute(
            "UPDATE flux_runs SET lease_host='elsewhere', lease_identity='', lease_expires_at=? "
            "WHERE id='K-1'",
            (time.time() - 60,),
        )
    app, storage = _app(db, tmp_path)
    with TestClient(app, base_url="http://127.0.0.1") as client:
        dash = Dash(tmp_path, db, client, storage)
        stuck = client.get("/stuck").text
        assert 'data-reason="lease_expired"' in stuck and 'data-action="recover"' in stuck
        response = dash.post("/runs/K-1/resume", {"csrf": dash.token("K-1")})
        assert response.status_code == 303, response.text
        dash.idle()
        assert dash.run("K-1").status is RunStatus.COMPLETED
        client.portal.call(storage.close)


def test_a_run_past_its_deadline_is_stuck_and_cancel_finishes_it(dash: Dash) -> None:
    dash.suspended("D-1")
    with sqlite3.connect(dash.db) as conn:
        conn.execute("UPDATE flux_runs SET deadline=? WHERE id='D-1'", (time.time() - 5,))
    stuck = dash.client.get("/stuck").text
    assert 'data-reason="past_deadline"' in stuck and "D-1" in stuck
    response = dash.post("/runs/D-1/cancel", {"csrf": dash.token("D-1")})
    assert response.status_code == 303, response.text
    assert dash.run("D-1").status is RunStatus.CANCELLED
    assert "D-1" not in dash.client.get("/stuck").text


def test_a_run_suspended_past_stuck_after_is_stuck_and_its_signal_finishes_it(tmp_path: Path) -> None:
    db = tmp_path / "runs.db"
    SQLiteStorage(db)
    Dash(tmp_path, db, None, None).suspended("L-1")  # type: ignore[arg-type]
    app, storage = _app(db, tmp_path, stuck_after=0.0)
    with TestClient(app, base_url="http://127.0.0.1") as client:
        dash = Dash(tmp_path, db, client, storage)
        stuck = client.get("/stuck").text
        assert 'data-reason="suspended_long"' in stuck and 'data-action="signal"' in stuck
        form = {"csrf": dash.token("L-1"), "signal": "approval", "payload": '{"ok": true}'}
        assert dash.post("/runs/L-1/signal", form).status_code == 303
        dash.idle()
        assert dash.run("L-1").status is RunStatus.COMPLETED
        assert "L-1" not in client.get("/stuck").text
        client.portal.call(storage.close)


# ---------------------------------------------------------------- live: files replaced, pruned, PG restarts

ROOT = Path(__file__).resolve().parents[2]
#: A deadline to fail on, not a performance threshold.
DEADLINE_S = 30.0


def write(url: str, mode: str, run_id: str) -> None:
    subprocess.run(
        [sys.executable, "-m", "tests.e2e.stored_writer", url, mode, run_id],
        cwd=ROOT, check=True, capture_output=True, env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=60,
    )  # fmt: skip


def test_a_pruned_run_says_so_on_its_open_page(dash: Dash) -> None:
    dash.suspended("GONE-1")
    assert dash.client.get("/runs/GONE-1").status_code == 200
    with sqlite3.connect(dash.db) as conn:  # flux runs prune, in another process
        conn.execute("DELETE FROM flux_steps WHERE run_id='GONE-1'")
        conn.execute("DELETE FROM flux_runs WHERE id='GONE-1'")
    assert dash.client.get("/runs/GONE-1").status_code == 404
    live = dash.client.get("/runs/GONE-1/live")
    assert live.status_code == 200 and "GONE-1" in live.text
    token = dash.token()
    response = dash.post("/runs/GONE-1/cancel", {"csrf": token})
    assert response.status_code == 404 and "no run with id" in response.text
    assert dash.actions() == []


@pytest.mark.xfail(
    strict=True,
    reason="SQLiteStorage keeps its connection to the replaced file: the old runs go on being shown",
)
def test_a_database_file_replaced_under_flux_dev_is_the_one_shown(dash: Dash, tmp_path: Path) -> None:
    dash.suspended("OLD-1")
    assert "OLD-1" in dash.client.get("/").text
    fresh = tmp_path / "fresh.db"
    SQLiteStorage(fresh)
    Dash(tmp_path, fresh, None, None).suspended("NEW-1")  # type: ignore[arg-type]
    for suffix in ("-wal", "-shm"):
        Path(str(fresh) + suffix).unlink(missing_ok=True)
    os.replace(fresh, dash.db)  # a restore from a backup
    page = dash.client.get("/").text
    assert "NEW-1" in page and "OLD-1" not in page


@pytest.mark.xfail(
    strict=True, reason="SQLiteStorage keeps its connection to the removed file: nothing says it is gone"
)
def test_a_database_file_removed_under_flux_dev_is_said_gone(dash: Dash) -> None:
    dash.suspended("OLD-2")
    for suffix in ("", "-wal", "-shm"):
        Path(str(dash.db) + suffix).unlink(missing_ok=True)
    response = dash.client.get("/")
    assert response.status_code in (200, 503)  # no crash
    assert "OLD-2" not in response.text


def test_the_sqlite_watch_follows_a_replaced_database_file(tmp_path: Path) -> None:
    from viewer.hub import Hub
    from viewer.storage_live import StorageWatch

    db = tmp_path / "runs.db"
    url = f"sqlite:///{db}"
    write(url, "execute", "FIRST-1")

    async def scenario() -> None:
        hub = Hub()
        watch = StorageWatch(url, hub)
        stop = asyncio.Event()
        task = asyncio.create_task(watch.run(stop))
        try:
            await asyncio.wait_for(watch.ready.wait(), DEADLINE_S)
            fresh = tmp_path / "fresh.db"
            await asyncio.to_thread(write, f"sqlite:///{fresh}", "execute", "NEW-0")
            os.replace(fresh, db)
            sub = hub.subscribe()
            await asyncio.to_thread(write, url, "execute", "NEW-1")  # a change in the new file
            pending = await sub.next(10.0)  # a deadline to fail on (the xfail waits it out)
            assert pending, "the change to the new file was not published"
        finally:
            stop.set()
            await task

    asyncio.run(scenario())


def test_postgres_listen_comes_back_after_its_connection_is_dropped(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> None:
    import psycopg

    from tests.services import PG_DSN, postgres_url_or_skip
    from viewer.hub import Hub
    from viewer.storage_live import StorageWatch

    url = postgres_url_or_skip(request)
    write(url, "execute", "FIRST-1")
    name = f"review14-{os.getpid()}-{time.time_ns()}"
    monkeypatch.setenv("PGAPPNAME", name)  # to find the watch's own backend, and no other's

    async def scenario() -> None:
        hub = Hub()
        watch = StorageWatch(url, hub)
        stop = asyncio.Event()
        task = asyncio.create_task(watch.run(stop))
        try:
            await asyncio.wait_for(watch.ready.wait(), DEADLINE_S)
            sub = hub.subscribe()
            watch.ready.clear()  # set again once it listens anew

            def drop() -> int:
                with psycopg.connect(PG_DSN, autocommit=True, application_name="review14-killer") as conn:
                    rows = conn.execute(
                        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = %s",
                        (name,),
                    ).fetchall()
                return len(rows)

            assert await asyncio.to_thread(drop) == 1
            missed = await sub.next(DEADLINE_S)
            assert missed and missed.overflow  # pages look again: something may have been missed
            await asyncio.wait_for(watch.ready.wait(), DEADLINE_S)
            await asyncio.to_thread(write, url, "wait", "AFTER-1")
            seen: set[str] = set()
            while "AFTER-1" not in seen:
                pending = await sub.next(DEADLINE_S)
                assert pending, "no change published after the reconnect"
                seen |= set(pending.runs)
        finally:
            stop.set()
            await task

    asyncio.run(scenario())


# ---------------------------------------------------------------- careless input


def test_a_payload_nested_too_deep_is_refused_naming_the_field(dash: Dash) -> None:
    dash.suspended("S-9")
    before = dash.run("S-9")
    token = dash.token("S-9")
    deep = "[" * 100_000 + "]" * 100_000
    response = dash.post("/runs/S-9/signal", {"csrf": token, "signal": "approval", "payload": deep})
    assert response.status_code == 400, response.text[:300]
    assert "payload" in response.text
    dash.unchanged("S-9", before)


def test_a_retry_form_posted_twice_runs_the_steps_once(dash: Dash) -> None:
    dash.failed("R-9").unlink()
    form = {"csrf": dash.token("R-9"), "step": "pay", "seen": dash.seen("R-9")}
    assert dash.post("/runs/R-9/retry", form).status_code == 303
    dash.idle()
    done = dash.run("R-9")
    assert done.status is RunStatus.COMPLETED
    again = dash.post("/runs/R-9/retry", form)  # the double click, or the same page's form again
    dash.idle()
    assert again.status_code == 409, again.text[:300]
    assert dash.run("R-9").rev == done.rev
    assert [ev["action"] for ev in dash.actions()] == ["retry"]


@pytest.mark.parametrize(
    "url", ["/", "/stuck", "/runs/X", "/actions/selection", "/events", "/static/actions.js"]
)
def test_a_rebound_host_reads_nothing(dash: Dash, url: str) -> None:
    response = dash.client.get(url, headers={"host": "attacker.example"})
    assert response.status_code == 400
    assert "rebinding" in response.text


async def _double_click(db: Path, tmp: Path, action: str) -> tuple[list[int], list[tuple[str, Any]]]:
    """Two POSTs of the same form at once (a double click), on one dashboard."""
    import httpx

    app, storage = _app(db, tmp)
    try:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as client:
            page = await client.get("/runs/D-1")
            match = re.search(r'name="csrf" value="([^"]*)"', page.text)
            assert match
            seen = re.search(r'name="seen" value="([^"]*)"', page.text)
            assert seen is not None
            form = {"csrf": match.group(1), "step": "pay", "seen": html.unescape(seen.group(1))}
            posts = [client.post(f"/runs/D-1/{action}", data=form, headers=ORIGIN) for _ in range(2)]
            answers = await asyncio.gather(*posts)
            await app.state.actions.idle()
            app.state.actions.engine.trace.flush()
    finally:
        await storage.close()
    events = [json.loads(line) for line in (tmp / "trace.ndjson").read_text().splitlines()]
    return [r.status_code for r in answers], [(ev["type"], ev.get("stepName")) for ev in events]


@pytest.mark.parametrize(
    "action",
    [
        "retry",
        "resume",
    ],
)
def test_a_double_click_on_retry_or_resume_acts_once(tmp_path: Path, action: str) -> None:
    db = tmp_path / "runs.db"
    SQLiteStorage(db)
    Dash(tmp_path, db, None, None).failed("D-1").unlink()  # type: ignore[arg-type]
    codes, events = asyncio.run(_double_click(db, tmp_path, action))
    assert sorted(codes) == [303, 409], codes
    assert events.count(("step:start", "ship")) == 1, events
    assert sum(1 for kind, _ in events if kind == "workflow:action") == 1, events


# ("pct%2Fx" is in tests/e2e/test_review14.py: Starlette's TestClient decodes a path twice)
@pytest.mark.parametrize("run_id", ["Q?x=1#frag", "sp ace", "dot/..", "trail/"])
def test_a_run_id_with_url_characters_is_shown_and_acted_on_as_itself(dash: Dash, run_id: str) -> None:
    dash.suspended(run_id)
    page = dash.client.get(quote_run(run_id))
    assert page.status_code == 200, page.text[:300]
    response = dash.post(quote_run(run_id, "/cancel"), {"csrf": dash.token(run_id), "reason": "x"})
    assert response.status_code == 303, response.text[:300]
    assert response.headers["location"] == quote_run(run_id)
    assert dash.run(run_id).status is RunStatus.CANCELLED


def test_hostile_text_in_an_action_and_in_its_refusal_is_escaped(dash: Dash) -> None:
    dash.suspended("A-1")
    token = dash.token("A-1")
    evil_reason = "<script>alert(7)</script>"
    assert dash.post("/runs/A-1/cancel", {"csrf": token, "reason": evil_reason}).status_code == 303
    page = dash.client.get("/runs/A-1").text
    assert "alert(7)" in page and evil_reason not in page
    dash.failed("A-2")
    refused = dash.post("/runs/A-2/retry", {"csrf": token, "step": "<script>alert(8)</script>"})
    assert refused.status_code in (400, 409)
    assert "alert(8)" in refused.text and "<script>alert(8)" not in refused.text


@pytest.mark.xfail(
    strict=True,
    reason="the channel 'flux_runs' is shared by every schema of the database: other schemas cause refreshes",
)
def test_postgres_watch_hears_only_its_own_schema(request: pytest.FixtureRequest) -> None:
    from tests.services import postgres_url_or_skip
    from viewer.hub import Hub
    from viewer.storage_live import StorageWatch

    mine, other = postgres_url_or_skip(request), postgres_url_or_skip(request)
    write(mine, "execute", "FIRST-1")
    write(other, "execute", "FIRST-2")

    async def scenario() -> None:
        hub = Hub()
        watch = StorageWatch(mine, hub)
        stop = asyncio.Event()
        task = asyncio.create_task(watch.run(stop))
        try:
            await asyncio.wait_for(watch.ready.wait(), DEADLINE_S)
            sub = hub.subscribe()
            await asyncio.to_thread(write, other, "execute", "OTHER-1")  # another schema: not ours
            await asyncio.to_thread(write, mine, "execute", "MINE-1")  # notified after it, in order
            seen: set[str] = set()
            while "MINE-1" not in seen:
                pending = await sub.next(DEADLINE_S)
                assert pending, "no change published"
                seen |= set(pending.runs)
            assert "OTHER-1" not in seen, seen
        finally:
            stop.set()
            await task

    asyncio.run(scenario())
