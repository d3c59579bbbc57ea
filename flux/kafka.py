"""Kafka in front of Flux: each message starts (or continues) the run named by its key.

    consumer = AIOKafkaConsumer("orders", group_id="orders", enable_auto_commit=False, ...)
    await consume(engine, order_flow, consumer)

The offset of a message is committed only after its run is stored as finished, failed or
suspended. A consumer that dies before that gets the message again, and `execute` with
the same id resumes the stored run where it stopped: no finished step runs twice.
Needs the `kafka` extra (aiokafka).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from .builder import Workflow
from .engine import FluxEngine
from .result import FluxResult

try:
    from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
except ImportError as exc:  # pragma: no cover - depends on the install
    raise ImportError("flux.kafka needs aiokafka: pip install 'gravito-flux[kafka]'") from exc


def decode_json(value: bytes | None) -> Any:
    return None if value is None else json.loads(value)


def run_id_of(msg: ConsumerRecord[Any, Any]) -> str:
    """The message key is the run id; a message without one is named by its position."""
    key = msg.key
    if key is None:
        return f"{msg.topic}:{msg.partition}:{msg.offset}"
    return key.decode("utf-8") if isinstance(key, bytes) else str(key)


async def handle(
    engine: FluxEngine,
    flow: Workflow[Any],
    msg: ConsumerRecord[Any, Any],
    *,
    decode: Callable[[bytes | None], Any] = decode_json,
) -> FluxResult:
    """Run (or resume) the message's run; return once it is finished, failed or suspended."""
    return await engine.execute(flow, decode(msg.value), id=run_id_of(msg))


async def consume(
    engine: FluxEngine,
    flow: Workflow[Any],
    consumer: AIOKafkaConsumer,
    *,
    decode: Callable[[bytes | None], Any] = decode_json,
    on_result: Callable[[ConsumerRecord[Any, Any], FluxResult], Any] | None = None,
    max_messages: int | None = None,
) -> int:
    """Hand every message of a started consumer (with `enable_auto_commit=False`) to Flux,
    committing each offset after its run is stored. Returns the number of messages handled.

    An error from the engine (a storage that is down, input that does not validate)
    propagates without committing: the message will come again.
    """
    handled = 0
    async for msg in consumer:
        result = await handle(engine, flow, msg, decode=decode)
        await consumer.commit({TopicPartition(msg.topic, msg.partition): msg.offset + 1})
        handled += 1
        if on_result is not None:
            on_result(msg, result)
        if max_messages is not None and handled >= max_messages:
            break
    return handled
