"""Flux in a Starlette or FastAPI application: one engine for the app's lifetime.

```python
app = Starlette(routes=..., lifespan=flux_lifespan(storage="sqlite:///./data/flux.db",
                                                     trace_path="./.flux/trace.ndjson",
                                                     flows=[order_flow]))

async def start(request: Request) -> JSONResponse:
    result = await get_flux(request).execute(order_flow, await request.json())
    ...
```

At start-up the lifespan builds the engine from `FluxSettings` (given, or as keyword
arguments), recovers the runs of `flows` that a dead process left running, and puts the
engine on `app.state.flux`; at shutdown it closes it. The engine runs on the application's
event loop: use its async methods (`await engine.execute(...)`) in handlers.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

try:
    from starlette.requests import HTTPConnection
except ModuleNotFoundError as exc:
    raise ModuleNotFoundError(
        "flux.integrations.starlette needs Starlette: pip install starlette (or fastapi)", name=exc.name
    ) from exc

from ..builder import Workflow
from ..engine import FluxEngine
from ..errors import FluxError
from ..logger import FluxLogger
from ..trace import FluxTraceSink
from .settings import FluxSettings

__all__ = ["FluxSettings", "flux_lifespan", "get_flux"]

_log = logging.getLogger("flux")

#: Seconds the worker task of `flux_lifespan(work=True)` has to finish its run at shutdown.
_WORK_GRACE = 10.0

#: What `flux_lifespan` returns: what `Starlette(lifespan=...)` and `FastAPI(lifespan=...)` take.
Lifespan = Callable[[Any], AbstractAsyncContextManager[Any]]


def flux_lifespan(
    settings: FluxSettings | None = None,
    *,
    flows: Iterable[Workflow[Any]] = (),
    trace: FluxTraceSink | Iterable[FluxTraceSink] | None = None,
    logger: FluxLogger | None = None,
    on: Mapping[str, Callable[..., Any]] | None = None,
    lifespan: Lifespan | None = None,
    work: bool = False,
    **options: Any,
) -> Lifespan:
    """A lifespan that gives the application one `FluxEngine`, on `app.state.flux`.

    `options` are `FluxSettings` fields (`storage=`, `trace_path=`, `default_retries=`, ...),
    applied over `settings`. `trace`, `logger` and `on` go to the engine. `lifespan` is the
    application's own lifespan, entered once the engine is ready (so it can use it) and
    left before the engine closes; whatever state it yields is the application's state.

    With `work=True` the application is also a worker: a task on its event loop claims the
    waiting runs of `flows` (pending, orphaned, and suspended ones whose wake time or deadline
    has come) and executes them, as `engine.work` does, until shutdown; the run in hand is
    finished first (for up to `_WORK_GRACE` seconds, then cancelled).
    """
    settings = (settings or FluxSettings()).replace(**options) if options else (settings or FluxSettings())
    flows = tuple(flows)
    for flow in flows:
        if not isinstance(flow, Workflow):
            raise FluxError(
                f"flux_lifespan(flows=...): expected workflows from create_workflow, got {flow!r}"
            )
    if work and not flows:
        raise FluxError("flux_lifespan(work=True): pass the workflows to work on as flows=[...]")

    @asynccontextmanager
    async def flux_app_lifespan(app: Any) -> AsyncIterator[Any]:
        engine = settings.create_engine(trace=trace, logger=logger, on=on)
        recovery: asyncio.Task[None] | None = None
        worker: asyncio.Task[int] | None = None
        stopping = False
        try:
            if settings.recover_on_startup:
                if settings.recover_in_background:
                    recovery = asyncio.create_task(_recover(engine, flows), name="flux-recover")
                else:
                    await _recover(engine, flows)
            app.state.flux = engine
            if work:
                worker = asyncio.create_task(engine.work(flows, stop=lambda: stopping), name="flux-worker")
            if lifespan is None:
                yield None
            else:
                async with lifespan(app) as state:
                    yield state
        finally:
            stopping = True
            if worker is not None:
                try:
                    await asyncio.wait_for(asyncio.shield(worker), _WORK_GRACE)
                except asyncio.TimeoutError:
                    worker.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await worker
                except Exception:
                    _log.exception("flux: the application's worker task stopped on an error")
            if recovery is not None:
                recovery.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await recovery
            app.state.flux = None
            await engine.close()

    return flux_app_lifespan


async def _recover(engine: FluxEngine, flows: tuple[Workflow[Any], ...]) -> None:
    if not flows:
        if engine.storage.durable:
            _log.warning(
                "flux: recover_on_startup is on but flux_lifespan got no flows=[...]: "
                "runs left running by a stopped process are not recovered"
            )
        return
    try:
        results = await engine.recover(flows)
    except Exception:
        # The application still starts: its other routes work, and the next start retries.
        _log.exception("flux: recovering the runs left running failed")
        return
    if results:
        counts: dict[str, int] = {}
        for result in results:
            counts[result.status.value] = counts.get(result.status.value, 0) + 1
        summary = ", ".join(f"{n} {status}" for status, n in sorted(counts.items()))
        _log.info("flux: recovered %d run(s) left running: %s", len(results), summary)


def get_flux(connection: HTTPConnection) -> FluxEngine:
    """The application's engine, from a request (or websocket) of an app whose lifespan is
    `flux_lifespan(...)`. Also a FastAPI dependency: `Depends(get_flux)`."""
    engine = getattr(connection.app.state, "flux", None)
    if not isinstance(engine, FluxEngine):
        raise FluxError(
            "no FluxEngine on app.state.flux: create the application with lifespan=flux_lifespan(...) "
            "(and, in tests, use TestClient as a context manager so that the lifespan runs)"
        )
    return engine
