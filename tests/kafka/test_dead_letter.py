"""Poison messages on a real broker: a message that can never become a run goes to the
dead-letter destination and its partition goes on; an error that is not the message's
fault (the storage is down) leaves the message to come again."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypedDict, TypeVar

import pytest

from flux import FluxEngine, FluxSilentLogger, SQLiteStorage, StorageError, WorkflowContext, create_workflow
from flux.logger import StdlibLogger

try:
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition

    from flux.kafka import consume
except ImportError:  # the aiokafka_installed fixture says so (and fails when services are required)
    pass

T = TypeVar("T")
GROUP = "flux-dlq"
GOOD = b'{"sku": "A1", "qty": 2}'
Message = tuple[bytes | None, bytes | None, list[tuple[str, bytes]]]


class Order(TypedDict):
    sku: str
    qty: int


def reserve(ctx: WorkflowContext[Order]) -> str:
    return f"reserved {ctx.input['qty']} x {ctx.input['sku']}"


ORDER = create_workflow("kafka-dlq-order").input(Order).step("reserve", reserve)


def within_a_minute(coro: Awaitable[T]) -> Awaitable[T]:
    """A guard, not a threshold: a test that goes wrong fails instead of hanging."""
    return asyncio.wait_for(coro, 60)


async def send(bootstrap: str, topic: str, messages: list[Message]) -> None:
    """All to partition 0, in order: a poison message there holds up the ones behind it."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
    await producer.start()
    try:
        for key, value, headers in messages:
            await producer.send_and_wait(topic, value, key=key, partition=0, headers=headers)
    finally:
        await producer.stop()


async def consuming(bootstrap: str, fn: Callable[[AIOKafkaConsumer], Awaitable[T]]) -> tuple[T, int | None]:
    """`fn(consumer)` on a started consumer of "orders", and the group's committed offset after."""
    consumer = AIOKafkaConsumer(
        "orders", bootstrap_servers=bootstrap, group_id=GROUP, enable_auto_commit=False,
        auto_offset_reset="earliest",
    )  # fmt: skip
    await consumer.start()
    try:
        result = await within_a_minute(fn(consumer))
        return result, await consumer.committed(TopicPartition("orders", 0))
    finally:
        await consumer.stop()


async def read_back(bootstrap: str, topic: str, count: int) -> list[ConsumerRecord[bytes, bytes]]:
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest")
    await consumer.start()
    try:
        return [await within_a_minute(consumer.getone()) for _ in range(count)]
    finally:
        await consumer.stop()


async def topics(bootstrap: str) -> set[str]:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap)
    await consumer.start()
    try:
        return set(await consumer.topics())
    finally:
        await consumer.stop()


def engine_on(db: Path, logger: Any = None) -> FluxEngine:
    return FluxEngine(storage=SQLiteStorage(db), logger=logger or FluxSilentLogger())


POISON: list[tuple[bytes, bytes, list[tuple[str, bytes]], str]] = [
    (b"p-json", b"not json", [("origin", b"test")], "JSONDecodeError"),
    (b"p-surrogate", b'{"sku": "\\ud800", "qty": 1}', [], "ValueError"),
    (b"p-type", b'{"sku": "A1", "qty": "two"}', [], "InputValidationError"),
    (b"x" * 256, GOOD, [], "RunStateError"),  # a run id is at most 255 characters
    (b"\xff", GOOD, [], "UnicodeDecodeError"),  # a key that is not UTF-8
]


def test_poison_messages_go_to_the_dead_letter_topic_and_the_partition_goes_on(
    broker: str, tmp_path: Path
) -> None:
    engine = engine_on(tmp_path / "flux.db")

    async def main() -> tuple[tuple[int, int | None], list[ConsumerRecord[bytes, bytes]]]:
        await send(broker, "orders", [(k, v, h) for k, v, h, _ in POISON] + [(b"order-1", GOOD, [])])
        handled = await consuming(
            broker, lambda c: consume(engine, ORDER, c, dead_letter="orders.dead", max_messages=6)
        )
        return handled, await read_back(broker, "orders.dead", len(POISON))

    (handled, committed), dead = asyncio.run(main())
    # The dead-letter topic is partitioned by key: put the copies back in their source order.
    dead.sort(key=lambda record: int(dict(record.headers)["flux-source-offset"]))
    assert handled == 6
    assert committed == 6  # past the poison messages and the good one
    run = engine.get_sync("order-1")
    assert run.status == "completed" and run.outputs == {"reserve": "reserved 2 x A1"}
    engine.close_sync()

    assert [(d.key, d.value) for d in dead] == [(k, v) for k, v, _, _ in POISON]  # unchanged
    for offset, (record, (_, _, own, error_type)) in enumerate(zip(dead, POISON, strict=True)):
        assert list(record.headers)[: len(own)] == own  # the message's own headers come first
        headers = dict(record.headers)
        assert headers["flux-error-type"] == error_type.encode()
        assert headers["flux-source-topic"] == b"orders"
        assert headers["flux-source-partition"] == b"0"
        assert headers["flux-source-offset"] == str(offset).encode()
        assert headers["flux-workflow"] == b"kafka-dlq-order"
        assert headers["flux-error-message"]
    assert b"qty" in dict(dead[2].headers)["flux-error-message"]  # names the field
    assert b"surrogate" in dict(dead[1].headers)["flux-error-message"]


@pytest.mark.parametrize("kind", ["sync", "async"])
def test_poison_messages_go_to_a_dead_letter_callable(broker: str, tmp_path: Path, kind: str) -> None:
    engine = engine_on(tmp_path / "flux.db")
    seen: list[tuple[int, bytes | None, Exception]] = []

    def record(msg: ConsumerRecord[bytes, bytes], error: Exception) -> None:
        seen.append((msg.offset, msg.value, error))

    async def record_async(msg: ConsumerRecord[bytes, bytes], error: Exception) -> None:
        await asyncio.sleep(0)  # a real await inside the handler
        record(msg, error)

    handler = record if kind == "sync" else record_async
    other = b'{"sku": "B2", "qty": 1}'  # order-1 again with another input: a conflict

    async def main() -> tuple[int, int | None]:
        messages: list[Message] = [(b"order-1", GOOD, []), (b"order-1", other, []), (b"p", b"{", [])]
        await send(broker, "orders", [*messages, (b"order-2", GOOD, [])])
        return await consuming(
            broker, lambda c: consume(engine, ORDER, c, dead_letter=handler, max_messages=4)
        )

    handled, committed = asyncio.run(main())
    assert (handled, committed) == (4, 4)
    assert [(offset, value, type(error).__name__) for offset, value, error in seen] == [
        (1, other, "RunConflictError"),
        (2, b"{", "JSONDecodeError"),
    ]
    assert engine.get_sync("order-1").status == "completed"
    assert engine.get_sync("order-2").status == "completed"
    engine.close_sync()


def test_a_failing_dead_letter_destination_leaves_the_message_uncommitted(
    broker: str, tmp_path: Path
) -> None:
    engine = engine_on(tmp_path / "flux.db")

    def refuse(msg: ConsumerRecord[bytes, bytes], error: Exception) -> None:
        raise RuntimeError("the dead-letter store is down")

    async def main() -> int | None:
        await send(broker, "orders", [(b"p", b"not json", [])])
        with pytest.raises(RuntimeError, match="dead-letter store is down"):
            await consuming(broker, lambda c: consume(engine, ORDER, c, dead_letter=refuse))
        _, committed = await consuming(broker, lambda c: asyncio.sleep(0))
        return committed

    assert asyncio.run(main()) is None
    engine.close_sync()


def test_a_dead_letter_topic_through_the_callers_producer(broker: str, tmp_path: Path) -> None:
    engine = engine_on(tmp_path / "flux.db")

    async def main() -> list[ConsumerRecord[bytes, bytes]]:
        await send(broker, "orders", [(b"p", b"not json", []), (b"order-1", GOOD, [])])
        producer = AIOKafkaProducer(bootstrap_servers=broker)
        await producer.start()
        try:
            handled, committed = await consuming(
                broker,
                lambda c: consume(
                    engine, ORDER, c, dead_letter="orders.dead", producer=producer, max_messages=2
                ),
            )
            assert (handled, committed) == (2, 2)
            # consume leaves the caller's producer running
            await producer.send_and_wait("orders.dead", b"after", key=b"p")
        finally:
            await producer.stop()
        return await read_back(broker, "orders.dead", 2)

    dead = asyncio.run(main())
    assert [(d.key, d.value) for d in dead] == [(b"p", b"not json"), (b"p", b"after")]
    assert dict(dead[0].headers)["flux-error-type"] == b"JSONDecodeError"
    assert engine.get_sync("order-1").status == "completed"
    engine.close_sync()


def test_a_storage_error_is_not_dead_lettered_and_the_message_comes_again(
    broker: str, tmp_path: Path
) -> None:
    dead: list[Exception] = []

    async def main() -> None:
        await send(broker, "orders", [(b"order-1", GOOD, [])])
        down = engine_on(tmp_path / "flux.db")
        await down.storage.close()  # its connection is dead: every call raises StorageError
        for sink in ("orders.dead", lambda msg, error: dead.append(error)):
            with pytest.raises(StorageError):
                await consuming(broker, lambda c, sink=sink: consume(down, ORDER, c, dead_letter=sink))
        # Nothing was committed: a consumer with a working storage gets the message again.
        engine = engine_on(tmp_path / "flux.db")
        try:
            handled, committed = await consuming(
                broker, lambda c: consume(engine, ORDER, c, dead_letter="orders.dead", max_messages=1)
            )
            assert (handled, committed) == (1, 1)
            assert (await engine.get("order-1")).status == "completed"
        finally:
            await engine.close()
        assert "orders.dead" not in await topics(broker)

    asyncio.run(main())
    assert dead == []


def test_without_dead_letter_a_poison_message_is_logged_and_not_committed(
    broker: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    engine = engine_on(tmp_path / "flux.db", StdlibLogger())

    async def main() -> int | None:
        await send(broker, "orders", [(b"p", b"not json", []), (b"order-1", GOOD, [])])
        with pytest.raises(ValueError, match="Expecting value"):
            await consuming(broker, lambda c: consume(engine, ORDER, c))
        _, committed = await consuming(broker, lambda c: asyncio.sleep(0))
        return committed

    with caplog.at_level(logging.ERROR, logger="flux"):
        assert asyncio.run(main()) is None  # the partition waits at the poison message
    engine.close_sync()
    [line] = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert "kafka-dlq-order" in line
    assert "topic 'orders' partition 0 offset 0" in line
    assert "dead_letter=" in line


def test_dead_letter_must_be_a_topic_name_or_a_callable(aiokafka_installed: None) -> None:
    engine = FluxEngine(logger=FluxSilentLogger())

    async def main() -> None:
        # Never started: the argument is checked before the consumer is read.
        consumer = AIOKafkaConsumer("orders", bootstrap_servers="127.0.0.1:9", group_id=GROUP)
        producer = AIOKafkaProducer(bootstrap_servers="127.0.0.1:9")
        bad: list[tuple[Any, type[Exception], str]] = [
            ("", ValueError, "non-empty topic name or a callable"),
            (42, TypeError, r"non-empty topic name or a callable \(message, error\), got 42"),
            ("orders", ValueError, "'orders' is one this consumer reads"),
        ]
        try:
            for dead_letter, error, message in bad:
                with pytest.raises(error, match=message):
                    await consume(engine, ORDER, consumer, dead_letter=dead_letter)
            with pytest.raises(ValueError, match="producer= is for a dead_letter topic"):
                await consume(engine, ORDER, consumer, dead_letter=print, producer=producer)
        finally:
            await consumer.stop()
            await producer.stop()

    asyncio.run(main())
    engine.close_sync()
