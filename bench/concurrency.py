"""Runs at once in one process: does concurrency buy throughput? (issue 12)

    python bench/concurrency.py [--runs 256] [--rounds 3] [--dsn postgresql://postgres@127.0.0.1:5432/test]

The same 10-step workflow of trivial steps runs `--runs` times with 1, 16 and 64 runs in
flight at once (`asyncio.gather` over batches) on `MemoryStorage`, on `SQLiteStorage`
with durability "normal" and "full", and on `PostgresStorage` (both durabilities, a fresh
schema each time) when the server of `--dsn` answers (`--dsn ''`: none). Figures are medians
over the rounds of steps per second; the ratios are against one run at a time on the same
storage, and against the memory storage at the same concurrency, all measured in this
invocation.
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

from flux import FluxEngine, FluxSilentLogger, MemoryStorage, SQLiteStorage, WorkflowContext, create_workflow
from flux.storage import WorkflowStorage


def postgres(dsn: str) -> bool:
    """True if PostgreSQL (and psycopg) answer at `dsn`."""
    if not dsn:
        return False
    try:
        import psycopg

        psycopg.connect(dsn, connect_timeout=3).close()
    except Exception:
        return False
    return True


STEPS = 10
LEVELS = (1, 16, 64)


def step(ctx: WorkflowContext[Any]) -> int:
    return ctx.attempt


def flow() -> Any:
    built = create_workflow("bench-concurrency")
    for i in range(STEPS):
        built = built.step(f"s{i}", step)
    return built


def measure(storage: WorkflowStorage, runs: int, at_once: int) -> float:
    """Steps per second for `runs` runs, `at_once` of them in flight."""

    async def go() -> float:
        engine = FluxEngine(storage=storage, logger=FluxSilentLogger())
        wf = flow()
        start = time.perf_counter()
        for first in range(0, runs, at_once):
            batch = [engine.execute(wf, {}) for _ in range(min(at_once, runs - first))]
            for result in await asyncio.gather(*batch):
                assert result.status == "completed", result.error
        elapsed = time.perf_counter() - start
        await engine.close()
        return runs * STEPS / elapsed

    return asyncio.run(go())


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=256, help="runs per measurement")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--dsn", default="postgresql://postgres@127.0.0.1:5432/test")
    args = parser.parse_args()
    pg = postgres(args.dsn)
    kinds: tuple[str, ...] = ("memory", "sqlite normal", "sqlite full")
    if pg:
        kinds += ("postgres normal", "postgres full")
    figures: dict[tuple[str, int], list[float]] = {(k, n): [] for k in kinds for n in LEVELS}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.rounds):
            for n in LEVELS:
                figures[("memory", n)].append(measure(MemoryStorage(), args.runs, n))
                for durability in ("normal", "full"):
                    db = Path(tmp) / f"{durability}-{r}-{n}.db"
                    storage = SQLiteStorage(db, durability=durability)
                    figures[(f"sqlite {durability}", n)].append(measure(storage, args.runs, n))
                    if pg:
                        from bench.workers import drop_schema, fresh_schema
                        from flux.storage.postgres import PostgresStorage

                        schema, url = fresh_schema(args.dsn)
                        try:
                            pstore = PostgresStorage(url, durability=durability)
                            figures[(f"postgres {durability}", n)].append(measure(pstore, args.runs, n))
                        finally:
                            drop_schema(args.dsn, schema)
    med = {key: statistics.median(values) for key, values in figures.items()}
    print(f"10-step workflow, {args.runs} runs, medians of {args.rounds} rounds (steps/s)")
    print(f"{'storage':<18}{'at once':>8}{'steps/s':>10}{'÷ 1 at once':>13}{'÷ memory':>10}")
    for kind in kinds:
        for n in LEVELS:
            value = med[(kind, n)]
            print(
                f"{kind:<18}{n:>8}{value:>10.0f}{value / med[(kind, 1)]:>12.2f}x"
                f"{value / med[('memory', n)]:>9.0%}"
            )


if __name__ == "__main__":
    main()
