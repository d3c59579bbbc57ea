"""Benchmark of the run page (not a test): ``python -m bench.viewer_run [--steps N] [--root DIR]``.

A run of ``--steps`` steps (10,000 by default; one in fifty retried once, so back-offs are
drawn) is written to a temporary trace and served by a real ``python -m viewer``
process (from ``--root``, default this checkout: point it at another checkout to
measure before and after in one session). Measured, median of five:

server   the run page's HTML: time to the last byte, and its size.
render   Chromium (1400 × 900): from navigation until the first step row is in the DOM
         and two animation frames have run (its layout and paint). A page that draws
         every row at once has drawn them all by then; one that draws them in chunks
         has drawn the first.
scroll   the page scrolled from top to its last row, 400 px per animation frame (the
         rows that load on the way included): time taken, frame intervals p50 / p95 /
         max, and frames longer than 50 ms (visible stutter).

The same figures for a 100-step run are measured first, in the same session, and the
big run's are printed as ratios against them too. Nothing is asserted. Goal (issue 13):
the 10,000-step page rendered in <= 1 s, scrolling smooth.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking"]
T0 = 1_796_000_000_000


def run_events(run_id: str, steps: int) -> list[dict[str, Any]]:
    """One run as the engine writes it, each step taking 3 ms; every 50th fails once
    and is retried after a 5 ms back-off."""
    out: list[dict[str, Any]] = []
    t = T0

    def ev(kind: str, **fields: Any) -> None:
        out.append({"v": 1, "seq": len(out) + 1, "type": kind, "timestamp": t, "workflowId": run_id,
                    "workflowName": "bench", **fields})  # fmt: skip

    defs = [{"name": f"step-{i}", "commit": False} for i in range(steps)]
    ev("workflow:start", status="running", input={"n": steps}, meta={"steps": defs, "version": None})
    for i in range(steps):
        step = {"stepName": f"step-{i}", "stepIndex": i, "commit": False}
        ev("step:start", **step, attempt=1, maxRetries=1)
        if i % 50 == 7:
            t += 3
            ev("step:retry", **step, attempt=1, duration=3, error="flaky", errorType="ProviderDown")
            t += 5
            ev("step:start", **step, attempt=2, maxRetries=1)
        t += 3
        ev("step:complete", **step, attempt=1, duration=3, output={"i": i}, data={"last": i})
    ev("workflow:complete", status="completed", duration=t - T0, data={"last": steps - 1})
    return out


@contextmanager
def server(trace: Path, root: Path) -> Iterator[str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "viewer", "--trace", str(trace), "--port", "0"],
        cwd=root, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1", "PYTHONPATH": str(root)},
    )  # fmt: skip
    assert proc.stdout is not None
    url = ""
    for line in proc.stdout:
        match = re.search(r"serving (http://\S+)", line)
        if match:
            url = match.group(1).rstrip("/")
            break
    try:
        if not url:
            raise RuntimeError("the server did not start")
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        proc.stdout.close()


def measure(browser: Any, url: str, run_id: str, steps: int) -> dict[str, float]:
    served, size = [], 0
    for _ in range(5):
        t = time.perf_counter()
        with urllib.request.urlopen(f"{url}/runs/{run_id}", timeout=120) as response:
            size = len(response.read())
        served.append((time.perf_counter() - t) * 1000)
    page = browser.new_page(viewport={"width": 1400, "height": 900})
    rendered = []
    for _ in range(5):
        t = time.perf_counter()
        page.goto(f"{url}/runs/{run_id}", wait_until="load")
        page.wait_for_selector('#timeline .trow[data-step="step-0"]', state="attached")
        page.evaluate("() => new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r)))")
        rendered.append((time.perf_counter() - t) * 1000)
    # scrolled to the end, 400 px a frame, whatever rows load on the way
    t = time.perf_counter()
    frames: list[float] = page.evaluate(
        """(last) => new Promise(resolve => {
            const out = []; let prev = performance.now();
            function step(now) {
                out.push(now - prev); prev = now;
                window.scrollBy(0, 400);
                const done = document.querySelector(`#timeline .trow[data-step="${last}"]`) &&
                    window.innerHeight + window.scrollY >= document.documentElement.scrollHeight - 2;
                if (done || out.length > 20000) resolve(out.slice(1));
                else requestAnimationFrame(step);
            }
            window.scrollTo(0, 0); requestAnimationFrame(t => { prev = t; requestAnimationFrame(step); });
        })""",
        f"step-{steps - 1}",
    )
    through = (time.perf_counter() - t) * 1000
    page.close()
    frames.sort()
    return {
        "served": statistics.median(served),
        "size": size / 1024,
        "render": statistics.median(rendered),
        "through": through,
        "p50": frames[len(frames) // 2] if frames else 0.0,
        "p95": frames[int(len(frames) * 0.95)] if frames else 0.0,
        "max": frames[-1] if frames else 0.0,
        "janky": float(sum(1 for f in frames if f > 50)),
        "frames": float(len(frames)),
    }


def main() -> None:
    formatter = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=formatter)
    parser.add_argument("--steps", type=int, default=10_000)
    parser.add_argument("--root", type=Path, default=ROOT, help="the checkout whose viewer to serve")
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory() as tmp:
        trace = Path(tmp) / "trace.ndjson"
        with open(trace, "w", encoding="utf-8") as f:
            for run_id, steps in (("SMALL", 100), ("BIG", args.steps)):
                f.writelines(json.dumps(ev) + "\n" for ev in run_events(run_id, steps))
        with server(trace, args.root.resolve()) as url, sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
            try:
                small = measure(browser, url, "SMALL", 100)
                big = measure(browser, url, "BIG", args.steps)
            finally:
                browser.close()
    print(f"viewer_run: {args.root.resolve()}")
    for name, m in (("100 steps", small), (f"{args.steps:,} steps", big)):
        print(
            f"  {name:>13}: HTML {m['served']:.0f} ms ({m['size']:.0f} KiB), "
            f"rendered in Chromium {m['render']:.0f} ms; "
            f"scrolled to its last row in {m['through'] / 1000:.1f} s: "
            f"frames p50 {m['p50']:.1f} / p95 {m['p95']:.1f} / max {m['max']:.0f} ms, "
            f"{m['janky']:.0f} of {m['frames']:.0f} over 50 ms"
        )
    print(
        f"  ratio big/small: HTML {big['served'] / small['served']:.1f}x, "
        f"render {big['render'] / small['render']:.1f}x, "
        f"scroll p95 {big['p95'] / max(small['p95'], 0.1):.1f}x"
    )


if __name__ == "__main__":
    main()
