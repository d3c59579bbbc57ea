"""Durable steps on SQLite: Flux against DBOS, alternating in one invocation.

    pip install -e '.[bench]'      # DBOS, only for this benchmark
    python bench/durable.py [--runs 200] [--rounds 5]

The same 10-step workflow of trivial steps runs one run after another on Flux with
`SQLiteStorage` (durability "normal" and "full") and on DBOS with its SQLite system
database. Rounds alternate so that both see the same machine load; the figures are medians
of µs per step over the rounds, and the ratio is DBOS's median over Flux's.
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

from bench._dbos import destroy_dbos, setup_dbos
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


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=200, help="runs per round")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    figures: dict[str, list[float]] = {"flux normal": [], "flux full": [], "dbos": []}
    with tempfile.TemporaryDirectory() as tmp:
        dbos_run = setup_dbos(f"sqlite:///{Path(tmp) / 'dbos.sqlite'}")
        for r in range(args.rounds):
            figures["flux normal"].append(run_flux(Path(tmp) / f"normal{r}.db", "normal", args.runs))
            figures["dbos"].append(dbos_run(args.runs))
            figures["flux full"].append(run_flux(Path(tmp) / f"full{r}.db", "full", args.runs))
        destroy_dbos()
    dbos = statistics.median(figures["dbos"])
    print(f"10-step workflow, {args.runs} runs x {args.rounds} alternating rounds, SQLite (median µs/step)")
    print(f"{'':<20}{'µs/step':>10}{'DBOS / this':>14}")
    for name, values in figures.items():
        med = statistics.median(values)
        print(f"{name:<20}{med:>10.1f}{dbos / med:>14.1f}")
    print("per round:", {k: [round(v) for v in vs] for k, vs in figures.items()})


if __name__ == "__main__":
    main()
