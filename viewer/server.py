"""``flux dev``: the Starlette app and the uvicorn server that runs it."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import sys
import webbrowser
from collections import OrderedDict
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

try:
    import uvicorn
    from starlette.applications import Starlette
    from starlette.middleware import Middleware
    from starlette.routing import Mount, Route
    from starlette.staticfiles import StaticFiles
    from starlette.types import ASGIApp, Message, Receive, Scope, Send
except ImportError as exc:  # pragma: no cover - depends on the install
    raise ImportError("flux dev needs the viewer extra: pip install 'gravito-flux[viewer]'") from exc

from . import pages, sse
from .actions import install_actions
from .connections import REQUEST_TIMEOUT_S, deadline_protocol
from .hosts import HostCheck, allowed_hosts, is_loopback
from .hub import Hub
from .query import RunOrder
from .store import TraceStore
from .tailer import tail
from .templating import asset_dir, make_env

__all__ = ["create_app", "is_loopback", "run"]

# Nothing from the trace can run as script even if an escape were missed:
# scripts only from our own static files. Styles allow inline attributes for
# the timeline's bar positions, which are numbers the server formats.
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; connect-src 'self'; object-src 'none'; base-uri 'none'; "
    "form-action 'self'; frame-ancestors 'none'"
)
SECURITY_HEADERS = [
    (b"content-security-policy", CSP.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-frame-options", b"DENY"),
]


class SecurityHeaders:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = list(message.get("headers", [])) + SECURITY_HEADERS
            await send(message)

        await self.app(scope, receive, send_with_headers)


class _App(Starlette):
    def build_middleware_stack(self) -> ASGIApp:
        # Outside Starlette's own error middleware, so that a 500 carries the
        # security headers too.
        return SecurityHeaders(super().build_middleware_stack())


def create_app(
    trace: Path,
    hosts: Iterable[str] | None = None,
    *,
    storage: Any = None,
    workflows: Mapping[str, Any] | None = None,
    read_only: bool = False,
    trace_paths: Sequence[Path] | None = None,
) -> Starlette:
    """The dashboard for the trace at ``trace``; it need not exist yet.

    ``hosts``, the Host names it answers (see ``viewer.hosts``), guards against
    DNS rebinding, which would let a web page read the trace through the
    browser; it defaults to loopback names only.
    """
    store = TraceStore(Path(trace))
    hub = Hub()
    store.listeners.append(hub.publish)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        stop = asyncio.Event()
        task = asyncio.create_task(tail(store, stop))
        try:
            yield
        finally:
            stop.set()
            hub.close()
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    routes = [
        Route("/", pages.runs_page),
        Route("/fragments/runs", pages.runs_fragment),
        Route("/events", sse.events),
        Route("/runs/{run_id:path}/header", pages.run_header),
        Route("/runs/{run_id:path}/timeline", pages.run_timeline),
        Route("/runs/{run_id:path}/step", pages.run_step),
        Route("/runs/{run_id:path}/live", pages.run_live),
        Route("/runs/{run_id:path}", pages.run_page),
        Mount("/static", StaticFiles(directory=asset_dir("static")), name="static"),
    ]
    allowed = frozenset(hosts) if hosts is not None else allowed_hosts("127.0.0.1")
    middleware = [Middleware(HostCheck, allowed=allowed)]
    app = _App(routes=routes, middleware=middleware, lifespan=lifespan)
    app.state.hosts = allowed
    app.state.storage = storage
    app.state.workflows = dict(workflows or {})
    app.state.read_only = read_only
    app.state.trace_paths = [Path(p) for p in trace_paths] if trace_paths is not None else [Path(trace)]
    app.state.store = store
    app.state.hub = hub
    app.state.order = RunOrder()
    app.state.views = OrderedDict()
    app.state.headlines = OrderedDict()
    app.state.rows = OrderedDict()
    app.state.templates = make_env()
    # --- dashboard actions (h/actions): their POST routes, the session/CSRF cookie inside
    # the Host check, and what the templates ask (viewer/actions.py, viewer/csrf.py).
    install_actions(app)
    # --- end of dashboard actions
    return app


class _Server(uvicorn.Server):
    """Says when it listens, and ends the open SSE streams first on shutdown,
    which would otherwise hold it up until the graceful timeout."""

    def __init__(self, config: uvicorn.Config, hub: Hub) -> None:
        super().__init__(config)
        self.hub = hub
        self.listening = asyncio.Event()
        self.port = 0
        self.exit_code = 0

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        try:
            await super().startup(sockets)
        except SystemExit as exc:
            # uvicorn exits this way when it cannot bind, after logging why;
            # raised inside a task, it would also print a traceback.
            self.exit_code = exc.code if isinstance(exc.code, int) else 1
            self.should_exit = True
            if not self.lifespan.should_exit:
                await self.lifespan.shutdown()
            return
        if self.started:
            # The port now: with --port 0 the system picked it.
            self.port = self.servers[0].sockets[0].getsockname()[1]
            self.listening.set()

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        self.hub.close()
        await super().shutdown(sockets)


def _warn_exposed(host: str) -> None:
    bar = "!" * 72
    print(
        f"{bar}\n  WARNING: flux dev is listening on {host}, not on loopback.\n"
        "  Anyone who can reach this address can read every run's input, data and\n"
        "  errors from the trace. It has no authentication. Use --host 127.0.0.1\n"
        f"  unless you mean it.\n{bar}",
        file=sys.stderr,
        flush=True,
    )


async def _serve(server: _Server, host: str, open_browser: bool) -> None:
    task = asyncio.create_task(server.serve())
    listening = asyncio.create_task(server.listening.wait())
    await asyncio.wait({task, listening}, return_when=asyncio.FIRST_COMPLETED)
    listening.cancel()
    if server.started:
        shown = f"[{host}]" if ":" in host else host
        url = f"http://{shown}:{server.port}/"
        print(f"flux dev: serving {url}", flush=True)
        if open_browser:
            webbrowser.open(url)
    await task


def make_server(app: Starlette, host: str, port: int, request_timeout: float = REQUEST_TIMEOUT_S) -> _Server:
    """A uvicorn server for ``app``; connections idle or half-sent for
    ``request_timeout`` seconds are closed (``viewer.connections``)."""
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level="warning",
        access_log=False,
        timeout_graceful_shutdown=2,
        timeout_keep_alive=max(1, int(request_timeout)),
        http=deadline_protocol(request_timeout),
        lifespan="on",
    )
    return _Server(config, app.state.hub)


def run(
    trace: Path,
    host: str = "127.0.0.1",
    port: int = 4280,
    demo: bool = False,
    open_browser: bool = False,
    allow_hosts: Sequence[str] = (),
) -> int:
    """Serve the dashboard until interrupted; blocking. Returns an exit code.

    ``allow_hosts``: Host names to answer besides the bound address, loopback
    and, off loopback, the machine's own names and addresses.
    """
    trace = Path(trace)
    if demo:
        from .demo import run_demo

        try:
            trace = run_demo(trace)  # the demo runs on files of its own
        except NotImplementedError:
            print("flux dev: --demo is not available in this build", file=sys.stderr)
            return 2
    if not is_loopback(host):
        _warn_exposed(host)
    app = create_app(trace, hosts=allowed_hosts(host, allow_hosts))
    server = make_server(app, host, port)
    try:
        asyncio.run(_serve(server, host, open_browser))
    except KeyboardInterrupt:
        return 0
    if server.exit_code:
        return server.exit_code
    return 0 if server.started else 1
