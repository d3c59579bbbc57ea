"""``flux dev``: the Starlette app and the uvicorn server that runs it."""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import socket
import sys
import webbrowser
from collections import OrderedDict
from collections.abc import AsyncIterator, Iterable, Sequence
from pathlib import Path
from typing import Any

try:
    import uvicorn
    from starlette.applications import Starlette
    from starlette.middleware import Middleware
    from starlette.routing import BaseRoute, Mount, Route
    from starlette.staticfiles import StaticFiles
    from starlette.types import ASGIApp, Message, Receive, Scope, Send
except ImportError as exc:  # pragma: no cover - depends on the install
    raise ImportError("flux dev needs the viewer extra: pip install 'gravito-flux[viewer]'") from exc

from . import graphtab, pages, sse, stored_pages
from .connections import REQUEST_TIMEOUT_S, deadline_protocol
from .hosts import HostCheck, allowed_hosts, is_loopback
from .hub import Hub
from .query import RunOrder
from .storage_live import StorageWatch
from .store import TraceStore
from .stored import HolderCheck
from .stuck import DEFAULT_STUCK_AFTER_S
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


def _install_actions(app: Starlette) -> None:
    """The dashboard's actions (``viewer.actions``: retry, resume, cancel, signal, bulk; their
    CSRF and Origin checks), when that module is part of this build: it wires its routes,
    middleware and template helpers into ``app`` itself, from ``app.state``."""
    try:
        actions = importlib.import_module(f"{__package__}.actions")
    except ModuleNotFoundError as exc:
        if exc.name != f"{__package__}.actions":
            raise
        return
    install = getattr(actions, "install_actions", None)
    if install is not None:
        install(app)
    else:  # only routes: before the run page's catch-all path
        app.router.routes[:0] = list(actions.action_routes())


def storage_url(storage: Any) -> str:
    """The URL a storage was opened from, for following its changes (``viewer.storage_live``)."""
    path = getattr(storage, "path", None)
    if path is not None:
        return f"sqlite:///{Path(path).resolve()}"
    url = getattr(storage, "url", None)
    return url if isinstance(url, str) else "memory://"


def storage_label(url: str) -> str:
    """What the top bar names: the URL without a password."""
    scheme, sep, rest = url.partition("://")
    creds, at, host = rest.rpartition("@")
    return f"{scheme}{sep}{creds.partition(':')[0]}@{host}" if at else url


def create_app(
    trace: Path | Sequence[Path] | None,
    hosts: Iterable[str] | None = None,
    *,
    storage: Any = None,
    workflows: dict[str, Any] | None = None,
    read_only: bool = False,
    stuck_after: float = DEFAULT_STUCK_AFTER_S,
    trace_paths: Sequence[Path] | None = None,
) -> Starlette:
    """The dashboard for the trace at ``trace``; it need not exist yet.

    ``hosts``, the Host names it answers (see ``viewer.hosts``), guards against
    DNS rebinding, which would let a web page read the trace through the
    browser; it defaults to loopback names only.

    With ``storage`` (a ``WorkflowStorage``), the runs are those stored there, live, and
    ``trace`` may be several files (or none): each run's page adds the timeline of the
    first that holds it. ``workflows`` (name -> ``Workflow``) are the definitions the
    actions may run; ``read_only`` refuses every action. ``trace_paths``, if given, are
    the trace files instead of ``trace``.
    """
    if trace_paths is not None:
        trace = list(trace_paths)
    if trace is None:
        paths: list[Path] = []
    elif isinstance(trace, (str, Path)):
        paths = [Path(trace)]
    else:
        paths = [Path(p) for p in trace]
    if storage is None and len(paths) != 1:
        raise ValueError("flux dev without --storage reads exactly one trace file")
    stores = [TraceStore(p) for p in paths]
    hub = Hub()
    for store in stores:
        store.listeners.append(hub.publish)
    url = storage_url(storage) if storage is not None else None
    watch = StorageWatch(url, hub) if url is not None else None

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        stop = asyncio.Event()
        tasks = [asyncio.create_task(tail(store, stop)) for store in stores]
        if watch is not None:
            tasks.append(asyncio.create_task(watch.run(stop)))
        try:
            yield
        finally:
            stop.set()
            hub.close()
            actions = getattr(app.state, "actions", None)  # viewer.actions, with --storage
            if actions is not None:
                await actions.close()
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError):
                    await task

    run_routes: list[BaseRoute] = [
        Route("/runs/{run_id:path}/header", pages.run_header),
        Route("/runs/{run_id:path}/timeline", pages.run_timeline),
        Route("/runs/{run_id:path}/step", pages.run_step),
        Route("/runs/{run_id:path}/graph.json", graphtab.run_graph_json),  # the graph tab
        Route("/runs/{run_id:path}/graph", graphtab.run_graph_tab),  # the graph tab
    ]
    routes: list[BaseRoute]
    if storage is None:
        routes = [
            Route("/", pages.runs_page),
            Route("/fragments/runs", pages.runs_fragment),
            Route("/events", sse.events),
            *run_routes,
            Route("/runs/{run_id:path}/live", pages.run_live),
            Route("/runs/{run_id:path}", pages.run_page),
        ]
    else:
        routes = [
            Route("/", stored_pages.runs_page),
            Route("/fragments/runs", stored_pages.runs_fragment),
            Route("/stuck", stored_pages.stuck_page),
            Route("/fragments/stuck", stored_pages.stuck_fragment),
            Route("/events", sse.events),
            *run_routes,
            Route("/runs/{run_id:path}/live", stored_pages.run_live),
            Route("/runs/{run_id:path}", stored_pages.run_page),
        ]
    routes.append(Mount("/static", StaticFiles(directory=asset_dir("static")), name="static"))
    allowed = frozenset(hosts) if hosts is not None else allowed_hosts("127.0.0.1")
    middleware = [Middleware(HostCheck, allowed=allowed)]
    app = _App(routes=routes, middleware=middleware, lifespan=lifespan)
    app.state.hosts = allowed
    app.state.store = stores[0] if stores else None
    app.state.stores = stores
    app.state.trace_paths = paths
    app.state.storage = storage
    app.state.storage_label = storage_label(url) if url is not None else ""
    app.state.watch = watch
    app.state.workflows = dict(workflows or {})
    app.state.read_only = read_only
    app.state.stuck_after = stuck_after
    app.state.holder_check = HolderCheck()
    app.state.hub = hub
    app.state.order = RunOrder()
    app.state.views = OrderedDict()
    app.state.headlines = OrderedDict()
    app.state.rows = OrderedDict()
    app.state.templates = make_env()
    # --- dashboard actions (viewer/actions.py): routes, CSRF/Origin middleware, template helpers
    _install_actions(app)
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


async def _serve(server: _Server, host: str, open_browser: bool, storage: Any = None) -> None:
    try:
        await _serve_until_done(server, host, open_browser)
    finally:
        if storage is not None:
            await storage.close()


async def _serve_until_done(server: _Server, host: str, open_browser: bool) -> None:
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
    *,
    storage: Any = None,
    traces: Sequence[Path] | None = None,
    workflows: dict[str, Any] | None = None,
    read_only: bool = False,
    stuck_after: float = DEFAULT_STUCK_AFTER_S,
) -> int:
    """Serve the dashboard until interrupted; blocking. Returns an exit code.

    ``allow_hosts``: Host names to answer besides the bound address, loopback
    and, off loopback, the machine's own names and addresses. ``storage`` (an
    open ``WorkflowStorage``, closed here at the end) shows the runs stored there;
    ``traces`` are then the trace files to join (``trace`` alone otherwise).
    """
    paths = [Path(p) for p in traces] if traces is not None else [Path(trace)]
    workflows = dict(workflows or {})
    if demo:
        from . import demo as demo_module

        try:
            demo_trace = demo_module.run_demo(Path(trace))  # the demo runs on files of its own
        except NotImplementedError:
            print("flux dev: --demo is not available in this build", file=sys.stderr)
            return 2
        # The demo's own SQLite file, so that its suspended run can be approved from the page.
        from flux.storage import open_storage

        paths = [demo_trace]
        storage = open_storage(demo_module.storage_url(demo_trace.parent), create=False)
        workflows = {**demo_module.loaded_workflows(), **workflows}
    if not is_loopback(host):
        _warn_exposed(host)
    if storage is None:
        app = create_app(paths[0], hosts=allowed_hosts(host, allow_hosts))
    else:
        app = create_app(
            paths,
            hosts=allowed_hosts(host, allow_hosts),
            storage=storage,
            workflows=workflows,
            read_only=read_only,
            stuck_after=stuck_after,
        )
    server = make_server(app, host, port)
    try:
        asyncio.run(_serve(server, host, open_browser, storage))
    except KeyboardInterrupt:
        return 0
    if server.exit_code:
        return server.exit_code
    return 0 if server.started else 1
