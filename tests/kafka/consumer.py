"""A Kafka consumer process for the tests: hands messages to Flux (SQLite storage).

    python consumer.py BOOTSTRAP TOPIC DB EFFECTS

`BLOCK_AT=<step>` makes the handler print `blocked` and wait forever inside that step
(before the offset commit), for the test to SIGKILL the process.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import threading
from typing import Any

from aiokafka import AIOKafkaConsumer

from flux import FluxEngine, FluxSilentLogger, SQLiteStorage, WorkflowContext, create_workflow
from flux.kafka import consume

BOOTSTRAP, TOPIC, DB, EFFECTS = sys.argv[1:5]


def step(ctx: WorkflowContext[Any]) -> str:
    with open(EFFECTS, "a") as f:
        f.write(f"{ctx.id} {ctx.step_name} {ctx.idempotency_key}\n")
    if os.environ.get("BLOCK_AT") == ctx.step_name:
        print("blocked", flush=True)
        threading.Event().wait()
    return ctx.step_name


ORDER = create_workflow("kafka-order").step("reserve", step).step("charge", step).commit("ship", step)


async def main() -> None:
    engine = FluxEngine(storage=SQLiteStorage(DB), logger=FluxSilentLogger())
    consumer = AIOKafkaConsumer(
        TOPIC, bootstrap_servers=BOOTSTRAP, group_id="flux-orders",
        enable_auto_commit=False, auto_offset_reset="earliest",
        session_timeout_ms=6000, heartbeat_interval_ms=500,
    )  # fmt: skip
    await consumer.start()
    # SIGTERM: stop consuming and leave the group, so that the next consumer need not wait
    # for this one's session to time out.
    task = asyncio.current_task()
    assert task is not None
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)
    try:
        await consume(
            engine, ORDER, consumer,
            on_result=lambda msg, result: print("handled", result.id, result.status.value, flush=True),
        )  # fmt: skip
    except asyncio.CancelledError:
        pass
    finally:
        await consumer.stop()
        await engine.close()


if __name__ == "__main__":
    asyncio.run(main())
