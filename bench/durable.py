"""Durable steps on SQLite: Flux against a bare WAL commit and DBOS, alternating in one invocation.

    pip install -e '.[bench]'      # DBOS, only for this benchmark (skipped if absent)
    python bench/durable.py [--runs 200] [--rounds 5]

The same 10-step workflow of trivial steps runs one run after another on Flux with
`SQLiteStorage` (durability "normal" and "full") and on DBOS with its SQLite system
database. The baseline is a bare WAL commit of one small row with plain `sqlite3` (the same
`synchronous` setting): what the disk allows one write at a time. Rounds alternate so that
all see the same machine load; the figures are medians of µs per step over the rounds, with
Flux's ratio to the bare commit and DBOS's to Flux.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from flux import FluxEngine, FluxSilentLogger, SQLiteStorage, WorkflowContext, create_workflow

STEPS = 10


def flux_step(ctx: WorkflowContext[Any]) -> int:
    return ctx.attempt


def flux_flow() -> Any:
    flow = create_workflow("bench-durable")
    for i in range(STEPS):
        flow = flow.step(f"s{i}", flux_step)
    return flow


def run_flux(db: Path, durability: str, runs: int) -> float:
    async def go() -> float:
        engine = FluxEngine(storage=SQLiteStorage(db, durability=durability), logger=FluxSilentLogger())
        flow = flux_flow()
        start = time.perf_counter()
        for _ in range(runs):
            result = await engine.execute(flow, {})
            assert result.status == "completed", result.error
        elapsed = time.perf_counter() - start
        await engine.close()
        return elapsed / (runs * STEPS) * 1e6

    return asyncio.run(go())


def bare_commit(db: Path, durability: str, commits: int) -> float:
    """µs per autocommit `INSERT OR REPLACE` of one small row, WAL mode."""
    import sqlite3

    conn = sqlite3.connect(db, isolation_level=None)
    try:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute(f"PRAGMA synchronous={'FULL' if durability == 'full' else 'NORMAL'}")
        conn.execute("CREATE TABLE t (k TEXT, i INTEGER, v TEXT, PRIMARY KEY (k, i)) WITHOUT ROWID")
        start = time.perf_counter()
        for n in range(commits):
            conn.execute("INSERT OR REPLACE INTO t VALUES (?, ?, ?)", (f"run-{n // STEPS}", n % STEPS, "1"))
        return (time.perf_counter() - start) / commits * 1e6
    finally:
        conn.close()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=200, help="runs per round")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    import importlib.util

    from bench._dbos import destroy_dbos, setup_dbos

    has_dbos = importlib.util.find_spec("dbos") is not None  # absent: Flux against the bare commit
    figures: dict[str, list[float]] = {"bare commit normal": [], "flux normal": [], "bare commit full": [],
                                       "flux full": []}  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        dbos_run = setup_dbos(f"sqlite:///{Path(tmp) / 'dbos.sqlite'}") if has_dbos else None
        if dbos_run is not None:
            figures["dbos"] = []
        for r in range(args.rounds):
            commits = args.runs * STEPS
            figures["bare commit normal"].append(bare_commit(Path(tmp) / f"bare-n{r}.db", "normal", commits))
            figures["flux normal"].append(run_flux(Path(tmp) / f"normal{r}.db", "normal", args.runs))
            if dbos_run is not None:
                figures["dbos"].append(dbos_run(args.runs))
            figures["bare commit full"].append(bare_commit(Path(tmp) / f"bare-f{r}.db", "full", commits))
            figures["flux full"].append(run_flux(Path(tmp) / f"full{r}.db", "full", args.runs))
        if dbos_run is not None:
            destroy_dbos()
    med = {name: statistics.median(values) for name, values in figures.items()}
    print(f"10-step workflow, {args.runs} runs x {args.rounds} alternating rounds, SQLite (median µs/step)")
    print(f"{'':<20}{'µs/step':>10}{'÷ bare commit':>15}{'DBOS / this':>14}")
    for name, value in med.items():
        bare = med["bare commit full" if "full" in name else "bare commit normal"]
        dbos = f"{med['dbos'] / value:>14.1f}" if "dbos" in med else f"{'-':>14}"
        print(f"{name:<20}{value:>10.1f}{value / bare:>15.2f}{dbos}")
    print("per round:", {k: [round(v) for v in vs] for k, vs in figures.items()})


if __name__ == "__main__":
    main()
