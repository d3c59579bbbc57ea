"""Closing connections that hold a socket without asking for anything.

uvicorn closes a keep-alive connection idle between requests, but not one that
never sends a request, nor one that sends half of one (a byte every few
seconds keeps it open for good), nor one that sends half of a second request.
Each of those holds a socket and a file descriptor; enough of them and the
dashboard stops answering. ``deadline_protocol`` gives every connection a
deadline to finish sending a request's headers, from when it opens or when its
previous response ended. Responses themselves have none: an SSE stream stays
open as long as the page that reads it.
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.auto import AutoHTTPProtocol

#: Seconds a connection may be idle, or take to send a request's headers.
REQUEST_TIMEOUT_S = 30.0


def deadline_protocol(timeout: float = REQUEST_TIMEOUT_S) -> type[asyncio.Protocol]:
    """uvicorn's HTTP protocol (h11 or httptools) with the request deadline."""
    base: Any = AutoHTTPProtocol

    class DeadlineProtocol(base):  # type: ignore[misc]
        _deadline: asyncio.TimerHandle | None = None

        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            super().connection_made(transport)
            self._arm()

        def data_received(self, data: bytes) -> None:
            super().data_received(data)
            if self._in_request():
                self._disarm()
            elif self._deadline is None:
                # The first bytes of a next request (uvicorn dropped its own
                # keep-alive timer on them): from now, the headers are due.
                self._arm()

        def on_response_complete(self) -> None:
            super().on_response_complete()
            if not self._in_request():
                self._arm()

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm()
            super().connection_lost(exc)

        def _in_request(self) -> bool:
            cycle = self.cycle
            return cycle is not None and not cycle.response_complete

        def _arm(self) -> None:
            self._disarm()
            self._deadline = self.loop.call_later(timeout, self._expire)

        def _disarm(self) -> None:
            if self._deadline is not None:
                self._deadline.cancel()
                self._deadline = None

        def _expire(self) -> None:
            self._deadline = None
            if not self._in_request() and not self.transport.is_closing():
                self.transport.close()

    return DeadlineProtocol
