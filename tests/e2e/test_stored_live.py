"""`flux dev --storage` in a real process, seen by a real Chromium, on SQLite and PostgreSQL:
a run changed by another process appears on the open page without a reload, and the stuck
view lists a run whose process was SIGKILLed."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.services import postgres_url_or_skip

from .conftest import ROOT
from .stored_server import DevServer

MARK = "window.__notReloaded = 'yes'"


def StoredServer(url: str, cwd: Path) -> DevServer:
    """`flux dev --storage URL` (and nothing else) in its own process."""
    return DevServer(["--storage", url], cwd)


def writer(url: str, mode: str, run_id: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "tests.e2e.stored_writer", url, mode, run_id],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT), "FLUX_HOLD": "1" if mode == "hold" else "0"},
    )


def killed_holder(url: str, run_id: str) -> None:
    """A real process executing ``run_id``, SIGKILLed in the middle of its step."""
    holder = writer(url, "hold", run_id)
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline().strip() == "blocked"  # the step runs: the lease is stored
    finally:
        os.kill(holder.pid, signal.SIGKILL)
        holder.wait()
        if holder.stdout is not None:
            holder.stdout.close()


def write(url: str, mode: str, run_id: str) -> None:
    proc = writer(url, mode, run_id)
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0 and "done" in out, out


@pytest.fixture(params=["sqlite", "postgres"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'runs.db'}"
    return postgres_url_or_skip(request)


@pytest.fixture
def stored(url: str, tmp_path: Path) -> Iterator[DevServer]:
    write(url, "execute", "FIRST-1")  # the storage exists before the dashboard opens it
    srv = StoredServer(url, tmp_path)
    try:
        yield srv
    finally:
        srv.stop()


def test_a_run_changed_by_another_process_appears_without_reload(
    stored: DevServer, url: str, page: Any
) -> None:
    page.goto(stored.url + "/")
    page.wait_for_selector('tr.run[data-run-id="FIRST-1"]')
    page.wait_for_selector("#live.on")  # the stream is open
    page.evaluate(MARK)
    write(url, "wait", "WAIT-1")  # another process: a new run, suspended
    page.wait_for_selector('tr.run[data-run-id="WAIT-1"][data-status="suspended"]')
    assert page.evaluate("window.__notReloaded") == "yes"

    page.goto(stored.url + "/runs/WAIT-1")
    page.wait_for_selector('#stored-status[data-status="suspended"]')
    page.wait_for_selector("#live.on")
    page.evaluate(MARK)
    write(url, "signal", "WAIT-1")  # another process approves it
    page.wait_for_selector('#stored-status[data-status="completed"]')
    assert page.evaluate("window.__notReloaded") == "yes"


def test_the_stuck_view_lists_a_run_whose_process_was_killed(stored: DevServer, url: str, page: Any) -> None:
    killed_holder(url, "HOLD-1")
    page.goto(stored.url + "/")
    page.click("#stuck-link")
    row = page.wait_for_selector('#stuck tr.run[data-run-id="HOLD-1"]')
    assert row.get_attribute("data-reason") == "holder_dead"
    assert page.text_content('#stuck tr.run[data-run-id="HOLD-1"] td.act b') == "recover"
    assert page.query_selector('#stuck tr.run[data-run-id="FIRST-1"]') is None


def test_recover_from_the_stuck_view_finishes_the_killed_run(url: str, tmp_path: Path, page: Any) -> None:
    """With the actions (viewer/actions.py) in this build: the stuck row's resume runs it on."""
    pytest.importorskip("viewer.actions", reason="the dashboard's actions are not in this build")
    write(url, "execute", "FIRST-1")
    srv = DevServer(["--storage", url, "--workflows", "tests.e2e.stored_writer"], tmp_path)
    try:
        killed_holder(url, "HOLD-2")
        page.goto(srv.url + "/stuck")
        row = page.locator('#stuck tr.run[data-run-id="HOLD-2"]')
        row.locator(".action-resume button[type=submit]").click()
        dialog = page.locator("dialog.confirm-dialog")
        dialog.locator(".confirm-text").filter(has_text="Resume run HOLD-2").wait_for()
        dialog.locator(".confirm-yes").click()
        page.wait_for_selector('#stored-status[data-status="completed"]')
    finally:
        srv.stop()
