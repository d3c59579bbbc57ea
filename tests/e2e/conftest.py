"""End-to-end fixtures: a real ``flux dev`` process and a real Chromium.

Browser tests skip, with the reason, when Debian's Chromium is not installed,
unless ``FLUX_REQUIRE_SERVICES=1``: then a missing browser is a failure, so
that CI cannot pass by skipping.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = Path(__file__).resolve().parent / "artifacts"
#: Generous: a deadline to fail on, not a performance threshold.
DEADLINE_S = 30.0


def require_service(available: bool, what: str) -> None:
    """Skip when ``what`` is missing, or fail if FLUX_REQUIRE_SERVICES=1."""
    if available:
        return
    if os.environ.get("FLUX_REQUIRE_SERVICES") == "1":
        pytest.fail(f"{what} is required (FLUX_REQUIRE_SERVICES=1) but missing")
    pytest.skip(f"{what} is missing")


def require_chromium() -> None:
    require_service(
        CHROMIUM.is_file() and os.access(CHROMIUM, os.X_OK),
        f"Debian's Chromium at {CHROMIUM} (apt-get install chromium)",
    )


def server_command(trace: Path) -> list[str]:
    """``flux dev`` through the engine's CLI when it is importable, else the viewer's own."""
    try:
        import flux.cli  # noqa: F401
    except ImportError:
        return [sys.executable, "-m", "viewer", "--trace", str(trace), "--port", "0"]
    launcher = "import sys; from flux.cli import main; sys.exit(main(sys.argv[1:]))"
    return [sys.executable, "-c", launcher, "dev", "--trace", str(trace), "--port", "0"]


class Server:
    def __init__(self, trace: Path, cwd: Path = ROOT) -> None:
        self.trace = trace if trace.is_absolute() else cwd / trace
        self.proc = subprocess.Popen(
            server_command(trace),
            cwd=cwd,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1", "PYTHONPATH": str(ROOT)},
        )
        self.url = self._wait_for_url()
        self._wait_until_it_answers()

    def _wait_for_url(self) -> str:
        assert self.proc.stdout is not None
        seen = []
        for line in self.proc.stdout:  # ends when the process does
            seen.append(line)
            match = re.search(r"serving (http://\S+)", line)
            if match:
                return match.group(1).rstrip("/")
        raise RuntimeError("the server exited before serving:\n" + "".join(seen))

    def _wait_until_it_answers(self) -> None:
        deadline = time.monotonic() + DEADLINE_S
        while True:
            try:
                with urllib.request.urlopen(self.url + "/", timeout=DEADLINE_S) as response:
                    if response.status == 200:
                        return
            except (urllib.error.URLError, ConnectionError):
                if time.monotonic() > deadline:
                    raise
            time.sleep(0.05)  # nothing to wait on but the socket itself

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=DEADLINE_S)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        if self.proc.stdout is not None:
            self.proc.stdout.close()


def fake_engine(
    trace: Path, run_id: str, scenario: str, gate: Path | None = None, module: str = "fake_engine"
) -> subprocess.Popen[bytes]:
    """Another process appending a run to the trace: hand-made events, or with
    ``module="engine_writer"`` the real engine."""
    cmd = [sys.executable, "-m", f"tests.e2e.{module}", "--trace", str(trace), "--run-id", run_id]
    cmd += ["--scenario", scenario]
    if gate is not None:
        cmd += ["--gate", str(gate)]
    return subprocess.Popen(cmd, cwd=ROOT)


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    srv = Server(tmp_path / ".flux" / "trace.ndjson")
    try:
        yield srv
    finally:
        srv.stop()


@pytest.fixture(scope="module")  # not session: its event loop must not outlive these tests
def browser() -> Iterator[Any]:
    require_chromium()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    pg = context.new_page()
    pg.set_default_timeout(DEADLINE_S * 1000)
    errors: list[str] = []
    pg.on("pageerror", lambda exc: errors.append(str(exc)))
    try:
        yield pg
    finally:
        context.close()
    assert errors == [], errors
