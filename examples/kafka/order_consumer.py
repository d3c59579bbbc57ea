"""Orders from a Kafka topic, each one a Flux run named by the message key.

    python examples/kafka/order_consumer.py --bootstrap 127.0.0.1:9092 --produce 3 --count 3

`--produce N` first publishes N sample orders (`--poison` adds one that is not a valid
order). The consumer commits an offset only after its run is stored, so a consumer killed
mid-order gets the message again and Flux resumes that order's run where it stopped; a
duplicate publish of an order returns its stored result. A message that can never be an
order goes to the dead-letter topic (`--dead-letter`, default `<topic>.dead`) with headers
saying why, and the orders behind it go on. Needs `pip install 'gravito-flux[kafka]'` and a
broker (any Kafka, or tansu).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from pathlib import Path
from typing import TypedDict

try:
    import flux  # noqa: F401
except ImportError:  # running from a source checkout without installing
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord

from flux import (
    FluxConsoleLogger,
    FluxEngine,
    FluxResult,
    JsonFileTraceSink,
    WorkflowContext,
    create_workflow,
)
from flux.kafka import consume


class Order(TypedDict):
    sku: str
    qty: int


def reserve(ctx: WorkflowContext[Order]) -> dict[str, object]:
    ctx.data["reserved"] = ctx.input["qty"]
    return {"sku": ctx.input["sku"], "reserved": ctx.input["qty"]}


def charge(ctx: WorkflowContext[Order]) -> str:
    # A real gateway would take ctx.idempotency_key, so a resumed run never charges twice.
    return f"charge-{ctx.idempotency_key}"


def ship(ctx: WorkflowContext[Order]) -> str:
    return f"shipped {ctx.input['qty']} x {ctx.input['sku']}"


ORDER = create_workflow("kafka-order").input(Order).step("reserve", reserve).step("charge", charge, retries=3)
ORDER = ORDER.commit("ship", ship)


async def produce(bootstrap: str, topic: str, count: int, poison: bool) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
    await producer.start()
    try:
        if poison:  # qty is not an int: Order rejects it, so it can never become a run
            await producer.send_and_wait(topic, b'{"sku": "SKU-X", "qty": "many"}', key=b"order-x")
        for i in range(1, count + 1):
            value = json.dumps({"sku": f"SKU-{i}", "qty": i}).encode()
            await producer.send_and_wait(topic, value, key=f"order-{i}".encode())
    finally:
        await producer.stop()


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--bootstrap", default=os.environ.get("KAFKA_BOOTSTRAP", "127.0.0.1:9092"))
    parser.add_argument("--topic", default="orders")
    parser.add_argument("--produce", type=int, default=0, help="publish this many sample orders first")
    parser.add_argument("--poison", action="store_true", help="with --produce: one invalid order too")
    parser.add_argument("--dead-letter", default=None, help="topic for bad messages (default <topic>.dead)")
    parser.add_argument("--count", type=int, default=None, help="stop after this many messages")
    parser.add_argument("--storage", default=os.environ.get("FLUX_STORAGE", "sqlite:///.flux/kafka.db"))
    args = parser.parse_args()
    if args.produce:
        await produce(args.bootstrap, args.topic, args.produce, args.poison)
    engine = FluxEngine(
        storage=args.storage,
        logger=FluxConsoleLogger(),
        trace=JsonFileTraceSink(os.environ.get("FLUX_TRACE", "./.flux/trace.ndjson"), reset=False),
    )
    consumer = AIOKafkaConsumer(
        args.topic,
        bootstrap_servers=args.bootstrap,
        group_id="flux-orders",
        enable_auto_commit=False,
        auto_offset_reset="earliest",
    )
    await consumer.start()

    def report(msg: ConsumerRecord[bytes, bytes], result: FluxResult) -> None:
        print(f"{result.id}: {result.status.value} {result.outputs.get('ship', result.error)}", flush=True)

    try:
        await consume(
            engine,
            ORDER,
            consumer,
            on_result=report,
            max_messages=args.count,
            dead_letter=args.dead_letter or f"{args.topic}.dead",
        )
    finally:
        await consumer.stop()
        await engine.close()


if __name__ == "__main__":
    asyncio.run(main())
