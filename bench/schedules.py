"""Schedules: what the schedule tick costs a busy worker, and how late a slot's run starts.

    python bench/schedules.py [--runs 3000] [--rounds 3]

(1) Tick cost: `engine.work(burst=True)` executes `--runs` pending one-step runs on SQLite,
with the schedule tick as it is (one indexed query per loop, no schedule due) and with the
tick replaced by a no-op, alternately, `--rounds` times each; printed as runs/s and the
ratio of the medians (the baseline is measured in the same run).
(2) Slot lateness: three `flux worker --poll 0.2` processes on one SQLite file and a schedule
`every=1` for `--seconds` seconds; per slot, the run's creation time minus the slot's time
(p50, p99, max).
(3) The pure core: `plan_firing` after a year of `every=1` slots with nobody working (31
million slots), per catch_up, in microseconds per call.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from flux import FluxEngine, FluxSilentLogger, SQLiteStorage, create_workflow
from flux.cron import Every
from flux.schedules import plan_firing

FLOW = create_workflow("bench-tick").step("s", lambda ctx: 1)


async def _burst(runs: int, tick: bool) -> float:
    folder = tempfile.mkdtemp()
    engine = FluxEngine(SQLiteStorage(os.path.join(folder, "f.db")), logger=FluxSilentLogger())
    for i in range(runs):
        await engine.start(FLOW, None, id=f"r{i}")
    if not tick:

        async def no_tick(now: float) -> int:
            return 0

        engine._fire_schedules = no_tick  # type: ignore[method-assign]
    began = time.perf_counter()
    done = await engine.work([FLOW], burst=True)
    elapsed = time.perf_counter() - began
    assert done == runs
    await engine.close()
    return runs / elapsed


def tick_cost(runs: int, rounds: int) -> None:
    with_tick: list[float] = []
    without: list[float] = []
    for _ in range(rounds):
        without.append(asyncio.run(_burst(runs, tick=False)))
        with_tick.append(asyncio.run(_burst(runs, tick=True)))
    a, b = statistics.median(without), statistics.median(with_tick)
    print(f"(1) work(burst) on SQLite, {runs} runs x {rounds} rounds: without the tick {a:.0f} runs/s, "
          f"with it {b:.0f} runs/s; with/without = {b / a:.3f}")  # fmt: skip


def lateness(seconds: float) -> None:
    folder = Path(tempfile.mkdtemp())
    url = f"sqlite:///{folder / 'f.db'}"
    flows = folder / "bench_sched_flows.py"
    flows.write_text(
        "from flux import create_workflow\nflow = create_workflow('bench-slot').step('s', lambda c: 1)\n"
    )
    sys.path.insert(0, str(folder))
    from bench_sched_flows import flow  # type: ignore[import-not-found]

    with FluxEngine(url, logger=FluxSilentLogger()) as engine:
        engine.schedule_sync(flow, every=1, id="slot")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(folder)])}
    argv = [
        sys.executable,
        "-m",
        "flux.cli",
        "worker",
        "bench_sched_flows:flow",
        "--storage",
        url,
        "--poll",
        "0.2",
    ]
    procs = [subprocess.Popen(argv, env=env, stderr=subprocess.DEVNULL) for _ in range(3)]
    time.sleep(3)  # the workers start; the slots before are not counted
    counted_from = time.time()
    time.sleep(seconds)
    for p in procs:
        p.send_signal(signal.SIGTERM)
    for p in procs:
        p.wait(timeout=60)
    with FluxEngine(url, logger=FluxSilentLogger()) as engine:
        runs = engine.list_sync(limit=10_000)
    late = []
    for r in runs:
        slot = datetime.fromisoformat(r.id.rpartition("@")[2].replace("Z", "+00:00"))
        assert r.created_at is not None
        if slot.timestamp() < counted_from:
            continue
        late.append((r.created_at - slot).total_seconds() * 1000)
    late.sort()
    p50, p99 = late[len(late) // 2], late[min(len(late) - 1, int(len(late) * 0.99))]
    print(f"(2) 3 workers (--poll 0.2), every=1 for {seconds:g} s on SQLite: {len(late)} slots, run "
          f"created after its slot p50 {p50:.0f} ms, p99 {p99:.0f} ms, max {late[-1]:.0f} ms")  # fmt: skip


def core() -> None:
    year = 365 * 86400
    parts = []
    for catch_up in ("latest", "all", "none"):
        n = 20 if catch_up == "all" else 200
        began = time.perf_counter()
        for _ in range(n):
            plan_firing(Every(1), catch_up, 0, year + 0.5)
        parts.append(f"{catch_up} {(time.perf_counter() - began) / n * 1e6:.0f} us")
    print("(3) plan_firing after a year of missed every=1 slots: " + ", ".join(parts))


def main(argv: Any = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=20.0)
    args = parser.parse_args(argv)
    tick_cost(args.runs, args.rounds)
    lateness(args.seconds)
    core()


if __name__ == "__main__":
    main()
