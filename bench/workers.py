"""Flux on PostgreSQL: throughput of `flux worker` processes, and the cost of a durable step
against DBOS on the same server.

    pip install -e '.[bench,postgres]'
    python bench/workers.py [--runs 600] [--rounds 3] [--no-dbos]
                            [--dsn postgresql://postgres@127.0.0.1:5432/test]

(1) Throughput: `--runs` runs of a 10-step workflow are queued with `engine.start`, then 1, 2
and 4 worker processes (`flux worker --concurrency 1`) drain them, then one process with 2, 4
and 8 worker threads (`--concurrency N`, whose saves share commits). Workflows per second are
counted between the first and the last run's completion, as stored, so process start-up is
left out. (2) Per step: one process runs the same workflow run after run, on Flux with
`PostgresStorage` (durability "full", the default, and "normal") and on DBOS with its
PostgreSQL system database, alternating rounds. Figures are medians over the rounds.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import psycopg

from bench._dbos import destroy_dbos, setup_dbos
from bench.workers_flows import TEN
from flux import FluxEngine, FluxSilentLogger
from flux.storage.postgres import PostgresStorage

STEPS = 10


def fresh_schema(dsn: str) -> tuple[str, str]:
    schema = f"flux_bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    sep = "&" if "?" in dsn else "?"
    return schema, f"{dsn}{sep}options=-csearch_path%3D{schema}"


def drop_schema(dsn: str, schema: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f"DROP SCHEMA {schema} CASCADE")


def throughput(dsn: str, workers: int, runs: int, durability: str = "full", threads: int = 1) -> float:
    """Workflows per second drained by `workers` processes of `threads` worker threads each."""
    schema, url = fresh_schema(dsn)
    try:

        async def enqueue() -> None:
            engine = FluxEngine(storage=url, logger=FluxSilentLogger())
            for i in range(runs):
                await engine.start(TEN, {"i": i})
            await engine.close()

        asyncio.run(enqueue())
        procs = [
            subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "flux.cli",
                    "worker",
                    "bench.workers_flows:TEN",
                    "--storage",
                    f"{url}&durability={durability}",
                    "--concurrency",
                    str(threads),
                    "--burst",
                    "--poll",
                    "0.05",
                ],
                cwd=ROOT,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            for _ in range(workers)
        ]
        for p in procs:
            p.wait(timeout=600)
        with psycopg.connect(url, autocommit=True) as conn:
            row = conn.execute(
                "SELECT count(*), min(completed_at), max(completed_at) FROM flux_runs "
                "WHERE status='completed'"
            ).fetchone()
        assert row is not None and row[0] == runs, f"only {row} of {runs} runs completed"
        return (runs - 1) / (row[2] - row[1])
    finally:
        drop_schema(dsn, schema)


def flux_step_cost(url: str, durability: str, runs: int) -> float:
    async def go() -> float:
        engine = FluxEngine(storage=PostgresStorage(url, durability=durability), logger=FluxSilentLogger())
        start = time.perf_counter()
        for _ in range(runs):
            result = await engine.execute(TEN, {"i": 0})
            assert result.status == "completed", result.error
        elapsed = time.perf_counter() - start
        await engine.close()
        return elapsed / (runs * STEPS) * 1e6

    return asyncio.run(go())


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--dsn", default="postgresql://postgres@127.0.0.1:5432/test")
    parser.add_argument("--runs", type=int, default=600, help="queued runs per throughput round")
    parser.add_argument("--step-runs", type=int, default=100, help="runs per per-step round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--durability", choices=["full", "normal"], default="full", help="of the workers (1)")
    parser.add_argument("--no-dbos", action="store_true", help="only (1): the throughput of the workers")
    args = parser.parse_args()

    # (processes, worker threads in each): processes each `--concurrency 1`, then one process
    # with N threads, whose saves share commits (group commit across a process's threads).
    shapes = [(1, 1), (2, 1), (4, 1), (1, 2), (1, 4), (1, 8)]
    rates: dict[tuple[int, int], list[float]] = {shape: [] for shape in shapes}
    for _ in range(args.rounds):
        for procs, threads in shapes:
            rates[(procs, threads)].append(throughput(args.dsn, procs, args.runs, args.durability, threads))
    one = statistics.median(rates[(1, 1)])
    print(
        f"(1) 10-step workflows per second, {args.runs} queued runs, durability {args.durability}, "
        f"median of {args.rounds} rounds"
    )
    print(f"{'workers':<26}{'wf/s':>10}{'x 1 worker':>12}")
    for (procs, threads), values in rates.items():
        med = statistics.median(values)
        label = f"{procs} process(es)" if threads == 1 else f"1 process, --concurrency {threads}"
        print(f"{label:<26}{med:>10.1f}{med / one:>12.2f}")
    if args.no_dbos:
        return

    costs: dict[str, list[float]] = {"flux full": [], "flux normal": [], "dbos": []}
    schema, url = fresh_schema(args.dsn)
    try:
        dbos_run = setup_dbos(args.dsn.rsplit("/", 1)[0] + "/flux_bench_dbos")
        for _ in range(args.rounds):
            costs["flux full"].append(flux_step_cost(url, "full", args.step_runs))
            costs["dbos"].append(dbos_run(args.step_runs))
            costs["flux normal"].append(flux_step_cost(url, "normal", args.step_runs))
        destroy_dbos()
    finally:
        drop_schema(args.dsn, schema)
    dbos = statistics.median(costs["dbos"])
    print(f"\n(2) µs per durable step, one process, {args.step_runs} runs x {args.rounds} rounds (median)")
    print(f"{'':<14}{'µs/step':>10}{'/ DBOS':>10}")
    for name, values in costs.items():
        med = statistics.median(values)
        print(f"{name:<14}{med:>10.1f}{med / dbos:>10.2f}")


if __name__ == "__main__":
    main()
