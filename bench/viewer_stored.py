"""``python bench/viewer.py stored``: ``flux dev --storage`` over 100,000 stored runs.

For SQLite and for PostgreSQL (skipped, saying so, without a server on 127.0.0.1:5432):
100,000 runs are written straight into the tables (the storages' own row format), a real
``flux dev --storage`` process serves them, and the figures are:

- first page, filter by status, filter by workflow, search by id prefix, a deep page: the
  time to answer (p50/p95 of 20 requests each, over HTTP);
- change in storage -> the open runs page in Chromium: a run created by this process (another
  process than the server's) until its row is in the page's DOM; p50/p95 of 50 changes.

Goals: each page <= 300 ms; change -> page p95 <= 200 ms. Nothing is asserted.
"""

from __future__ import annotations

import json
import os
import random
import re
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from flux.records import RunRecord
from flux.status import RunStatus
from flux.storage import open_storage
from flux.storage._rows import RUN_COLUMNS, RUN_WIDTH, run_values

RUNS = 100_000
WORKFLOWS = [f"wf-{i}" for i in range(10)]
PG_DSN = os.environ.get("FLUX_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")
SHAPE = [["fetch", "step"], ["charge", "step"], ["ship", "commit"]]


def records(n: int, t0: float) -> Iterator[RunRecord]:
    rng = random.Random(7)
    statuses = [RunStatus.COMPLETED] * 7 + [RunStatus.FAILED] * 2 + [RunStatus.SUSPENDED]
    for i in range(n):
        status = rng.choice(statuses)
        created = t0 + i * 0.01
        yield RunRecord(
            id=f"R-{i:06d}",
            name=rng.choice(WORKFLOWS),
            status=status,
            input_json=json.dumps({"order": i, "amount": 42.5}),
            data_json=json.dumps({"order": {"id": i, "paid": status is RunStatus.COMPLETED}}),
            shape=SHAPE,
            error="card declined" if status is RunStatus.FAILED else None,
            error_type="PaymentError" if status is RunStatus.FAILED else None,
            error_step="charge" if status is RunStatus.FAILED else None,
            waiting_for="approval" if status is RunStatus.SUSPENDED else None,
            created_at=created,
            updated_at=created + 1,
            completed_at=created + 1 if status is not RunStatus.SUSPENDED else None,
        )


def fill_sqlite(path: Path, n: int) -> None:
    import asyncio

    asyncio.run(open_storage(f"sqlite:///{path}").close())  # the schema, as the storage makes it
    conn = sqlite3.connect(path)
    marks = ", ".join("?" * (RUN_WIDTH + 1))
    with conn:
        conn.executemany(
            f"INSERT INTO flux_runs ({RUN_COLUMNS}, rev) VALUES ({marks})",
            ((*run_values(r), 1) for r in records(n, time.time() - n)),
        )
    conn.execute("ANALYZE")
    conn.close()


def fill_postgres(url: str, n: int) -> None:
    import asyncio

    import psycopg

    asyncio.run(open_storage(url).close())
    with psycopg.connect(url, autocommit=True) as conn, conn.cursor() as cur:
        with cur.copy(f"COPY flux_runs ({RUN_COLUMNS}) FROM STDIN") as copy:
            for r in records(n, time.time() - n):
                copy.write_row(run_values(r))
        cur.execute("ANALYZE flux_runs")


@contextmanager
def postgres_schema() -> Iterator[str | None]:
    try:
        import psycopg

        conn = psycopg.connect(PG_DSN, autocommit=True, connect_timeout=3)
    except Exception as exc:  # no server, or no driver
        print(f"stored, PostgreSQL: skipped ({exc})")
        yield None
        return
    schema = f"flux_bench_{uuid.uuid4().hex[:10]}"
    conn.execute(f"CREATE SCHEMA {schema}")
    try:
        sep = "&" if "?" in PG_DSN else "?"
        yield f"{PG_DSN}{sep}options=-csearch_path%3D{schema}"
    finally:
        conn.execute(f"DROP SCHEMA {schema} CASCADE")
        conn.close()


@contextmanager
def dashboard(url: str, cwd: Path) -> Iterator[str]:
    launcher = "import sys; from flux.cli import main; sys.exit(main(sys.argv[1:]))"
    proc = subprocess.Popen(
        [sys.executable, "-c", launcher, "dev", "--storage", url, "--port", "0"],
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1", "PYTHONPATH": str(ROOT)},
    )
    assert proc.stdout is not None
    served = ""
    for line in proc.stdout:
        match = re.search(r"serving (http://\S+)", line)
        if match:
            served = match.group(1).rstrip("/")
            break
    if not served:
        raise RuntimeError("flux dev did not start")
    try:
        yield served
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        proc.stdout.close()


def _ms(samples: list[float]) -> str:
    ordered = sorted(samples)
    p95 = ordered[max(0, round(0.95 * len(ordered)) - 1)]
    return f"p50 {statistics.median(ordered):6.1f} ms   p95 {p95:6.1f} ms   (n={len(ordered)})"


def pages(served: str, label: str, repeat: int = 20) -> None:
    asks = {
        "first page": "/",
        "filter: status=failed": "/fragments/runs?status=failed",
        "filter: workflow=wf-3": "/fragments/runs?workflow=wf-3",
        "search: id starts R-0123": "/fragments/runs?q=R-0123",
        "search: R-09999 (10 runs)": "/fragments/runs?q=R-09999",
        "search: no match": "/fragments/runs?q=NOPE",
        "search + status=failed": "/fragments/runs?q=R-05&status=failed",
        "page 100 (offset 9,900)": "/fragments/runs?page=100",
    }
    for name, path in asks.items():
        timings = []
        for _ in range(repeat):
            t = time.perf_counter()
            with urllib.request.urlopen(served + path, timeout=60) as response:
                body = response.read()
            timings.append((time.perf_counter() - t) * 1000)
        rows = body.count(b'<tr class="run"')
        print(f"stored, {label}, {name:<26} {_ms(timings)}   rows {rows}")


OBSERVER = """() => {
  window.__seen = {};
  const mark = () => {
    const now = performance.timeOrigin + performance.now();
    document.querySelectorAll("tr[data-run-id]").forEach((el) => {
      const key = el.getAttribute("data-run-id");
      if (!(key in window.__seen)) window.__seen[key] = now;
    });
  };
  mark();
  new MutationObserver(mark).observe(document.body, {childList: true, subtree: true});
}"""


def change_to_page(served: str, url: str, label: str, n: int = 50) -> None:
    import asyncio

    from playwright.sync_api import sync_playwright

    from bench.viewer import CHROMIUM, CHROMIUM_ARGS

    # Playwright's sync API runs an event loop in this thread: the storage gets its own.
    loop = asyncio.new_event_loop()
    threading.Thread(target=loop.run_forever, daemon=True).start()

    def call(coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, loop).result()

    async def opened() -> Any:
        return open_storage(url)

    storage = call(opened())
    try:
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
            page = browser.new_context(bypass_csp=True).new_page()
            page.goto(served + "/")
            page.wait_for_selector("#live.on")
            page.evaluate(OBSERVER)
            samples = []
            for i in range(n):
                run_id = f"LIVE-{i:04d}"
                now = time.time()
                record = RunRecord(
                    run_id, "live", RunStatus.PENDING, "{}", created_at=now + 10_000, updated_at=now
                )
                sent = time.time() * 1000
                call(storage.create_run(record))
                page.wait_for_function(f"window.__seen['{run_id}'] !== undefined", timeout=10_000)
                samples.append(page.evaluate(f"window.__seen['{run_id}']") - sent)
            browser.close()
        print(f"stored, {label}, change in storage -> page  {_ms(samples)}")
    finally:
        call(storage.close())
        loop.call_soon_threadsafe(loop.stop)


def one(url: str, label: str, cwd: Path) -> None:
    with dashboard(url, cwd) as served:
        pages(served, label)
        change_to_page(served, url, label)


def stored(runs: int = RUNS) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "runs.db"
        t = time.perf_counter()
        fill_sqlite(path, runs)
        print(f"stored, SQLite: {runs:,} runs written in {time.perf_counter() - t:.1f} s")
        one(f"sqlite:///{path}", "SQLite", Path(tmp))
        with postgres_schema() as pg:
            if pg is not None:
                t = time.perf_counter()
                fill_postgres(pg, runs)
                print(f"stored, PostgreSQL: {runs:,} runs written in {time.perf_counter() - t:.1f} s")
                one(pg, "PostgreSQL", Path(tmp))


if __name__ == "__main__":
    stored()
