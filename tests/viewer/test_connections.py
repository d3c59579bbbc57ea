"""Connections idle or half-sent are closed; requests and SSE streams are not.

A real uvicorn on a real socket, with the deadline shortened from 30 s so that
the test does not wait that long (``make_server``'s ``request_timeout``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path

from tests.viewer.factory import completed_run, ndjson
from viewer.connections import REQUEST_TIMEOUT_S
from viewer.server import create_app, make_server

TIMEOUT = 0.5
#: A deadline to fail on, not a performance threshold.
GIVE_UP_S = 20.0


def with_server(trace: Path, body: Callable[[int], Awaitable[None]]) -> None:
    async def main() -> None:
        server = make_server(create_app(trace), "127.0.0.1", 0, request_timeout=TIMEOUT)
        task = asyncio.create_task(server.serve())
        await asyncio.wait_for(server.listening.wait(), GIVE_UP_S)
        try:
            await body(server.port)
        finally:
            server.should_exit = True
            await asyncio.wait_for(task, GIVE_UP_S)

    asyncio.run(main())


async def closed_by_server(reader: asyncio.StreamReader) -> bytes:
    """Everything the server sends until it closes the connection."""
    return await asyncio.wait_for(reader.read(), GIVE_UP_S)


def append(path: Path, data: bytes) -> None:
    with open(path, "ab") as f:
        f.write(data)


def test_the_deadline_is_thirty_seconds() -> None:
    assert REQUEST_TIMEOUT_S == 30.0


def test_a_half_sent_request_is_closed(tmp_path: Path) -> None:
    async def body(port: int) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
        await writer.drain()
        assert await closed_by_server(reader) == b""
        writer.close()

    with_server(tmp_path / "trace.ndjson", body)


def test_a_connection_that_sends_nothing_is_closed(tmp_path: Path) -> None:
    async def body(port: int) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        assert await closed_by_server(reader) == b""
        writer.close()

    with_server(tmp_path / "trace.ndjson", body)


def test_a_second_request_sent_by_halves_is_closed_after_the_first_is_answered(tmp_path: Path) -> None:
    async def body(port: int) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET /static/app.css HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        await writer.drain()
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), GIVE_UP_S)
        assert head.startswith(b"HTTP/1.1 200")
        length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
        await asyncio.wait_for(reader.readexactly(length), GIVE_UP_S)
        # Kept alive; now half of a next request, which stops uvicorn's own
        # keep-alive timer.
        writer.write(b"GET / HTTP/1.1\r\nHo")
        await writer.drain()
        assert await closed_by_server(reader) == b""
        writer.close()

    with_server(tmp_path / "trace.ndjson", body)


def test_an_sse_stream_outlives_the_deadline(tmp_path: Path) -> None:
    trace = tmp_path / "trace.ndjson"
    trace.write_bytes(b"")

    async def body(port: int) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET /events?since=-1 HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        await writer.drain()
        head = await asyncio.wait_for(reader.readuntil(b"retry: 1000\n\n"), GIVE_UP_S)
        assert head.startswith(b"HTTP/1.1 200")
        # Past several deadlines, the stream is still open and still delivers.
        await asyncio.sleep(TIMEOUT * 4)
        await asyncio.to_thread(append, trace, ndjson(completed_run("R")))
        got = await asyncio.wait_for(reader.readuntil(b"data: changed\n\n"), GIVE_UP_S)
        assert b"event: runs" in got
        writer.close()

    with_server(trace, body)
