"""The SSE endpoint, driven at the ASGI level: a test client would wait for the
end of a stream that never ends."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from tests.viewer.factory import completed_run, ndjson
from viewer import sse
from viewer.server import create_app
from viewer.store import Change

DEADLINE = 10.0

Client = Callable[[], Awaitable[str]]


def scope(query: str) -> dict[str, Any]:
    return {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": "/events",
        "raw_path": b"/events",
        "query_string": query.encode(),
        "root_path": "",
        "headers": [(b"host", b"127.0.0.1:4280")],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 4280),
    }


def stream(trace: Path, query: str, body: Callable[[Any, Client], Awaitable[None]]) -> None:
    """Open /events?query, run ``body(app, next_message)``, then disconnect and
    check that the stream ended and unsubscribed."""

    async def main() -> None:
        app = create_app(trace)
        hub = app.state.hub
        gone = asyncio.Event()
        requested = False
        sent: asyncio.Queue[dict[str, Any]] = asyncio.Queue()

        async def receive() -> dict[str, Any]:
            nonlocal requested
            if not requested:
                requested = True
                return {"type": "http.request", "body": b"", "more_body": False}
            await gone.wait()
            return {"type": "http.disconnect"}

        async def send(message: dict[str, Any]) -> None:
            await sent.put(message)

        async def next_message() -> str:
            message = await asyncio.wait_for(sent.get(), DEADLINE)
            return bytes(message.get("body", b"")).decode()

        task = asyncio.create_task(app(scope(query), receive, send))
        start = await asyncio.wait_for(sent.get(), DEADLINE)
        assert start["status"] == 200
        assert dict(start["headers"])[b"content-type"].startswith(b"text/event-stream")
        assert await next_message() == "retry: 1000\n\n"
        assert len(hub) == 1
        await body(app, next_message)
        gone.set()
        await asyncio.wait_for(task, DEADLINE)
        assert len(hub) == 0

    asyncio.run(main())


def test_a_page_that_missed_changes_is_told_at_once(trace: Path) -> None:
    async def body(app: Any, next_message: Client) -> None:
        assert await next_message() == "event: runs\ndata: missed\n\n"

    stream(trace, "since=-1", body)


def test_changes_and_resets_are_pushed(trace: Path) -> None:
    async def body(app: Any, next_message: Client) -> None:
        store = app.state.store
        store._publish(Change(store.version + 1, frozenset({"R"})))
        assert await next_message() == "event: runs\ndata: changed\n\n"
        store._publish(Change(store.version + 1, frozenset(), reset=True))
        assert await next_message() == "event: reset\ndata: reset\n\n"

    stream(trace, "since=0", body)


def test_a_run_page_hears_only_about_its_run(trace: Path) -> None:
    trace.parent.mkdir(parents=True)
    trace.write_bytes(ndjson(completed_run("R")))

    async def body(app: Any, next_message: Client) -> None:
        store = app.state.store
        store._publish(Change(store.version + 1, frozenset({"OTHER"})))
        await asyncio.sleep(0)  # let the stream see it (and stay silent)
        await store.sync()  # reads run R from the file
        assert await next_message() == "event: run\ndata: changed\n\n"
        assert store.index.runs["R"].status == "completed"

    stream(trace, "run=R&since=0", body)


def test_an_idle_stream_sends_keepalives(trace: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sse, "KEEPALIVE_S", 0.01)

    async def body(app: Any, next_message: Client) -> None:
        assert await next_message() == ": keepalive\n\n"

    stream(trace, "since=0", body)


def test_shutdown_ends_open_streams(trace: Path) -> None:
    async def body(app: Any, next_message: Client) -> None:
        app.state.hub.close()
        assert await next_message() == ""  # the closing empty body

    stream(trace, "since=0", body)
