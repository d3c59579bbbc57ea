"""The dashboard's actions (SPEC §12): retry from a step, resume, cancel and signal a
stored run, and retry or cancel the runs a filter selects.

Each is a POST, refused with 403 (and nothing changed) under ``--read-only``, without the
session's CSRF token or from another origin (``viewer.csrf``). The engine decides: the
dashboard calls ``retry_step``/``signal`` with ``enqueue=True`` (their checks and the stored
change happen in the request, so a refusal is shown at once and a worker may take the run
straight away), then drives the run in this process as a background task through
``resume``: without a worker, the run still goes on. A run a worker holds is not driven
twice: the engine's lease decides who runs it. Every action is written to the trace as a
``workflow:action`` with ``by: "dashboard"``.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import logging
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from flux.builder import Workflow
from flux.engine import FluxEngine
from flux.errors import (
    FluxError,
    InputValidationError,
    RunNotFoundError,
    SerializationError,
    WorkflowVersionError,
)
from flux.events import action_event, timestamp_ms
from flux.records import RunRecord
from flux.trace import JsonFileTraceSink
from flux.versions import adopt_definition

from . import action_rules as rules
from .csrf import FIELD, SessionCSRF, refusal
from .templating import run_url

__all__ = ["Actions", "action_routes", "install_actions"]

_log = logging.getLogger("flux.dev.actions")
BY = "dashboard"
#: Runs the dashboard drives at the same time, at most.
DRIVEN_AT_ONCE = 8


class Refused(Exception):
    """An action that is not done: its HTTP status and the sentence that says why."""

    def __init__(self, status: int, message: str, run_id: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.run_id = run_id


class Actions:
    """The engine the dashboard acts through, built on first use for the app's storage,
    and the runs it drives in the background."""

    def __init__(self, state: Any) -> None:
        self.state = state
        self._engine: FluxEngine | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._slots: asyncio.Semaphore | None = None  # made on the loop that serves
        self._locks: dict[str, asyncio.Lock] = {}
        #: The runs this dashboard is taking forward after an action.
        self.driving: set[str] = set()

    def lock(self, run_id: str) -> asyncio.Lock:
        """One action at a time per run (kept: one small lock per run acted on)."""
        return self._locks.setdefault(run_id, asyncio.Lock())

    @property
    def engine(self) -> FluxEngine:
        if self._engine is None:
            paths: list[Path] = self.state.trace_paths
            sink = JsonFileTraceSink(paths[0]) if paths else None
            self._engine = FluxEngine(storage=self.state.storage, trace=sink)
        return self._engine

    def record(self, run: RunRecord, at: float, action: str, **fields: Any) -> None:
        """Append the ``workflow:action`` for ``run`` as it was before the action, which
        began at ``at``: numbered as its last event then, it sorts ahead of what the engine
        did for it (written once the engine has accepted it: a refused action is none)."""
        sink = self.engine.trace
        if sink is None:
            return
        sink.emit(action_event(run_id=run.id, name=run.name, seq=run.seq, timestamp=timestamp_ms(at),
                               action=action, by=BY, **fields))  # fmt: skip
        # Written now, not within the sink's 100 ms: the page the action redirects to reads
        # the trace as it answers, and shows the action (and what the engine did so far).
        flush = getattr(sink, "flush", None)
        if callable(flush):
            flush()

    def drive(self, flow: Workflow[Any], run_id: str) -> None:
        """Take the run forward in this process, unless another process holds it; at most
        ``DRIVEN_AT_ONCE`` at a time (a bulk retry's others wait, stored and free for a
        worker to take meanwhile)."""
        task = asyncio.get_running_loop().create_task(self._drive(flow, run_id))
        self._tasks.add(task)
        self.driving.add(run_id)
        task.add_done_callback(lambda t: self.driving.discard(run_id))
        task.add_done_callback(self._done)

    async def _drive(self, flow: Workflow[Any], run_id: str) -> None:
        if self._slots is None:
            self._slots = asyncio.Semaphore(DRIVEN_AT_ONCE)
        async with self._slots:
            await self.engine.resume(flow, run_id)

    async def close(self, grace: float = 10.0) -> None:
        """When `flux dev` stops: the runs it drives get `grace` seconds to reach a rest; then
        the engine closes (a run still going is left to its lease, for a worker to finish)."""
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=grace)
        if self._engine is not None:
            await self._engine.close()

    def _done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and (exc := task.exception()) is not None:
            _log.error("flux dev: driving a run after an action failed: %r", exc)

    def offers(self, run: RunRecord) -> rules.RunActions:
        """What the run's page may offer now (a dead holder's run may be resumed at once)."""
        dead = self.engine.leases.dead_holder(run.lease) is not None
        return rules.run_actions(run, time.time(), dead)

    async def idle(self) -> None:
        """Wait until the runs driven in the background have come to rest (for tests)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)


def install_actions(app: Starlette) -> None:
    """Wire the actions into ``app`` (called once by ``viewer.server.create_app``)."""
    app.router.routes[:0] = action_routes()
    app.user_middleware.append(Middleware(SessionCSRF))
    actions = app.state.actions = Actions(app.state)
    app.state.templates.globals["run_actions"] = actions.offers
    app.state.templates.filters["run_seen"] = run_seen


def action_routes() -> list[Route]:
    return [
        Route("/actions/selection", selection, methods=["GET"]),
        Route("/runs/retry", bulk_retry, methods=["POST"]),
        Route("/runs/cancel", bulk_cancel, methods=["POST"]),
        Route("/runs/{run_id:path}/retry", retry, methods=["POST"]),
        Route("/runs/{run_id:path}/resume", resume, methods=["POST"]),
        Route("/runs/{run_id:path}/cancel", cancel, methods=["POST"]),
        Route("/runs/{run_id:path}/signal", signal, methods=["POST"]),
    ]


# ---------------------------------------------------------------- checks every action makes


async def _guarded_form(request: Request) -> dict[str, str]:
    """The form of a POST that may act: read-only, Origin and CSRF checked first."""
    state = request.app.state
    if state.read_only:
        raise Refused(403, "flux dev runs with --read-only: no action is allowed")
    headers = {k.lower(): v for k, v in request.headers.items()}
    form = rules.parse_form(headers.get("content-type", ""), await _body(request))
    why = refusal(
        headers,
        form.get(FIELD),
        secret=request.state.csrf_secret,
        allowed=state.hosts,
        scheme=request.url.scheme,
    )
    if why is not None:
        raise Refused(403, why)
    if state.storage is None:
        raise Refused(409, "flux dev has no --storage: there are no stored runs to act on")
    return form


async def _body(request: Request) -> bytes:
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > rules.MAX_BODY:
            raise Refused(413, f"the form is larger than {rules.MAX_BODY} bytes")
    return body


async def _target(request: Request, need_flow: bool = True) -> tuple[RunRecord, Workflow[Any] | None]:
    run_id = request.path_params["run_id"]
    run = await request.app.state.storage.load_run(run_id)
    if run is None:
        raise Refused(404, f"no run with id '{run_id}'", run_id)
    flow: Workflow[Any] | None = request.app.state.workflows.get(run.name)
    if flow is None and need_flow:
        raise Refused(409, f"run '{run.id}': the definition of workflow '{run.name}' is not loaded "
                           "(start flux dev with --workflows MODULE)", run.id)  # fmt: skip
    return run, flow


def _fits(flow: Workflow[Any], run: RunRecord) -> None:
    """The version rule (SPEC §5), checked before the run is handed to the background."""
    try:
        adopt_definition(flow, dataclasses.replace(run))  # a copy: it refits the copy's steps
    except WorkflowVersionError as exc:
        raise Refused(409, str(exc), run.id) from None


def _engine_error(exc: FluxError, run_id: str | None) -> Refused:
    if isinstance(exc, RunNotFoundError):
        return Refused(404, str(exc), run_id)
    if isinstance(exc, (InputValidationError, SerializationError)):
        return Refused(422, str(exc), run_id)
    return Refused(409, str(exc), run_id)


def run_seen(run: RunRecord) -> str:
    """What a run's page showed of it: an action posted from the page is done only if the run
    is still so (a second click, or a change by anyone meanwhile, is refused)."""
    return f"{run.updated_at!r}/{run.seq}"


async def _as_seen(request: Request, form: Mapping[str, Any]) -> None:
    seen = form.get("seen")
    if seen is None:
        return
    run = await request.app.state.storage.load_run(request.path_params["run_id"])
    if run is not None and run_seen(run) != seen:
        raise Refused(409, f"run '{run.id}' ({run.name}) has changed since the page showed it "
                           "(it is now " + run.status.value + "): nothing was done; look at it again",
                      run.id)  # fmt: skip


async def _act(request: Request, action: str) -> Response:
    try:
        form = await _guarded_form(request)
        actions: Actions = request.app.state.actions
        async with actions.lock(request.path_params["run_id"]):  # one action at a time per run
            await _as_seen(request, form)
            run_id = await ACTIONS[action](request, form)
    except rules.FormError as exc:
        return _refused(request, Refused(400, str(exc), request.path_params.get("run_id")))
    except Refused as exc:
        return _refused(request, exc)
    return RedirectResponse(run_url(run_id), status_code=303)


# ---------------------------------------------------------------- one run


async def _retry(request: Request, form: Mapping[str, Any]) -> str:
    step = rules.text_field(form, "step")
    run, flow = await _target(request)
    assert flow is not None
    actions: Actions = request.app.state.actions
    at = time.time()
    try:
        await actions.engine.retry_step(flow, run.id, step, enqueue=True)
    except FluxError as exc:
        raise _engine_error(exc, run.id) from None
    actions.record(run, at, "retry", stepName=step)
    actions.drive(flow, run.id)
    return run.id


async def _resume(request: Request, form: Mapping[str, Any]) -> str:
    run, flow = await _target(request)
    assert flow is not None
    if run.id in request.app.state.actions.driving:
        raise Refused(
            409, f"run '{run.id}' ({run.name}) is being taken forward already: nothing was done", run.id
        )
    if not request.app.state.actions.offers(run).resume:
        raise Refused(
            409, f"run '{run.id}' ({run.name}) is {run.status.value}: there is nothing to resume", run.id
        )
    _fits(flow, run)
    actions: Actions = request.app.state.actions
    actions.record(run, time.time(), "resume")
    actions.drive(flow, run.id)
    return run.id


async def _cancel(request: Request, form: Mapping[str, Any]) -> str:
    reason = rules.text_field(form, "reason", required=False, default="cancelled from the dashboard")
    run, flow = await _target(request, need_flow=False)
    actions: Actions = request.app.state.actions
    at = time.time()
    try:
        await actions.engine.cancel(run.id, reason, flow=flow)
    except FluxError as exc:
        raise _engine_error(exc, run.id) from None
    actions.record(run, at, "cancel", reason=reason)
    return run.id


async def _signal(request: Request, form: Mapping[str, Any]) -> str:
    name = rules.text_field(form, "signal")
    payload = rules.parse_payload(rules.text_field(form, "payload", required=False))
    run, flow = await _target(request)
    assert flow is not None
    actions: Actions = request.app.state.actions
    at = time.time()
    try:
        await actions.engine.signal(flow, run.id, name, payload, enqueue=True)
    except FluxError as exc:
        raise _engine_error(exc, run.id) from None
    actions.record(run, at, "signal", signal=name, data=payload)
    actions.drive(flow, run.id)
    return run.id


ACTIONS = {"retry": _retry, "resume": _resume, "cancel": _cancel, "signal": _signal}


async def retry(request: Request) -> Response:
    return await _act(request, "retry")


async def resume(request: Request) -> Response:
    return await _act(request, "resume")


async def cancel(request: Request) -> Response:
    return await _act(request, "cancel")


async def signal(request: Request) -> Response:
    return await _act(request, "signal")


# ---------------------------------------------------------------- the runs a filter selects


async def select(state: Any, action: str, flt: rules.BulkFilter) -> list[RunRecord]:
    """The runs ``action`` would take under ``flt``, newest first; more than ``BULK_MAX``
    is refused."""
    statuses = flt.statuses(action)
    if not statuses:
        return []
    out: list[RunRecord] = []
    offset, chunk = 0, 500
    while True:
        page = await state.storage.list_runs(
            name=flt.name, status=statuses, limit=chunk, offset=offset, id_prefix=flt.q or None
        )
        out += [r for r in page if rules.bulk_eligible(action, r, flt, state.workflows)]
        if len(out) > rules.BULK_MAX:
            raise Refused(409, f"the filter ({flt.describe()}) selects more than {rules.BULK_MAX} runs "
                               "for one action: narrow it")  # fmt: skip
        if len(page) < chunk:
            return out
        offset += chunk


def selection_digest(runs: list[RunRecord]) -> str:
    """Which runs a confirmation was shown (their ids, hashed): the POST must find the same."""
    return hashlib.sha256("\n".join(sorted(r.id for r in runs)).encode("utf-8", "surrogatepass")).hexdigest()[
        :32
    ]


async def selection(request: Request) -> Response:
    """How many runs each bulk action would take under the filter in the query string:
    what the confirmation shows, and the count the POST must then repeat."""
    state = request.app.state
    if state.storage is None:
        return JSONResponse({"error": "no --storage"}, status_code=409)
    try:
        flt = rules.BulkFilter.from_params(request.query_params)
        counts: dict[str, Any] = {}
        for a in rules.BULK_ACTIONS:
            runs = await select(state, a, flt)
            counts[a] = len(runs)
            counts[f"{a}_selection"] = selection_digest(runs)
    except rules.FormError as exc:
        return JSONResponse({"error": str(exc)}, status_code=400)
    except Refused as exc:
        return JSONResponse({"error": exc.message}, status_code=exc.status)
    return JSONResponse({**counts, "filter": flt.describe()})


async def _bulk(request: Request, action: str) -> Response:
    state = request.app.state
    try:
        form = await _guarded_form(request)
        flt = rules.BulkFilter.from_params(request.query_params)
        expected = rules.expected_count(form)
        runs = await select(state, action, flt)
        confirmed = form.get("selection")
        if confirmed and confirmed != selection_digest(runs) and len(runs) == expected:
            raise Refused(409, f"the filter ({flt.describe()}) now selects other runs to {action} than the "
                               f"{expected} you confirmed: nothing was done; look again")  # fmt: skip
        if len(runs) != expected:
            raise Refused(409, f"the filter ({flt.describe()}) now selects {len(runs)} run(s) to {action}, "
                               f"not the {expected} you confirmed: nothing was done; look again")  # fmt: skip
    except rules.FormError as exc:
        return _refused(request, Refused(400, str(exc)))
    except Refused as exc:
        return _refused(request, exc)
    reason = form.get("reason") if isinstance(form.get("reason"), str) and form.get("reason") else None
    failures: list[str] = []
    for run in runs:
        try:
            await (_bulk_retry_one(state, run) if action == "retry" else _bulk_cancel_one(state, run, reason))
        except (FluxError, Refused) as exc:
            failures.append(f"{run.id}: {exc}")
    kept = ("status", "workflow", "name", "q")
    target = "/?" + urlencode({k: v for k, v in request.query_params.items() if k in kept and v})
    if failures:
        done = len(runs) - len(failures)
        text = f"{action}: {done} of {len(runs)} run(s) done; these were refused:"
        return _page(request, 409, text, failures, target.rstrip("?"))
    return RedirectResponse(target.rstrip("?"), status_code=303)


async def _bulk_retry_one(state: Any, run: RunRecord) -> None:
    flow: Workflow[Any] = state.workflows[run.name]
    actions: Actions = state.actions
    step, at = run.error_step, time.time()
    if step is not None and any(s.name == step and s.started_at for s in run.steps):
        await actions.engine.retry_step(flow, run.id, step, enqueue=True)
        actions.record(run, at, "retry", stepName=step)
    else:
        _fits(flow, run)
        actions.record(run, at, "resume")
    actions.drive(flow, run.id)


async def _bulk_cancel_one(state: Any, run: RunRecord, reason: str | None) -> None:
    actions: Actions = state.actions
    why, at = reason or "cancelled from the dashboard (bulk)", time.time()
    await actions.engine.cancel(run.id, why, flow=state.workflows.get(run.name))
    actions.record(run, at, "cancel", reason=why)


async def bulk_retry(request: Request) -> Response:
    return await _bulk(request, "retry")


async def bulk_cancel(request: Request) -> Response:
    return await _bulk(request, "cancel")


# ---------------------------------------------------------------- answers


def _refused(request: Request, exc: Refused) -> Response:
    back = run_url(exc.run_id) if exc.run_id else "/"
    return _page(request, exc.status, exc.message, [], back)


def _page(request: Request, status: int, message: str, items: list[str], back: str) -> Response:
    env = request.app.state.templates
    html = env.get_template("action_refused.html").render(
        status=status, message=message, items=items, back=back
    )
    return HTMLResponse(html, status_code=status)
