"""Engine cost per step on MemoryStorage, against a plain loop calling the same handlers.

    python bench/engine.py [--runs 2000] [--repeat 5]

A 10-step workflow of trivial handlers (5 sync, 5 async, alternating) runs one run after
another; the plain loop calls the same ten handlers in the same event loop. Prints the
median over `--repeat` rounds of µs per step for: the plain loop, Flux without a trace
sink, and Flux with `JsonFileTraceSink`; and the ratio of each to the plain loop. With the
`fast` extra (orjson) installed, Flux is measured with it and without it in each round.
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

from flux import FluxEngine, FluxSilentLogger, JsonFileTraceSink, WorkflowContext, create_workflow, fast_json

STEPS = 10


def sync_step(ctx: WorkflowContext[Any]) -> int:
    ctx.data["n"] = ctx.data.get("n", 0) + 1
    return 1


async def async_step(ctx: WorkflowContext[Any]) -> int:
    ctx.data["n"] = ctx.data.get("n", 0) + 1
    return 1


def build() -> Any:
    flow = create_workflow("bench")
    for i in range(STEPS):
        flow = flow.step(f"s{i}", sync_step if i % 2 == 0 else async_step)
    return flow


class _Ctx:
    def __init__(self) -> None:
        self.data: dict[str, Any] = {}


async def plain_loop(runs: int) -> float:
    handlers = [sync_step if i % 2 == 0 else async_step for i in range(STEPS)]
    start = time.perf_counter()
    for _ in range(runs):
        ctx: Any = _Ctx()
        outputs = {}
        for i, h in enumerate(handlers):
            result = h(ctx)
            if i % 2:
                result = await result  # type: ignore[misc]
            outputs[i] = result
    return (time.perf_counter() - start) / (runs * STEPS) * 1e6


async def flux_loop(runs: int, engine: FluxEngine) -> float:
    flow = build()
    start = time.perf_counter()
    for _ in range(runs):
        result = await engine.execute(flow, {})
        assert result.status == "completed", result.error
    return (time.perf_counter() - start) / (runs * STEPS) * 1e6


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=2000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    figures: dict[str, list[float]] = {"plain loop": [], "flux": [], "flux + trace": []}
    # With the `fast` extra installed, each round also runs Flux with orjson turned off.
    modes = [True, False] if fast_json.AVAILABLE else [False]
    for fast in modes:
        if fast:
            figures["flux, orjson"], figures["flux + trace, orjson"] = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(args.repeat):
            figures["plain loop"].append(await plain_loop(args.runs))
            for fast in modes:
                fast_json.ENABLED = fast
                tag = ", orjson" if fast else ""
                engine = FluxEngine(logger=FluxSilentLogger())
                figures[f"flux{tag}"].append(await flux_loop(args.runs, engine))
                await engine.close()
                sink = JsonFileTraceSink(Path(tmp) / "trace.ndjson", reset=True)
                engine = FluxEngine(logger=FluxSilentLogger(), trace=sink)
                figures[f"flux + trace{tag}"].append(await flux_loop(args.runs, engine))
                await engine.close()
            fast_json.ENABLED = fast_json.AVAILABLE
    base = statistics.median(figures["plain loop"])
    print(f"10-step workflow, {args.runs} runs x {args.repeat} rounds, MemoryStorage (median)")
    print(f"{'':<22}{'µs/step':>10}{'x plain':>10}")
    for name, values in figures.items():
        med = statistics.median(values)
        print(f"{name:<22}{med:>10.2f}{med / base:>10.1f}")


if __name__ == "__main__":
    asyncio.run(main())
