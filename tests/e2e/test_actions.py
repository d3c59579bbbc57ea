"""Each dashboard action clicked in the real Chromium against a real dashboard process on
SQLite and on PostgreSQL: its effect checked in storage and on the page; and the refusals
(another origin, a stale token, --read-only) changing nothing (SPEC §12)."""

from __future__ import annotations

import concurrent.futures
import http.server
import os
import re
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from flux import FluxEngine
from flux.logger import FluxSilentLogger
from flux.trace import JsonFileTraceSink
from tests.e2e.conftest import DEADLINE_S, ROOT, Server
from tests.services import postgres_url_or_skip
from tests.viewer.action_flows import approval, flaky


def _flux_dev_has_storage() -> bool:
    from flux.cli import _parser, _subparser

    return "--storage" in _subparser(_parser(), "dev").format_help()


#: Whether this build's ``flux dev`` serves stored runs (``--storage``, ``--workflows``).
REAL = _flux_dev_has_storage()
LAUNCHER = "import sys; from flux.cli import main; sys.exit(main(sys.argv[1:]))"


class ActionServer(Server):
    """A dashboard on ``url`` with the test workflows: the real ``flux dev --storage URL
    --workflows tests.viewer.action_flows`` when this build has it, else the bare pages of
    ``tests.e2e.actions_server`` (``/stored/<id>``, ``/stored``) that include the same
    action templates."""

    def __init__(
        self, url: str, trace: Path, port: int = 0, read_only: bool = False, real: bool = REAL
    ) -> None:
        self.trace, self.real = trace, real
        if real:
            cmd = [sys.executable, "-c", LAUNCHER, "dev", "--storage", url, "--trace", str(trace)]
            cmd += ["--workflows", "tests.viewer.action_flows"]
        else:
            cmd = [sys.executable, "-m", "tests.e2e.actions_server", "--storage", url, "--trace", str(trace)]
        cmd += ["--port", str(port)] + (["--read-only"] if read_only else [])
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

    def run_page(self, run_id: str) -> str:
        return f"{self.url}/runs/{run_id}" if self.real else f"{self.url}/stored/{run_id}"

    def runs_page(self, query: str) -> str:
        return f"{self.url}/?{query}" if self.real else f"{self.url}/stored?{query}"


class World:
    """The storage URL, a trace, and an engine of the test's own on them. Its blocking
    calls run in a thread: Playwright's sync API keeps an event loop on this one."""

    def __init__(self, url: str, tmp: Path) -> None:
        self.url, self.tmp = url, tmp
        self.trace = tmp / "trace.ndjson"
        self.pool = concurrent.futures.ThreadPoolExecutor(1)
        self.sink = JsonFileTraceSink(self.trace)
        self.engine = FluxEngine(storage=url, logger=FluxSilentLogger(), trace=self.sink)

    def _call(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        return self.pool.submit(fn, *args, **kwargs).result()

    def failed(self, run_id: str) -> Path:
        gate = self.tmp / f"gate-{run_id}"
        gate.touch()
        assert self._call(self.engine.execute_sync, flaky, {"gate": str(gate)}, id=run_id).status == "failed"
        self.sink.flush()  # in the trace before a page is opened on it
        return gate

    def suspended(self, run_id: str) -> None:
        assert self._call(self.engine.execute_sync, approval, None, id=run_id).status == "suspended"
        self.sink.flush()

    def settled(self, run_id: str) -> Any:
        """The run once it is no longer pending or running, whichever process runs it."""
        return self._call(self.engine.wait_sync, run_id, timeout=DEADLINE_S)

    def stored(self, run_id: str) -> Any:
        return self._call(self.engine.get_sync, run_id)

    def close(self) -> None:
        self._call(self.engine.close_sync)
        self.pool.shutdown()


@pytest.fixture(params=["sqlite", "postgres"])
def world(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[World]:
    url = f"sqlite:///{tmp_path / 'runs.db'}" if request.param == "sqlite" else postgres_url_or_skip(request)
    w = World(url, tmp_path)
    try:
        yield w
    finally:
        w.close()


@pytest.fixture
def dash(world: World) -> Iterator[ActionServer]:
    srv = ActionServer(world.url, world.trace)
    try:
        yield srv
    finally:
        srv.stop()


def _fingerprint(result: Any) -> Any:
    """What an action would change: the run's state and every step's state and attempts."""
    steps = [(s.name, s.status, s.attempts, s.completed_at) for s in result.history]
    return (result.status, result.error, result.completed_at, steps)


def _confirm(page: Any, text: str) -> None:
    """Confirm the open dialog; returns once the POST has been answered and its page loaded
    (on the real run page, the page it redirects to has the same address)."""
    dialog = page.locator("dialog.confirm-dialog")
    dialog.locator(".confirm-text").filter(has_text=text).wait_for()
    with page.expect_navigation():
        dialog.locator(".confirm-yes").click()


def _marker(page: Any, text: str) -> None:
    page.locator(".action-row .action-text", has_text=text).wait_for()


def test_retry_from_a_step(world: World, dash: ActionServer, page: Any) -> None:
    world.failed("R-1").unlink()
    page.goto(dash.run_page("R-1"))
    page.select_option(".action-retry select[name=step]", "pay")
    page.click(".action-retry button[type=submit]")
    _confirm(page, "Retry run R-1 from step “pay”?")
    page.wait_for_url(re.compile(r"/runs/R-1$"))
    assert world.settled("R-1").status == "completed"
    _marker(page, "retried from pay by dashboard")


def test_resume(world: World, dash: ActionServer, page: Any) -> None:
    world.failed("R-2").unlink()
    page.goto(dash.run_page("R-2"))
    page.click(".action-resume button[type=submit]")
    _confirm(page, "Resume run R-2")
    page.wait_for_url(re.compile(r"/runs/R-2$"))
    assert world.settled("R-2").status == "completed"
    _marker(page, "resumed by dashboard")


def test_signal_with_a_json_payload(world: World, dash: ActionServer, page: Any) -> None:
    world.suspended("S-1")
    page.goto(dash.run_page("S-1"))
    assert page.input_value(".action-signal input[name=signal]") == "approval"
    page.fill(".action-signal textarea[name=payload]", "{not json")
    page.click(".action-signal button[type=submit]")
    _confirm_refused = page.locator("dialog.confirm-dialog .confirm-text", has_text="not valid JSON")
    _confirm_refused.wait_for()
    assert page.locator("dialog.confirm-dialog .confirm-yes").is_disabled()
    page.locator("dialog.confirm-dialog .confirm-no").click()
    assert world.stored("S-1").status == "suspended"  # nothing was sent
    page.fill(".action-signal textarea[name=payload]", '{"approved": true, "by": "<b>ann</b>"}')
    page.click(".action-signal button[type=submit]")
    _confirm(page, "Send signal “approval” to run S-1?")
    page.wait_for_url(re.compile(r"/runs/S-1$"))
    result = world.settled("S-1")
    assert result.status == "completed"
    assert result.outputs["finish"] == {"approved": True, "by": "<b>ann</b>"}
    _marker(page, "signal approval sent by dashboard")


def test_cancel(world: World, dash: ActionServer, page: Any) -> None:
    world.suspended("C-1")
    page.goto(dash.run_page("C-1"))
    page.fill(".action-cancel input[name=reason]", "customer asked")
    page.click(".action-cancel button[type=submit]")
    _confirm(page, "Cancel run C-1?")
    page.wait_for_url(re.compile(r"/runs/C-1$"))
    assert world.stored("C-1").status == "cancelled"
    _marker(page, "cancelled by dashboard: customer asked")


def test_bulk_retry_shows_the_count_and_retries_them(world: World, dash: ActionServer, page: Any) -> None:
    world.failed("B-1").unlink()
    world.failed("B-2").unlink()
    world.suspended("B-3")
    page.goto(dash.runs_page("status=failed"))
    page.click(".bulk-retry button[type=submit]")
    _confirm(page, "Retry 2 runs (status failed)?")
    page.wait_for_url(re.compile(r"/\?status=failed$"))
    assert [world.settled(i).status for i in ("B-1", "B-2")] == ["completed", "completed"]
    assert world.stored("B-3").status == "suspended"


@pytest.fixture
def attacker(dash: ActionServer) -> Iterator[str]:
    """A page on another origin with a form aimed at the dashboard."""
    html = f"""<!doctype html><form method="post" action="{dash.url}/runs/X-1/retry">
      <input name="step" value="pay"><input name="csrf" value="guessed"><button>go</button></form>"""

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


def test_a_cross_origin_form_is_refused_and_changes_nothing(
    world: World, dash: ActionServer, attacker: str, page: Any
) -> None:
    world.failed("X-1").unlink()
    before = world.stored("X-1")
    page.goto(dash.run_page("X-1"))  # the user has a session with the dashboard
    page.goto(attacker)
    with page.expect_navigation():
        page.click("button")
    assert "cross-origin request refused" in page.inner_text("#action-message")
    after = world.stored("X-1")
    assert _fingerprint(after) == _fingerprint(before)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_a_form_from_before_a_restart_is_stale_and_changes_nothing(world: World, page: Any) -> None:
    world.failed("X-2").unlink()
    before = world.stored("X-2")
    port = _free_port()
    # The bare page: a live page may well re-render its forms with a fresh token on reconnection.
    first = ActionServer(world.url, world.trace, port=port, real=False)
    try:
        page.goto(first.run_page("X-2"))
    finally:
        first.stop()
    second = ActionServer(world.url, world.trace, port=port, real=False)
    try:
        page.click(".action-retry button[type=submit]")
        _confirm(page, "Retry run X-2")
        page.locator("#action-message", has_text="stale or wrong").wait_for()
        after = world.stored("X-2")
        assert _fingerprint(after) == _fingerprint(before)
    finally:
        second.stop()


def test_read_only_offers_nothing_and_refuses_a_post(world: World, page: Any) -> None:
    world.failed("X-3").unlink()
    before = world.stored("X-3")
    srv = ActionServer(world.url, world.trace, read_only=True)
    try:
        page.goto(srv.run_page("X-3"))
        assert "--read-only" in page.inner_text(".run-actions")
        assert page.locator(".run-actions form").count() == 0
        status = page.evaluate(
            """() => fetch('/runs/X-3/retry', {method: 'POST', body: 'step=pay',
                 headers: {'content-type': 'application/x-www-form-urlencoded'}}).then(r => r.status)"""
        )
        assert status == 403
        after = world.stored("X-3")
        assert _fingerprint(after) == _fingerprint(before)
    finally:
        srv.stop()


@pytest.mark.skipif(not REAL, reason="the bare pages are not live: needs flux dev --storage (h/storageview)")
def test_a_form_being_filled_in_survives_a_live_update(world: World, dash: ActionServer, page: Any) -> None:
    import json

    world.suspended("L-1")
    page.goto(dash.run_page("L-1"))
    page.fill(".action-signal textarea[name=payload]", '{"typed": "before the update"}')
    # Another process writes to the trace: the page re-renders the run's part of it.
    line = {"v": 1, "seq": 99, "type": "workflow:action", "timestamp": 1, "workflowId": "L-1",
            "workflowName": "approval", "action": "look", "by": "another process"}  # fmt: skip
    with open(world.trace, "a") as f:
        f.write(json.dumps(line) + "\n")
    _marker(page, "look by another process")  # the update has been swapped in
    assert page.input_value(".action-signal textarea[name=payload]") == '{"typed": "before the update"}'
    page.click(".action-signal button[type=submit]")
    _confirm(page, "Send signal “approval” to run L-1?")
    assert world.settled("L-1").outputs["finish"] == {"typed": "before the update"}
