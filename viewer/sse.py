"""The server-sent events endpoint: tells open pages that they should refresh.

Messages carry no HTML: a page re-fetches the fragment it shows (with its own
filters, page and replay position), so one notification serves every view.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from starlette.requests import Request
from starlette.responses import StreamingResponse

from .hub import Hub, Subscriber
from .store import TraceStore

#: A comment line this often keeps proxies from closing an idle stream and
#: lets the server notice a browser that went away without saying so.
KEEPALIVE_S = 15.0


async def events(request: Request) -> StreamingResponse:
    hub: Hub = request.app.state.hub
    run_id = request.query_params.get("run")
    try:
        since = int(request.query_params.get("since", ""))
    except ValueError:
        since = -1
    # Subscribe before comparing versions: a change between the two is then
    # both reported as missed and queued, never lost.
    sub = hub.subscribe()
    missed = since != _version(request)
    return StreamingResponse(
        _stream(hub, sub, run_id, missed),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


def _version(request: Request) -> int:
    """The trace's version; with a storage, one that moves with it and every trace too."""
    if request.app.state.storage is not None:
        from .stored_pages import live_version

        return live_version(request)
    store: TraceStore = request.app.state.store
    return store.version


def _message(event: str, data: str) -> str:
    return f"event: {event}\ndata: {data}\n\n"


async def _stream(hub: Hub, sub: Subscriber, run_id: str | None, missed: bool) -> AsyncIterator[str]:
    topic = "runs" if run_id is None else "run"
    try:
        yield "retry: 1000\n\n"
        if missed:
            yield _message(topic, "missed")
        while True:
            pending = await sub.next(KEEPALIVE_S)
            if sub.closed:
                break
            if not pending:
                yield ": keepalive\n\n"
            elif pending.reset:
                yield _message("reset", "reset")
            elif run_id is None or pending.touches(run_id):
                yield _message(topic, "changed")
    finally:
        hub.unsubscribe(sub)
