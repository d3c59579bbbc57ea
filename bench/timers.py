"""Durable sleeps: how late `flux worker` wakes runs, and what an idle worker costs.

    python bench/timers.py [--runs 10000] [--dsn postgresql://postgres@127.0.0.1:5432/test]

(1) Lateness: `--runs` runs sleep until the same moment (`Flux.sleep_until`), stored
`suspended` by one process; then worker processes (`flux worker --poll 0.2`) are started
before that moment, and each run's second step records when it ran. Lateness is that time
minus the wake time: p50, p99 and max, on SQLite with 1 and 2 workers and on PostgreSQL with
2 workers. All runs falling due at one instant measures the wake-up throughput as much as
the latency: the last run's lateness is about runs / (runs woken per second).
A second case spreads `--spread-runs` wake times evenly over `--spread` seconds (by default
10,000 runs over one minute: "sleeping until the same minute"), below the wake-up
throughput, to measure the latency alone.
(2) Idle cost: one worker on a storage with nothing due, for 3 s in this process: SQL
statements per second (counted by SQLite's trace callback; on PostgreSQL, storage calls
times their statements) and CPU % of one core.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.timers_flows import NAP
from flux import FluxEngine, FluxSilentLogger, RunStatus


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def store_sleepers(url: str, runs: int, spread: float = 0.0) -> float:
    """Store `runs` runs asleep until one moment (or spread evenly over `spread` seconds after
    it), far enough ahead to store them all first."""
    engine = FluxEngine(storage=url, logger=FluxSilentLogger(), inline_sleep=0)
    try:
        wake = time.time() + 4.0 + runs * 0.004
        for i in range(runs):
            at = wake + spread * i / runs
            result = await engine.execute(NAP, {"wake": at}, id=f"nap-{i:06d}")
            assert result.status is RunStatus.SUSPENDED, "the wake time passed while storing: lower --runs"
        if time.time() > wake - 1.5:
            sys.exit("storing the runs took longer than planned: the wake time is too near")
        return wake
    finally:
        await engine.close()


async def lateness_of(url: str, runs: int) -> list[float]:
    engine = FluxEngine(storage=url, logger=FluxSilentLogger())
    try:
        done: list[float] = []
        offset = 0
        while batch := await engine.list(name="bench-nap", status="completed", limit=500, offset=offset):
            done.extend(float(r.outputs["woke"]) - float(r.input["wake"]) for r in batch)
            offset += len(batch)
        return done
    finally:
        await engine.close()


async def completed(url: str) -> int:
    engine = FluxEngine(storage=url, logger=FluxSilentLogger())
    try:
        storage: Any = engine.storage
        if hasattr(storage, "_conn") and isinstance(storage._conn, sqlite3.Connection):
            row = storage._conn.execute("SELECT count(*) FROM flux_runs WHERE status='completed'").fetchone()
            return int(row[0])
        return len(await engine.list(name="bench-nap", status="completed", limit=10**9))
    finally:
        await engine.close()


def wake_runs(url: str, runs: int, workers: int, spread: float = 0.0) -> dict[str, float]:
    wake = asyncio.run(store_sleepers(url, runs, spread))
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "flux.cli",
                "worker",
                "bench.timers_flows:NAP",
                "--storage",
                url,
                "--poll",
                "0.2",
            ],
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
        )
        for _ in range(workers)
    ]
    try:
        time.sleep(max(0.0, wake - time.time()))
        deadline = time.time() + 600
        while asyncio.run(completed(url)) < runs:
            if time.time() > deadline:
                sys.exit("the runs were not all woken within 10 minutes")
            time.sleep(0.5)
    finally:
        for proc in procs:
            proc.send_signal(signal.SIGTERM)
        for proc in procs:
            proc.communicate(timeout=60)
    late = asyncio.run(lateness_of(url, runs))
    assert len(late) == runs and min(late) >= 0, (len(late), min(late))
    return {"p50": percentile(late, 0.5), "p99": percentile(late, 0.99), "max": max(late),
            "per_s": runs / (max(late) + spread)}  # fmt: skip


def idle_cost(url: str, seconds: float = 3.0) -> dict[str, float]:
    """One worker, nothing due, in this process: SQL statements per second and CPU %."""
    engine = FluxEngine(storage=url, logger=FluxSilentLogger())
    storage: Any = engine.storage
    statements = [0]
    calls: dict[str, int] = {}
    conn = getattr(storage, "_conn", None)
    if isinstance(conn, sqlite3.Connection):
        conn.set_trace_callback(lambda sql: statements.__setitem__(0, statements[0] + 1))
    else:  # PostgreSQL: the statements each storage call of the idle loop sends
        # (claim_next: BEGIN, set_config, the due-run claim, COMMIT, the waiting-run claim;
        # next_due: BEGIN, set_config, the next due time, COMMIT; due_schedules: one SELECT)
        for name, per_call in (("claim_next", 5), ("next_due", 4), ("due_schedules", 1)):
            original = getattr(storage, name)

            def counted(*a: Any, _o: Any = original, _n: str = name, _k: int = per_call, **k: Any) -> Any:
                calls[_n] = calls.get(_n, 0) + 1
                statements[0] += _k
                return _o(*a, **k)

            setattr(storage, name, counted)
    end = time.monotonic() + seconds

    async def work() -> None:
        await engine.work([NAP], stop=lambda: time.monotonic() >= end)
        await engine.close()

    cpu, wall = time.process_time(), time.monotonic()
    asyncio.run(work())
    cpu, wall = time.process_time() - cpu, time.monotonic() - wall
    return {"statements_per_s": statements[0] / wall, "cpu_percent": 100 * cpu / wall}


def fresh_pg(dsn: str) -> tuple[str, str]:
    from bench.workers import fresh_schema  # psycopg: only when PostgreSQL is measured

    return fresh_schema(dsn)


def drop_pg(dsn: str, schema: str) -> None:
    from bench.workers import drop_schema

    drop_schema(dsn, schema)


def show(label: str, r: dict[str, float]) -> None:
    print(f"{label:<28} p50 {r['p50'] * 1000:8.1f} ms   p99 {r['p99'] * 1000:8.1f} ms   "
          f"max {r['max'] * 1000:8.1f} ms   ({r['per_s']:,.0f} runs woken/s)", flush=True)  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--runs", type=int, default=10_000)
    parser.add_argument("--dsn", default="postgresql://postgres@127.0.0.1:5432/test")
    parser.add_argument("--no-postgres", action="store_true")
    parser.add_argument("--no-sqlite", action="store_true")
    parser.add_argument("--spread-runs", type=int, default=10_000, help="runs of the spread-out case")
    parser.add_argument("--spread", type=float, default=60.0, help="seconds the spread-out wake times cover")
    args = parser.parse_args()
    print(f"{args.runs:,} runs asleep until one moment; lateness after their wake time", flush=True)
    with tempfile.TemporaryDirectory() as folder:
        for workers in () if args.no_sqlite else (1, 2):
            url = f"sqlite:///{folder}/w{workers}.db"
            show(f"SQLite, {workers} worker(s)", wake_runs(url, args.runs, workers))
        if not args.no_sqlite:
            print(
                f"{args.spread_runs:,} runs waking evenly over {args.spread:g} s: the latency itself",
                flush=True,
            )
            spread = wake_runs(f"sqlite:///{folder}/spread.db", args.spread_runs, 1, args.spread)
            show("SQLite, 1 worker, spread", spread)
            idle = idle_cost(f"sqlite:///{folder}/idle.db")
            print(f"idle worker, SQLite:         {idle['statements_per_s']:.1f} SQL statements/s, "
                  f"{idle['cpu_percent']:.1f}% CPU", flush=True)  # fmt: skip
    if not args.no_postgres:
        schema, url = fresh_pg(args.dsn)
        try:
            show("PostgreSQL, 2 workers", wake_runs(url, args.runs, 2))
        finally:
            drop_pg(args.dsn, schema)
        schema, url = fresh_pg(args.dsn)
        try:
            idle = idle_cost(url)
            print(f"idle worker, PostgreSQL:     {idle['statements_per_s']:.1f} SQL statements/s, "
                  f"{idle['cpu_percent']:.1f}% CPU", flush=True)  # fmt: skip
        finally:
            drop_pg(args.dsn, schema)


if __name__ == "__main__":
    main()
