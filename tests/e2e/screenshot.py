"""Regenerate the README's picture of a run page from ``flux dev --demo``:
``python -m tests.e2e.screenshot [static/img/run-page.png]``.

It starts ``flux dev --demo`` in a temporary folder (the demo writes its own trace and
database there), opens the demo's saga whose undo failed (travel-booking's Budapest trip:
the failure headline, what was undone and what failed to undo, the timeline with its
retries, back-offs and compensations), selects the failed step, and saves the picture.
Needs Chromium at /usr/bin/chromium and the viewer extra.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import tempfile
from pathlib import Path

from tests.e2e.conftest import CHROMIUM, CHROMIUM_ARGS, ROOT

#: The demo's run shown, by the start of its id (the rest differs at every demo).
RUN = "TRIP-budapest-"
STEP = "payment"
SIZE = {"width": 1400, "height": 1000}


def start_demo(folder: Path) -> tuple[subprocess.Popen[str], str]:
    """``flux dev --demo`` in ``folder``, and the address it serves."""
    launcher = "import sys; from flux.cli import main; sys.exit(main(sys.argv[1:]))"
    proc = subprocess.Popen(
        [sys.executable, "-c", launcher, "dev", "--demo", "--trace", ".flux/trace.ndjson", "--port", "0"],
        cwd=folder, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        env={"PATH": "/usr/bin:/bin", "PYTHONUNBUFFERED": "1", "PYTHONPATH": str(ROOT)},
    )  # fmt: skip
    assert proc.stdout is not None
    seen = []
    for line in proc.stdout:
        seen.append(line)
        match = re.search(r"serving (http://\S+)", line)
        if match:
            return proc, match.group(1).rstrip("/")
    raise RuntimeError("flux dev --demo exited before serving:\n" + "".join(seen))


def demo_run_id(folder: Path) -> str:
    trace = folder / ".flux" / "demo" / "trace.ndjson"
    for line in trace.read_text(encoding="utf-8").splitlines():
        run_id = json.loads(line).get("workflowId", "")
        if run_id.startswith(RUN):
            return str(run_id)
    raise RuntimeError(f"no run {RUN}… in {trace}")


def main(out: Path) -> None:
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        proc, url = start_demo(folder)
        try:
            run_id = demo_run_id(folder)
            with sync_playwright() as pw:
                browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
                page = browser.new_page(viewport=SIZE, color_scheme="light")
                page.goto(f"{url}/runs/{run_id}?step={STEP}")
                page.wait_for_selector("#run-headline")
                page.wait_for_selector('#timeline .trow[data-compensation="1"]')
                page.wait_for_selector(f'#step-detail .detail[data-step="{STEP}"]')
                page.screenshot(path=str(out))
                browser.close()
        finally:
            proc.terminate()
            proc.wait(timeout=30)
            if proc.stdout is not None:
                proc.stdout.close()
    print(f"wrote {out}")


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else ROOT / "static" / "img" / "run-page.png").resolve())
