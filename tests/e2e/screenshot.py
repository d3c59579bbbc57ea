"""Regenerate the README's picture of a run page from a real engine run:
``python -m tests.e2e.screenshot static/img/run-page.png``."""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

from tests.e2e.conftest import CHROMIUM, CHROMIUM_ARGS, ROOT, Server


def main(out: Path) -> None:
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory() as tmp:
        trace = Path(tmp) / ".flux" / "trace.ndjson"  # shown as the default ./.flux/trace.ndjson
        for run_id, scenario in (("ORD-1041", "order"), ("ORD-1042", "saga")):
            cmd = [sys.executable, "-m", "tests.e2e.engine_writer", "--trace", str(trace)]
            subprocess.run([*cmd, "--run-id", run_id, "--scenario", scenario], cwd=ROOT, check=True)
        srv = Server(Path(".flux/trace.ndjson"), cwd=Path(tmp))
        try:
            with sync_playwright() as pw:
                browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
                page = browser.new_page(viewport={"width": 1400, "height": 1020})
                page.goto(srv.url + "/runs/ORD-1042?step=payment")
                page.wait_for_selector('#timeline .trow[data-compensation="1"]')
                page.screenshot(path=str(out))
                browser.close()
        finally:
            srv.stop()


if __name__ == "__main__":
    main(Path(sys.argv[1]).resolve())
