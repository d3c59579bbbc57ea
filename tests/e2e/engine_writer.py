"""The real engine writing a trace for the end-to-end tests (and the README picture).

``python -m tests.e2e.engine_writer --trace PATH --run-id ID [--scenario order|saga]
[--gate FILE]``. Both scenarios retry a payment, skip a branch and wait for an
approval signal; ``order`` then ships (a commit) and completes, ``saga`` fails at
the commit and compensates the payment. With ``--gate`` the approval signal is
sent only once FILE exists, so a test can watch the run wait.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from pathlib import Path
from typing import Any

from flux import (
    Backoff,
    FatalError,
    Flux,
    FluxEngine,
    FluxSilentLogger,
    JsonFileTraceSink,
    WorkflowContext,
    create_workflow,
)

#: Long enough for the bars to have a width on the timeline.
WORK_S = 0.03


def build(scenario: str) -> Any:
    async def fetch(ctx: WorkflowContext[Any]) -> dict[str, Any]:
        await asyncio.sleep(WORK_S)
        ctx.data["order"] = {"id": ctx.input["order_id"], "items": 2}
        return {"found": True}

    async def payment(ctx: WorkflowContext[Any]) -> dict[str, Any]:
        await asyncio.sleep(WORK_S)
        if ctx.attempt == 1:
            raise TimeoutError("payment gateway timed out")
        ctx.data["charge"] = "ch_0001"
        return {"charge": "ch_0001", "attempt": ctx.attempt}

    async def refund(ctx: WorkflowContext[Any]) -> None:
        await asyncio.sleep(WORK_S)
        ctx.data["refunded"] = True

    def express(ctx: WorkflowContext[Any]) -> None:
        ctx.data["express"] = True

    async def approve(ctx: WorkflowContext[Any]) -> Any:
        await asyncio.sleep(WORK_S)
        return Flux.wait("approval")

    async def ship(ctx: WorkflowContext[Any]) -> dict[str, Any]:
        await asyncio.sleep(WORK_S)
        if scenario == "saga":
            raise FatalError("warehouse: out of stock")
        ctx.data["shipped"] = True
        return {"tracking": "TRK-42"}

    return (
        create_workflow("order-process")
        .step("fetch", fetch)
        .step("payment", payment, retries=2, compensate=refund)
        .step("express", express, when=lambda ctx: False)
        .step("approve", approve)
        .commit("ship", ship)
    )


def wait_for(gate: Path) -> None:
    while not gate.exists():  # the test opens the gate when it has seen the wait
        time.sleep(0.01)


async def main(trace: Path, run_id: str, scenario: str, gate: Path | None) -> None:
    engine = FluxEngine(
        trace=JsonFileTraceSink(trace, reset=False),
        default_backoff=Backoff(initial=0.05, jitter=0),
        logger=FluxSilentLogger(),
    )
    flow = build(scenario)
    try:
        result = await engine.execute(flow, {"order_id": run_id}, id=run_id)
        assert result.status == "suspended", result
        if gate is not None:
            await asyncio.to_thread(wait_for, gate)
        else:
            await asyncio.sleep(0.2)  # a visible wait on the timeline
        await engine.signal(flow, run_id, "approval", {"by": "ann"})
    finally:
        await engine.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--trace", type=Path, required=True)
    parser.add_argument("--run-id", required=True)
    parser.add_argument("--scenario", choices=["order", "saga"], default="order")
    parser.add_argument("--gate", type=Path)
    args = parser.parse_args()
    asyncio.run(main(args.trace, args.run_id, args.scenario, args.gate))
