"""Branches (SPEC §11): a parallel group against the same steps in a row, a map against
sequential steps, on SQLite (durability "normal"), in one invocation.

    python bench/branches.py [--rounds 5] [--items 10000] [--branches 10] [--delay 0.1]

(a) A parallel group of ``--branches`` async branches, each awaiting ``--delay`` seconds,
    against the same branches as sequential steps of one workflow: the ratio sequential ÷
    parallel (the group should take one delay, not the sum of them).
(b) A map over ``--items`` trivial items in one run, against as many trivial sequential
    steps (runs of 100 steps one after another: one definition of 10,000 steps would measure
    the builder, not the steps): µs per item ÷ µs per sequential step. The map runs its items
    with the default ``max_concurrency`` (8); a sync handler (as the sequential steps) and an
    async one.

Rounds alternate the contenders so that all see the same machine load; every figure is the
median over the rounds, each contender on a fresh database file, and each ratio is given
both as the ratio of the medians and as the median of the rounds' own ratios (steadier on a
loaded machine). No thresholds: it prints.
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

from flux import FluxEngine, FluxSilentLogger, SQLiteStorage, WorkflowContext, create_workflow, step

#: Steps per run of the sequential baseline of (b).
RUN_STEPS = 100


def trivial(ctx: WorkflowContext[Any]) -> int:
    return ctx.attempt


async def trivial_async(ctx: WorkflowContext[Any]) -> int:
    return ctx.attempt


def waiting(delay: float) -> Any:
    async def wait(ctx: WorkflowContext[Any]) -> float:
        await asyncio.sleep(delay)
        return delay

    return wait


def engine_on(db: Path, items: int) -> FluxEngine:
    return FluxEngine(
        storage=SQLiteStorage(db, durability="normal"),
        logger=FluxSilentLogger(),
        max_map_items=max(items, 10_000),
    )


async def timed(engine: FluxEngine, flow: Any, runs: int = 1) -> float:
    """Seconds for `runs` runs of `flow`, one after another."""
    return (await clocked(engine, flow, runs))[0]


async def clocked(engine: FluxEngine, flow: Any, runs: int = 1) -> tuple[float, float]:
    """Wall seconds and CPU seconds (this process, all its threads) for `runs` runs of `flow`."""
    wall, cpu = time.perf_counter(), time.process_time()
    for _ in range(runs):
        result = await engine.execute(flow, {})
        assert result.status == "completed", result.error
    return time.perf_counter() - wall, time.process_time() - cpu


# ---------------------------------------------------------------- (a) a group of waits


def group_flows(branches: int, delay: float) -> tuple[Any, Any]:
    names = [f"b{i}" for i in range(branches)]
    sequential = create_workflow("bench-branches-sequential")
    for name in names:
        sequential = sequential.step(name, waiting(delay))
    parallel = create_workflow("bench-branches-parallel").parallel(
        "group", *(step(name, waiting(delay)) for name in names)
    )
    return sequential, parallel


async def round_group(tmp: Path, r: int, branches: int, delay: float) -> tuple[float, float]:
    sequential, parallel = group_flows(branches, delay)
    engine = engine_on(tmp / f"group{r}.db", 1)
    try:
        await timed(engine, parallel)  # warm: the schema and the first statements
        seq = await timed(engine, sequential)
        par = await timed(engine, parallel)
    finally:
        await engine.close()
    return seq, par


# ---------------------------------------------------------------- (b) a map of trivial items


def map_flow(items: int, handler: Any) -> Any:
    return create_workflow("bench-map").map("m", handler, items=lambda ctx: list(range(items)))


def sequential_flow() -> Any:
    flow = create_workflow("bench-map-sequential")
    for i in range(RUN_STEPS):
        flow = flow.step(f"s{i}", trivial)
    return flow


async def round_map(tmp: Path, r: int, items: int) -> dict[str, tuple[float, float]]:
    """Wall and CPU µs per item (map) and per step (sequential), each on a fresh file."""
    out: dict[str, tuple[float, float]] = {}
    runs_of = max(1, items // RUN_STEPS)
    for name, flow, runs, count in (
        ("sequential steps", sequential_flow(), runs_of, runs_of * RUN_STEPS),
        ("map, sync handler", map_flow(items, trivial), 1, items),
        ("map, async handler", map_flow(items, trivial_async), 1, items),
    ):  # fmt: skip
        engine = engine_on(tmp / f"map{r}-{name.split()[-2]}.db", items)
        try:
            await timed(engine, create_workflow("bench-warm").step("w", trivial))
            wall, cpu = await clocked(engine, flow, runs)
            out[name] = (wall / count * 1e6, cpu / count * 1e6)
        finally:
            await engine.close()
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--items", type=int, default=10_000, help="items of the map (b)")
    parser.add_argument("--branches", type=int, default=10, help="branches of the group (a)")
    parser.add_argument("--delay", type=float, default=0.1, help="seconds each branch awaits (a)")
    args = parser.parse_args()

    seq_s: list[float] = []
    par_s: list[float] = []
    per: dict[str, list[tuple[float, float]]] = {}
    with tempfile.TemporaryDirectory() as folder:
        tmp = Path(folder)
        for r in range(args.rounds):
            seq, par = asyncio.run(round_group(tmp, r, args.branches, args.delay))
            seq_s.append(seq)
            par_s.append(par)
            for name, us in asyncio.run(round_map(tmp, r, args.items)).items():
                per.setdefault(name, []).append(us)

    seq, par = statistics.median(seq_s), statistics.median(par_s)
    print(f"(a) {args.branches} async branches each awaiting {args.delay * 1000:.0f} ms, SQLite normal, "
          f"median of {args.rounds} rounds")  # fmt: skip
    print(f"    sequential steps  {seq * 1000:8.1f} ms")
    print(f"    parallel group    {par * 1000:8.1f} ms")
    ratios = [s / p for s, p in zip(seq_s, par_s, strict=True)]
    rounds = statistics.median(ratios)
    print(f"    sequential ÷ parallel: {seq / par:.1f}x (median of the rounds' ratios: {rounds:.1f}x)")
    each = {"sequential": [round(s * 1000) for s in seq_s], "parallel": [round(p * 1000) for p in par_s]}
    print(f"    per round (ms): {each}")
    print(f"(b) {args.items:,} trivial items in one map vs {args.items:,} trivial sequential steps "
          f"(runs of {RUN_STEPS}), SQLite normal, median of {args.rounds} rounds")  # fmt: skip
    print(f"    {'':<20}{'wall µs':>9}{'÷ seq':>7}{'rounds':>8}{'CPU µs':>9}{'÷ seq':>7}{'rounds':>8}")
    base = per["sequential steps"]
    for name, values in per.items():
        cols = []
        for k in (0, 1):  # wall, CPU
            mine, theirs = [v[k] for v in values], [b[k] for b in base]
            ratio = statistics.median(mine) / statistics.median(theirs)
            rounds = statistics.median([m / t for m, t in zip(mine, theirs, strict=True)])
            cols.append(f"{statistics.median(mine):>9.1f}{ratio:>7.2f}{rounds:>8.2f}")
        print(f"    {name:<20}{''.join(cols)}")
    print("    ('÷ seq': ratio of the medians; 'rounds': median of the rounds' own ratios)")
    print("    per round, wall µs:", {k: [round(v[0], 1) for v in vs] for k, vs in per.items()})


if __name__ == "__main__":
    main()
