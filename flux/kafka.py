"""Kafka in front of Flux: each message starts (or continues) the run named by its key.

    consumer = AIOKafkaConsumer("orders", group_id="orders", enable_auto_commit=False, ...)
    await consume(engine, order_flow, consumer, dead_letter="orders.dead")

The offset of a message is committed only after its run is stored as finished, failed or
suspended. A consumer that dies before that gets the message again, and `execute` with
the same id resumes the stored run where it stopped: no finished step runs twice.

A message that can never become a run (its value does not decode, its key is not a run id,
its input is rejected by the workflow's type or cannot be stored, its key names a run with
another input) is a poison message: it would come back forever and hold up its partition.
With `dead_letter=` it is handed there and its offset committed; without it, it is logged
and the consumer stops, uncommitted, as for any other error. Errors that are not about the
message (a storage that is down) never dead-letter a message: it comes again.
Needs the `kafka` extra (aiokafka).
"""

from __future__ import annotations

import inspect
import json
import re
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from .builder import Workflow
from .engine import FluxEngine
from .errors import InputValidationError, RunConflictError, SerializationError
from .result import FluxResult

try:
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
except ImportError as exc:  # pragma: no cover - depends on the install
    raise ImportError("flux.kafka needs aiokafka: pip install 'gravito-flux[kafka]'") from exc

#: The headers a dead-letter topic's copy of a message carries, after the message's own.
HEADER_ERROR_TYPE = "flux-error-type"
HEADER_ERROR_MESSAGE = "flux-error-message"
HEADER_SOURCE_TOPIC = "flux-source-topic"
HEADER_SOURCE_PARTITION = "flux-source-partition"
HEADER_SOURCE_OFFSET = "flux-source-offset"
HEADER_WORKFLOW = "flux-workflow"

#: A dead-letter callable: given the message and the error, sync or async.
DeadLetterHandler = Callable[[ConsumerRecord[Any, Any], Exception], Any]  # None or an awaitable

#: What `execute` raises when the message itself is wrong: the same message would raise it
#: again on every delivery. Anything else (a `StorageError`, ...) is not the message's fault.
MESSAGE_ERRORS: tuple[type[Exception], ...] = (InputValidationError, SerializationError, RunConflictError)

_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")
_MAX_ERROR_HEADER = 4000  # characters of the error message kept in its header


def decode_json(value: bytes | None) -> Any:
    """A UTF-8 JSON value; text that is not valid Unicode (a lone surrogate) is rejected
    here, since no storage could keep it."""
    if value is None:
        return None
    text = value.decode("utf-8")  # strict: a surrogate encoded in the bytes is not UTF-8
    data = json.loads(text)
    if _SURROGATE_ESCAPE.search(text):  # only an escape can make a lone surrogate now
        try:
            json.dumps(data, ensure_ascii=False).encode("utf-8")
        except UnicodeEncodeError as exc:
            char = exc.object[exc.start : exc.start + 1]
            raise ValueError(f"the JSON holds a lone surrogate {char!r}, which is not Unicode text") from None
    return data


def run_id_of(msg: ConsumerRecord[Any, Any]) -> str:
    """The message key is the run id; a message without one is named by its position."""
    key = msg.key
    if key is None:
        return f"{msg.topic}:{msg.partition}:{msg.offset}"
    run_id = key.decode("utf-8") if isinstance(key, bytes) else str(key)
    run_id.encode("utf-8")  # a str key from a key_deserializer may hold a lone surrogate
    return FluxEngine._check_id(run_id)


def where(msg: ConsumerRecord[Any, Any]) -> str:
    return f"topic '{msg.topic}' partition {msg.partition} offset {msg.offset}"


async def handle(
    engine: FluxEngine,
    flow: Workflow[Any],
    msg: ConsumerRecord[Any, Any],
    *,
    decode: Callable[[bytes | None], Any] = decode_json,
) -> FluxResult:
    """Run (or resume) the message's run; return once it is finished, failed or suspended."""
    return await engine.execute(flow, decode(msg.value), id=run_id_of(msg))


async def outcome(
    engine: FluxEngine,
    flow: Workflow[Any],
    msg: ConsumerRecord[Any, Any],
    decode: Callable[[bytes | None], Any],
) -> FluxResult | Exception:
    """The message's run, or the error that makes the message a poison one. Raises the
    errors that are not about the message."""
    try:
        # `decode` is a function of the message alone: whatever it raises, the message
        # would make it raise again.
        run_id, value = run_id_of(msg), decode(msg.value)
    except Exception as exc:
        return exc
    try:
        return await engine.execute(flow, value, id=run_id)
    except MESSAGE_ERRORS as exc:
        return exc


def dead_letter_headers(
    msg: ConsumerRecord[Any, Any], error: Exception, workflow: str
) -> list[tuple[str, bytes]]:
    """The message's own headers, then why it was dead-lettered and where it came from."""
    message = str(error)[:_MAX_ERROR_HEADER]
    added = {
        HEADER_ERROR_TYPE: type(error).__qualname__,
        HEADER_ERROR_MESSAGE: message,
        HEADER_SOURCE_TOPIC: msg.topic,
        HEADER_SOURCE_PARTITION: str(msg.partition),
        HEADER_SOURCE_OFFSET: str(msg.offset),
        HEADER_WORKFLOW: workflow,
    }
    own: Sequence[tuple[str, bytes]] = msg.headers or ()
    return [*own, *((k, v.encode("utf-8", "backslashreplace")) for k, v in added.items())]


class _DeadLetterTopic:
    """Produces a poison message, unchanged, to a topic, and waits for the broker's ack."""

    def __init__(
        self, topic: str, workflow: str, consumer: AIOKafkaConsumer, producer: AIOKafkaProducer | None
    ) -> None:
        self.topic, self.workflow = topic, workflow
        # Built now, so that unreadable settings fail at once; started at the first poison
        # message, so that a consumer that never meets one never connects a producer.
        self.owned = producer is None
        self.producer = _producer_like(consumer, topic) if producer is None else producer
        self.started = not self.owned

    async def __call__(self, msg: ConsumerRecord[Any, Any], error: Exception) -> None:
        for name, part in (("key", msg.key), ("value", msg.value)):
            if part is not None and not isinstance(part, bytes):
                raise TypeError(
                    f"dead letter topic '{self.topic}': the {name} of {where(msg)} is "
                    f"{type(part).__name__}, not bytes; consume without a {name}_deserializer "
                    "(use decode=) or pass a callable dead_letter"
                )
        if not self.started:
            await self.producer.start()
            self.started = True
        headers = dead_letter_headers(msg, error, self.workflow)
        await self.producer.send_and_wait(self.topic, msg.value, key=msg.key, headers=headers)

    async def close(self) -> None:
        if self.owned:  # a producer never started is stopped too, or aiokafka warns at exit
            await self.producer.stop()


def _producer_like(consumer: AIOKafkaConsumer, topic: str) -> AIOKafkaProducer:
    """A producer that reaches the consumer's cluster the way the consumer does. aiokafka
    has no public accessor for a client's settings, so they are read from its client."""
    client = getattr(consumer, "_client", None)
    names = ("bootstrap_servers", "security_protocol", "ssl_context", "sasl_mechanism",
             "sasl_plain_username", "sasl_plain_password", "sasl_kerberos_service_name",
             "sasl_kerberos_domain_name", "sasl_oauth_token_provider")  # fmt: skip
    if client is None or not all(hasattr(client, f"_{n}") for n in names):
        raise TypeError(
            f"dead_letter topic '{topic}': cannot read this consumer's connection settings; pass producer="
        )
    settings = {n: getattr(client, f"_{n}") for n in names}
    return AIOKafkaProducer(**settings, acks="all")


def _dead_letter_sink(
    dead_letter: str | DeadLetterHandler | None,
    producer: AIOKafkaProducer | None,
    consumer: AIOKafkaConsumer,
    workflow: str,
) -> Callable[[ConsumerRecord[Any, Any], Exception], Awaitable[Any]] | None:
    if dead_letter is None or callable(dead_letter):
        if producer is not None:
            raise ValueError(f"workflow '{workflow}': producer= is for a dead_letter topic name")
        if dead_letter is None:
            return None
        handler = dead_letter

        async def call(msg: ConsumerRecord[Any, Any], error: Exception) -> None:
            result = handler(msg, error)
            if inspect.isawaitable(result):
                await result

        return call
    if not isinstance(dead_letter, str) or not dead_letter:
        error = ValueError if isinstance(dead_letter, str) else TypeError
        raise error(
            f"workflow '{workflow}': dead_letter must be a non-empty topic name or a callable "
            f"(message, error), got {dead_letter!r}"
        )
    if dead_letter in consumer.subscription():
        raise ValueError(
            f"workflow '{workflow}': dead_letter topic '{dead_letter}' is one this consumer reads: "
            "its poison messages would come back forever"
        )
    return _DeadLetterTopic(dead_letter, workflow, consumer, producer)


async def consume(
    engine: FluxEngine,
    flow: Workflow[Any],
    consumer: AIOKafkaConsumer,
    *,
    decode: Callable[[bytes | None], Any] = decode_json,
    on_result: Callable[[ConsumerRecord[Any, Any], FluxResult], Any] | None = None,
    max_messages: int | None = None,
    dead_letter: str | DeadLetterHandler | None = None,
    producer: AIOKafkaProducer | None = None,
) -> int:
    """Hand every message of a started consumer (with `enable_auto_commit=False`) to Flux,
    committing each offset after its run is stored. Returns the number of messages handled
    (dead-lettered ones included).

    `dead_letter`: where a poison message goes before its offset is committed: a topic name
    (the message is produced there unchanged, with the `flux-*` headers above added; through
    `producer`, or else a producer of consume's own with the consumer's connection settings)
    or a callable `(message, error)`, sync or async. Without it a poison message is logged
    and its error raised, uncommitted. An error from the dead-letter destination, or any
    error not about the message (a storage that is down), propagates without committing:
    the message will come again.
    """
    sink = _dead_letter_sink(dead_letter, producer, consumer, flow.name)
    handled = 0
    try:
        async for msg in consumer:
            result = await outcome(engine, flow, msg, decode)
            if isinstance(result, Exception):
                await _poison(engine, flow, msg, result, sink, dead_letter)
            await consumer.commit({TopicPartition(msg.topic, msg.partition): msg.offset + 1})
            handled += 1
            if on_result is not None and not isinstance(result, Exception):
                on_result(msg, result)
            if max_messages is not None and handled >= max_messages:
                break
    finally:
        if isinstance(sink, _DeadLetterTopic):
            await sink.close()
    return handled


async def _poison(
    engine: FluxEngine,
    flow: Workflow[Any],
    msg: ConsumerRecord[Any, Any],
    error: Exception,
    sink: Callable[[ConsumerRecord[Any, Any], Exception], Awaitable[Any]] | None,
    dead_letter: object,
) -> None:
    why = f"{type(error).__name__}: {error}"
    if sink is None:
        engine.logger.error(
            f"the message at {where(msg)} can never become a run ({why}); its offset is not "
            "committed, so its partition waits at it and it will come again: consume with "
            "dead_letter= to set such messages aside",
            workflow=flow.name,
            exc=error,
        )
        raise error
    await sink(msg, error)
    to = f"topic '{dead_letter}'" if isinstance(dead_letter, str) else "the dead_letter callable"
    engine.logger.warn(f"the message at {where(msg)} went to {to} ({why})", workflow=flow.name)


__all__ = [
    "HEADER_ERROR_MESSAGE",
    "HEADER_ERROR_TYPE",
    "HEADER_SOURCE_OFFSET",
    "HEADER_SOURCE_PARTITION",
    "HEADER_SOURCE_TOPIC",
    "HEADER_WORKFLOW",
    "MESSAGE_ERRORS",
    "DeadLetterHandler",
    "consume",
    "decode_json",
    "handle",
    "run_id_of",
]
