"""Adversarial review of `flux dev --storage` (issue 14) in the real Chromium against the
real `flux dev --storage ... --workflows ...` process: hostile stored values run no script
on any page (the runs list, the run page and its confirmation dialog, the graph tab, the
stuck view), and another site cannot frame the dashboard."""

from __future__ import annotations

import concurrent.futures
import http.server
import os
import re
import sqlite3
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

from flux import FluxEngine, SQLiteStorage
from flux.logger import FluxSilentLogger
from tests.e2e.conftest import ROOT, Server
from tests.viewer.action_flows import approval, flaky
from tests.viewer.test_review14 import HOSTILE_ID, hostile_wait

LAUNCHER = "import sys; from flux.cli import main; sys.exit(main(sys.argv[1:]))"


class StoredServer(Server):
    """``flux dev --storage URL --workflows tests.viewer.test_review14 --stuck-after 1h``."""

    def __init__(self, url: str, trace: Path) -> None:
        self.trace = trace
        cmd = [sys.executable, "-c", LAUNCHER, "dev", "--storage", url, "--trace", str(trace), "--port", "0"]
        cmd += ["--workflows", "tests.viewer.test_review14", "--stuck-after", "1h"]
        self.proc = subprocess.Popen(
            cmd,
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1", "PYTHONPATH": str(ROOT)},
        )
        self.url = self._wait_for_url()
        self._wait_until_it_answers()


@pytest.fixture
def hostile(tmp_path: Path) -> Iterator[StoredServer]:
    db = tmp_path / "runs.db"

    def fill() -> str:  # in a thread: Playwright's sync API keeps an event loop on this one
        SQLiteStorage(db)
        with FluxEngine(storage=SQLiteStorage(db), logger=FluxSilentLogger()) as engine:
            status = str(engine.execute_sync(hostile_wait, None, id=HOSTILE_ID).status.value)
        with sqlite3.connect(db) as conn:  # suspended two hours ago: stuck
            conn.execute("UPDATE flux_runs SET updated_at = updated_at - 7200")
        return status

    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        assert pool.submit(fill).result() == "suspended"
    srv = StoredServer(f"sqlite:///{db}", tmp_path / "trace.ndjson")
    try:
        yield srv
    finally:
        srv.stop()


def _dismissed(seen: list[str], dialog: Any) -> None:
    seen.append(dialog.message)
    dialog.dismiss()


def test_hostile_stored_values_run_no_script_on_any_page(hostile: StoredServer, page: Any) -> None:
    dialogs: list[str] = []
    page.on("dialog", lambda d: _dismissed(dialogs, d))
    run_url = hostile.url + "/runs/" + quote(HOSTILE_ID, safe="")

    page.goto(hostile.url + "/")
    page.locator("#runs a", has_text="R-").first.wait_for()
    page.goto(hostile.url + "/stuck")
    page.locator('[data-reason="suspended_long"]').first.wait_for()

    page.goto(run_url)
    page.locator("#stored-status").wait_for()
    # the confirmation shows the hostile id as text
    page.click(".action-cancel button[type=submit]")
    text = page.locator("dialog.confirm-dialog .confirm-text")
    text.wait_for()
    assert "Cancel run R-\"'><script>alert(1)</script>-javascript:alert(6)" in text.inner_text()
    page.locator("dialog.confirm-dialog .confirm-no").click()
    assert dialogs == []


def test_the_graph_tab_of_a_hostile_stored_run_runs_no_script(hostile: StoredServer, page: Any) -> None:
    dialogs: list[str] = []
    page.on("dialog", lambda d: _dismissed(dialogs, d))
    page.goto(hostile.url + "/runs/" + quote(HOSTILE_ID, safe="") + "/graph")  # redirected to ?tab=graph
    page.locator("#graph-panel svg .gnode").first.wait_for(timeout=5000)
    names = page.locator("#graph-panel svg .gnode").evaluate_all(
        "ns => ns.map(n => n.getAttribute('data-step'))"
    )
    assert "<img src=x onerror=alert(2)>" in names
    links = page.locator("#graph-panel a").evaluate_all("as => as.map(a => a.getAttribute('href'))")
    assert all(not re.match(r"\s*javascript:", str(h), re.I) for h in links), links
    assert dialogs == []


@pytest.fixture
def framer(hostile: StoredServer) -> Iterator[str]:
    """A page on another origin that frames the dashboard's run page."""
    html = f'<!doctype html><iframe id="f" src="{hostile.url}/runs/{quote(HOSTILE_ID, safe="")}"></iframe>'

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("content-type", "text/html")
            self.end_headers()
            self.wfile.write(html.encode())

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://localhost:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()


def test_another_site_cannot_frame_the_dashboard(hostile: StoredServer, framer: str, page: Any) -> None:
    with page.expect_response(lambda r: "/runs/" in r.url) as answered:
        page.goto(framer)
    assert answered.value.status == 200  # served, and refused to be framed by its headers
    frame = page.frame_locator("#f")
    assert frame.locator(".action-cancel").count() == 0
    child = [f for f in page.frames if f != page.main_frame]
    assert all(not f.url.startswith(hostile.url) or f.url == "about:blank" for f in child) or all(
        "stored-status" not in f.content() for f in child
    )


@pytest.fixture
def odd(tmp_path: Path) -> Iterator[StoredServer]:
    db = tmp_path / "runs.db"

    def fill() -> None:
        SQLiteStorage(db)
        with FluxEngine(storage=SQLiteStorage(db), logger=FluxSilentLogger()) as engine:
            for run_id in ODD_IDS:
                assert engine.execute_sync(approval, None, id=run_id).status.value == "suspended"

    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        pool.submit(fill).result()
    srv = StoredServer(f"sqlite:///{db}", tmp_path / "trace.ndjson")
    try:
        yield srv
    finally:
        srv.stop()


ODD_IDS = ["pct%2Fx", "P/live", "Q?x=1#f"]


@pytest.mark.parametrize("run_id", ODD_IDS)
def test_an_odd_run_id_is_cancelled_from_its_page_on_the_real_server(
    odd: StoredServer, page: Any, run_id: str
) -> None:
    page.goto(odd.url + "/runs/" + quote(run_id, safe=""))
    assert page.locator("section.run-actions").get_attribute("data-run") == run_id
    page.click(".action-cancel button[type=submit]")
    dialog = page.locator("dialog.confirm-dialog")
    dialog.locator(".confirm-text").wait_for()
    with page.expect_navigation():
        dialog.locator(".confirm-yes").click()
    assert page.locator("#stored-status").get_attribute("data-status") == "cancelled"
    assert page.url == odd.url + "/runs/" + quote(run_id, safe="")


@pytest.fixture
def braces(tmp_path: Path) -> Iterator[StoredServer]:
    db = tmp_path / "runs.db"
    gate = tmp_path / "gate"
    gate.touch()

    def fill() -> None:
        SQLiteStorage(db)
        with FluxEngine(storage=SQLiteStorage(db), logger=FluxSilentLogger()) as engine:
            result = engine.execute_sync(flaky, {"gate": str(gate)}, id="R-{step}-$&")
            assert result.status.value == "failed"

    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        pool.submit(fill).result()
    srv = StoredServer(f"sqlite:///{db}", tmp_path / "trace.ndjson")
    try:
        yield srv
    finally:
        srv.stop()


def test_the_retry_confirmation_names_the_run_and_the_step_as_they_are(
    braces: StoredServer, page: Any
) -> None:
    page.goto(braces.url + "/runs/" + quote("R-{step}-$&", safe=""))
    page.select_option(".action-retry select[name=step]", "pay")
    page.click(".action-retry button[type=submit]")
    text = page.locator("dialog.confirm-dialog .confirm-text")
    text.wait_for()
    assert text.inner_text().startswith("Retry run R-{step}-$& from step “pay”?"), text.inner_text()
