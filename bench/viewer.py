"""Benchmarks of ``flux dev`` (not a test): run ``python bench/viewer.py [which...]``.

live     append an event, time until it is in the DOM of the open page, in
         Chromium (runs page: a new row; run page: a new step row);
         p50/p95 over 200 events each, and the requests each change cost.
         Goal: p95 <= 30 ms, one request per change.
scale    a trace of 1,000,000 events over 50,000 runs: time from starting the
         server until the runs page's first page is served (newest runs first,
         while older ones are indexed), until every run is indexed, and the
         server's peak RSS (VmHWM). Goals: first page <= 1 s, whole index <= 2 s,
         <= 200 MB. With orjson installed (the viewer extra) and without.
steps    a run of 2,000 steps: time until its run page is rendered in
         Chromium. Goal: <= 1 s.
stored   ``flux dev --storage`` over 100,000 stored runs, SQLite and PostgreSQL:
         first page, filters, id search, a deep page (goal <= 300 ms each) and a
         change in storage until the open page shows it (goal p95 <= 200 ms);
         see bench/viewer_stored.py.

Figures are printed; nothing is asserted. The server is a real
``python -m viewer`` process; the trace goes to a temporary folder.
"""

from __future__ import annotations

import argparse
import json
import os
import random
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
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
T0 = 1_767_225_600_000.0


# -- trace generation ---------------------------------------------------------


def run_lines(
    run_id: str, workflow: str, steps: int, t: float, rng: random.Random, retry: bool = False
) -> list[str]:
    """One run as the engine writes it: start, each step's start and complete
    (data growing as it goes), with ``retry`` one failed first attempt, and the end."""
    base = {"workflowId": run_id, "workflowName": workflow}
    defs = [{"name": f"step-{i}", "commit": i == steps - 1} for i in range(steps)]
    out: list[str] = []
    seq = 0

    def emit(type_: str, **fields: Any) -> None:
        nonlocal seq, t
        seq += 1
        t += rng.random() * 3
        ev = {"v": 1, "seq": seq, "type": type_, "timestamp": round(t, 3), **base, **fields}
        out.append(json.dumps(ev, separators=(",", ":")))

    meta = {"steps": defs, "version": None}
    emit("workflow:start", input={"order_id": run_id, "amount": 42.5}, status="running", meta=meta)
    data: dict[str, Any] = {}
    failing = rng.randrange(steps) if retry else -1
    for i, d in enumerate(defs):
        step = {"stepName": d["name"], "stepIndex": i, "commit": d["commit"]}
        emit("step:start", **step, attempt=1, maxRetries=3)
        if i == failing:
            error = {"error": "gateway timeout", "errorType": "TimeoutError", "duration": 2.5}
            emit("step:retry", **step, attempt=1, retries=1, maxRetries=3, **error)
            emit("step:start", **step, attempt=2, maxRetries=3)
        if steps <= 20:
            data[d["name"]] = i
        output = {"ok": True, "n": i}
        emit(
            "step:complete",
            **step,
            attempt=1,
            duration=1.5,
            status="completed",
            output=output,
            data=dict(data),
        )
    emit("workflow:complete", status="completed", duration=t - T0, data=data)
    return out


def write_big_trace(path: Path, events: int, runs: int) -> int:
    """``events`` events over ``runs`` runs, interleaved three at a time as
    concurrent processes would write them. Each run has 20 events: nine
    steps, or eight and a retry."""
    assert events == runs * 20, "runs of 20 events"
    rng = random.Random(7)
    workflows = ["order-process", "travel-booking", "invoice", "shipping"]
    written = 0
    with open(path, "w") as f:
        pending: list[list[str]] = []
        for r in range(runs):
            retry = r % 4 == 0
            lines = run_lines(f"run-{r:06d}", workflows[r % 4], 8 if retry else 9, T0 + r * 50, rng, retry)
            pending.append(lines)
            if len(pending) == 3 or r == runs - 1:
                while any(pending):
                    for lines in pending:
                        if lines:
                            f.write(lines.pop(0) + "\n")
                            written += 1
                pending = []
    return written


# -- processes ----------------------------------------------------------------


@contextmanager
def server(trace: Path) -> Iterator[tuple[str, subprocess.Popen[str], float]]:
    started = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-m", "viewer", "--trace", str(trace), "--port", "0"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    assert proc.stdout is not None
    url = ""
    for line in proc.stdout:
        match = re.search(r"serving (http://\S+)", line)
        if match:
            url = match.group(1).rstrip("/")
            break
    if not url:
        raise RuntimeError("server did not start")
    try:
        yield url, proc, started
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        proc.stdout.close()


def peak_rss_mb(pid: int) -> float:
    status = Path(f"/proc/{pid}/status").read_text()
    kb = int(re.search(r"VmHWM:\s+(\d+) kB", status).group(1))  # type: ignore[union-attr]
    return kb / 1024


@contextmanager
def chromium() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            yield browser
        finally:
            browser.close()


def append(path: Path, line: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line.encode() + b"\n")
    finally:
        os.close(fd)


def percentiles(samples: list[float]) -> str:
    ordered = sorted(samples)
    p95 = ordered[max(0, round(0.95 * len(ordered)) - 1)]
    return (
        f"p50 {statistics.median(ordered):6.1f} ms   p95 {p95:6.1f} ms   "
        f"max {ordered[-1]:6.1f} ms   (n={len(ordered)})"
    )


# -- the benchmarks -----------------------------------------------------------

# Records, in the page, when each new element matching a selector first
# appears, on the same clock as the Python side (epoch ms).
OBSERVER = """([selector, attr]) => {
  window.__seen = {};
  const mark = () => {
    const now = performance.timeOrigin + performance.now();
    document.querySelectorAll(selector).forEach((el) => {
      const key = el.getAttribute(attr);
      if (!(key in window.__seen)) window.__seen[key] = now;
    });
  };
  mark();
  new MutationObserver(mark).observe(document.body, {childList: true, subtree: true});
}"""


# The requests a change cost, as far as the DOM change (later ones of the same
# change are counted with the next sample, so the mean stays right).
CLEAR_REQUESTS = "() => performance.clearResourceTimings()"
COUNT_REQUESTS = (
    "() => performance.getEntriesByType('resource')"
    ".filter(e => e.initiatorType === 'xmlhttprequest' || e.initiatorType === 'fetch').length"
)


def per_change(counts: list[int]) -> str:
    return f"requests per change: {statistics.mean(counts):.2f}"


def live(n: int = 200) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        trace = Path(tmp) / "trace.ndjson"
        trace.write_text("")
        with server(trace) as (url, _, _), chromium() as browser:
            # The page's CSP forbids eval, which Playwright's wait_for_function uses.
            page = browser.new_context(bypass_csp=True).new_page()
            page.goto(url + "/")
            page.evaluate(OBSERVER, ["tr[data-run-id]", "data-run-id"])
            rows: list[float] = []
            requests: list[int] = []
            for i in range(n):
                run_id = f"LIVE-{i:04d}"
                line = json.dumps(
                    {
                        "v": 1,
                        "seq": 1,
                        "type": "workflow:start",
                        "timestamp": time.time() * 1000,
                        "workflowId": run_id,
                        "workflowName": "bench",
                        "status": "running",
                    }
                )
                page.evaluate(CLEAR_REQUESTS)
                sent = time.time() * 1000
                append(trace, line)
                page.wait_for_function(f"window.__seen['{run_id}'] !== undefined", timeout=10_000)
                rows.append(page.evaluate(f"window.__seen['{run_id}']") - sent)
                requests.append(page.evaluate(COUNT_REQUESTS))
            print(f"live, runs page (new row):       {percentiles(rows)}   {per_change(requests)}")
            requests = []

            w = {"workflowId": "LIVE-RUN", "workflowName": "bench"}
            append(
                trace,
                json.dumps(
                    {
                        "v": 1,
                        "seq": 1,
                        "type": "workflow:start",
                        "timestamp": time.time() * 1000,
                        **w,
                        "status": "running",
                    }
                ),
            )
            page.goto(url + "/runs/LIVE-RUN")
            page.evaluate(OBSERVER, ["#timeline .trow[data-step]", "data-step"])
            steps = []
            for i in range(n):
                name = f"s{i:04d}"
                line = json.dumps(
                    {
                        "v": 1,
                        "seq": i + 2,
                        "type": "step:start",
                        "timestamp": time.time() * 1000,
                        **w,
                        "stepName": name,
                        "stepIndex": i,
                        "attempt": 1,
                    }
                )
                page.evaluate(CLEAR_REQUESTS)
                sent = time.time() * 1000
                append(trace, line)
                page.wait_for_function(f"window.__seen['{name}'] !== undefined", timeout=10_000)
                steps.append(page.evaluate(f"window.__seen['{name}']") - sent)
                requests.append(page.evaluate(COUNT_REQUESTS))
            print(f"live, run page (new step row):   {percentiles(steps)}   {per_change(requests)}")


def _get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=120) as response:
        return str(response.read().decode())


def scale(events: int = 1_000_000, runs: int = 50_000, repeat: int = 3) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        trace = Path(tmp) / "trace.ndjson"
        t = time.perf_counter()
        written = write_big_trace(trace, events, runs)
        size = trace.stat().st_size / 1e6
        took = time.perf_counter() - t
        print(f"scale: wrote {written:,} events over {runs:,} runs ({size:.0f} MB) in {took:.1f} s")
        # The floor, in the same run: a Python process that imports the server and exits.
        t = time.perf_counter()
        subprocess.run([sys.executable, "-c", "import viewer.server"], cwd=ROOT, check=True)
        floor = time.perf_counter() - t
        print(f"scale: baseline: python start + the server's imports {floor:.2f} s")
        results = []
        for _ in range(repeat):
            with server(trace) as (url, proc, started):
                listening = time.perf_counter() - started
                body = _get(url + "/")
                first = time.perf_counter() - started
                assert '<tr class="run"' in body, "the first page lists no run"
                newest = re.search(r'data-run-id="([^"]+)"', body)
                assert newest and newest.group(1) == f"run-{runs - 1:06d}", "not the newest run first"
                # Until every run is indexed (the page says "so far" before).
                while True:
                    body = _get(url + "/fragments/runs?per_page=25")
                    if f"{runs} runs, newest first" in body:
                        break
                    time.sleep(0.02)
                whole = time.perf_counter() - started
                t = time.perf_counter()
                _get(url + "/?status=completed&workflow=invoice&page=3")
                filtered = time.perf_counter() - t
                t = time.perf_counter()
                _get(url + "/?q=run-0250")
                searched = time.perf_counter() - t
                t = time.perf_counter()
                _get(url + f"/runs/run-{runs // 2:06d}")
                run_page = time.perf_counter() - t
                rss = peak_rss_mb(proc.pid)
            results.append((first, whole, listening, rss))
            print(
                f"scale: listening after {listening:.2f} s, first page after {first:.2f} s, "
                f"every run indexed after {whole:.2f} s (from process start); filtered page "
                f"{filtered * 1000:.0f} ms; a search {searched * 1000:.0f} ms; a run page "
                f"{run_page * 1000:.0f} ms; peak RSS {rss:.0f} MB"
            )
        first, whole, listening, rss = sorted(results)[len(results) // 2]
        print(
            f"scale: median of {repeat}: first page after {first:.2f} s ({first / floor:.1f}x the "
            f"baseline), whole index after {whole:.2f} s ({whole / floor:.1f}x), listening after "
            f"{listening:.2f} s, peak RSS {rss:.0f} MB"
        )


def steps(count: int = 2000) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        trace = Path(tmp) / "trace.ndjson"
        trace.write_text("\n".join(run_lines("BIG", "bench", count, T0, random.Random(1))) + "\n")
        with server(trace) as (url, _, _), chromium() as browser:
            page = browser.new_page(viewport={"width": 1400, "height": 900})
            timings = []
            for _ in range(5):
                t = time.perf_counter()
                page.goto(url + "/runs/BIG", wait_until="load")
                page.wait_for_selector(f'#timeline .trow[data-step="step-{count - 1}"]', state="attached")
                # Two animation frames: the layout and paint of what was loaded.
                page.evaluate("() => new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r)))")
                timings.append((time.perf_counter() - t) * 1000)
            print(
                f"steps: run page with {count:,} steps rendered in Chromium: "
                f"median {statistics.median(timings):.0f} ms (runs: {', '.join(f'{x:.0f}' for x in timings)})"
            )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    from bench.viewer_stored import stored

    benches = {"live": live, "scale": scale, "steps": steps, "stored": stored}
    parser.add_argument("which", nargs="*", help="live, scale, steps, stored (default: all four)")
    chosen = parser.parse_args().which or list(benches)
    for name in chosen:
        if name not in benches:
            parser.error(f"unknown benchmark {name!r}: choose from {', '.join(benches)}")
    for name in chosen:
        benches[name]()
