"""The run page: one run's header, timeline and step detail, and their fragments."""

from __future__ import annotations

import re
import shlex
import time
from collections import OrderedDict
from typing import Any

from jinja2 import Environment
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response

from . import lanes, values
from .axis import Axis
from .headline import headline
from .lanes import busy_spans
from .lines import number_or_none
from .pages import _common, _render, _store
from .runroute import run_of
from .runview import RunView
from .store import TraceStore
from .summary import RunSummary
from .templating import query_string
from .timeline import fold_run, order_events

#: Folded run views kept, for the fragments of one update and a replay's steps.
VIEWS_CACHED = 16
#: Step rows drawn at first, and then per scroll to the end: a 10,000-step run's page
#: is not 10,000 rows at once.
FIRST_ROWS = 200
MORE_ROWS = 250


#: What the viewer cannot know and a signal command needs: left for the user to fill in.
STORAGE_PLACEHOLDER = "STORAGE_URL"
WORKFLOW_PLACEHOLDER = "MODULE:ATTRIBUTE"


def signal_command(run_id: str, signal: str, trace: str) -> str:
    """The ``flux runs signal`` command that sends ``signal`` to the run (flux/cli.py),
    quoted for a POSIX shell; storage and workflow are placeholders."""
    return (
        f"flux runs signal {shlex.quote(run_id)} {shlex.quote(signal)} --payload 'null' "
        f"--storage {STORAGE_PLACEHOLDER} --workflow {WORKFLOW_PLACEHOLDER} --trace {shlex.quote(trace)}"
    )


def _int(raw: Any, default: int) -> int:
    try:
        return max(0, int(raw)) if raw is not None else default
    except ValueError:
        return default


def replay_position(params: Any, total: int) -> int:
    """Events folded: ``at`` (or the older ``upto``) while replaying, all when live.

    ``live=1`` wins; a position without ``live`` is a replay (a link or a reload)."""
    raw = params.get("at", params.get("upto"))
    if raw is None or params.get("live") == "1":
        return total
    try:
        return max(0, min(int(raw), total))
    except ValueError:
        return total


class _RunContext:
    """A run's events folded up to the replay position, and its time axis."""

    def __init__(self, request: Request, store: TraceStore, run: RunSummary) -> None:
        events = order_events(store.events(run))
        params = request.query_params
        total = len(events)
        upto = replay_position(params, total)
        # A live update fetches the header, the timeline and the step detail:
        # one fold serves all three.
        views: OrderedDict[tuple[int, str, int, int], RunView] = request.app.state.views
        key = (store.epoch, run.id, total, upto)
        self.view: RunView
        if key in views:
            self.view = views[key]
            views.move_to_end(key)
        else:
            self.view = views[key] = fold_run(run.id, events, upto)
            while len(views) > VIEWS_CACHED:
                views.popitem(last=False)
        view = self.view
        stamps = [ts for ev in events if (ts := number_or_none(ev.get("timestamp"))) is not None]
        first = min(stamps) if stamps else None
        last = max(stamps) if stamps else None
        self.live = upto == total
        if not self.live:
            last_ts = view.last_event.get("timestamp") if view.last_event else None
            now = number_or_none(last_ts)
            now = first if now is None else now
        elif run.terminal or view.terminal:
            now = last
        else:
            now = time.time() * 1000.0
        self.now = now if now is not None else time.time() * 1000.0
        # An open sleep is drawn up to its wake time: the axis reaches it.
        end = last
        for row in view.steps:
            wait = row.wait
            if wait is not None and wait.end is None and wait.sleep and wait.wake_at is not None:
                end = max(end or wait.wake_at, wait.wake_at)
        self.compress = params.get("idle") == "compress"
        busy = busy_spans(view, self.now) if self.compress else ()
        self.axis = Axis(first, end, now, busy=busy, compress=self.compress)
        self.step = params.get("step", "")
        self.rows_from = _int(params.get("from"), 0)
        steps = len(view.steps)
        if self.rows_from:
            self.rows_to = min(self.rows_from + MORE_ROWS, steps)
        else:
            # as many as the page had (an update keeps what was scrolled to), and the selected one
            wanted = max(FIRST_ROWS, _int(params.get("rows"), 0))
            if self.step:
                index = next((i for i, r in enumerate(view.steps) if r.name == self.step), -1)
                wanted = max(wanted, index + 1 + FIRST_ROWS // 2)
            self.rows_to = min(wanted, steps)

    def duration(self) -> tuple[float | None, bool]:
        """The header's duration (ms), from its own start and end, and whether it ticks."""
        view = self.view
        if view.started_at is None:
            return None, False
        if view.terminal and view.ended_at is not None:
            return view.ended_at - view.started_at, False
        return max(self.now - view.started_at, 0.0), self.live

    def context(self, store: TraceStore, request: Request) -> dict[str, Any]:
        view = self.view
        duration, ticking = self.duration()
        row = view.step(self.step) if self.step else None
        command = None
        if row is not None and row.status == "suspended" and row.wait is not None and not row.wait.sleep:
            command = signal_command(view.id, row.wait.signal or row.name, str(store.path))
        return {
            **_common(store),
            "run": view,
            "axis": self.axis,
            "selected": self.step,
            "row": row,
            "live": self.live,
            "compress": self.compress,
            "now": self.now,
            "duration": duration,
            "ticking": ticking,
            "signal_command": command,
            "headline": headline(view),
            "lanes": lanes,
            "values": values,
            "state": self.state(),
            "link": self.link,
            "rows_from": self.rows_from,
            "rows_to": self.rows_to,
            # h/viewbranch: a map's items are paged and filtered by the address (items, items_state)
            "query": request.query_params,
        }

    def link(self, **changes: str) -> str:
        """The page's query string with ``changes``: a step link keeps the replay position."""
        return query_string({**self.state(), **changes})

    def state(self) -> dict[str, str]:
        """What the page's address holds: the selected step, the replay position, the axis."""
        out = {}
        if self.step:
            out["step"] = self.step
        if not self.live:
            out["at"] = str(self.view.upto)
        if self.compress:
            out["idle"] = "compress"
        return out


async def store_for(request: Request, run_id: str) -> TraceStore | None:
    """The first of the traces (``--trace``, several with ``--storage``) that holds the run,
    each read up to date first; None if none does."""
    stores: list[TraceStore] = request.app.state.stores
    for store in stores:
        await store.sync()
        # a run an early, partial index does not hold yet is waited for
        if await store.find(run_id) is not None:
            return store
    return None


async def run_response(request: Request, template: str, fragment: bool) -> Response:
    """The run page (or a fragment of it) from the trace that holds the run."""
    # h/viewbranch: a child run's id holds a "/"; the raw path says which run and which part
    run_id, wants_fragment = run_of(request.scope, request.path_params["run_id"])
    if not wants_fragment:
        template, fragment = "run.html", False
        if request.app.state.storage is not None and not getattr(request.state, "stored_tried", False):
            from . import stored_pages  # a run's page under --storage is its stored page

            return await stored_pages.run_page(request)
    found = await store_for(request, run_id)
    if found is None and request.app.state.store is None:  # --storage without a trace
        context: dict[str, Any] = {"trace_path": "", "error": None, "exists": True, "run_id": run_id}
        if fragment:
            return _render(request, "_run_missing.html", context)
        return _render(request, "run_missing.html", context, status=404)
    store = found if found is not None else await _store(request)
    run = store.run(run_id) if found is not None else None
    if run is None:
        context = {**_common(store), "run_id": run_id}
        if fragment:
            return _render(request, "_run_missing.html", context)
        return _render(request, "run_missing.html", context, status=404)
    return _render_clean(request, template, _RunContext(request, store, run).context(store, request))


#: Control characters from the trace, shown as the symbols for them (C0, DEL) or as
#: U+FFFD (C1, among them the terminal's CSI): never sent raw to the page.
_CONTROLS = {c: 0x2400 + c for c in range(0x20) if c not in (0x09, 0x0A, 0x0D)}
_CONTROLS[0x7F] = 0x2421
_CONTROLS.update({c: 0xFFFD for c in range(0x80, 0xA0)})
#: And the bidirectional embeddings, overrides and isolates: an id holding U+202E would show
#: the text after it reversed (a run id or a step name must read as what it is).
_CONTROLS.update({c: 0xFFFD for c in (*range(0x202A, 0x202F), *range(0x2066, 0x206A))})


_NEEDS_CLEANING = re.compile("[" + "".join(re.escape(chr(c)) for c in _CONTROLS) + "]")


def clean_text(text: str) -> bytes:
    """A rendered page as UTF-8: control characters made visible, lone surrogates
    written as ``\\udXXX`` (a trace is JSON, which may hold them; UTF-8 cannot)."""
    if _NEEDS_CLEANING.search(text):  # rare: `translate` costs ~0.1 µs a character
        text = text.translate(_CONTROLS)
    return text.encode("utf-8", "backslashreplace")


def _render_clean(request: Request, name: str, context: dict[str, Any], status: int = 200) -> Response:
    env: Environment = request.app.state.templates
    body = clean_text(env.get_template(name).render(context))
    return HTMLResponse(body, status_code=status)


_run_response = run_response


async def run_page(request: Request) -> Response:
    return await _run_response(request, "run.html", fragment=False)


async def run_header(request: Request) -> Response:
    return await _run_response(request, "_run_header.html", fragment=True)


async def run_timeline(request: Request) -> Response:
    # ``from``: the next rows of a long run, asked for when the user scrolls to them
    rows = "from" in request.query_params
    return await _run_response(request, "_timeline_rows.html" if rows else "_timeline.html", fragment=True)


async def run_live(request: Request) -> Response:
    """What a change (or a replay move) redraws, in one response: header, timeline, step."""
    return await _run_response(request, "_run_live.html", fragment=True)


async def run_step(request: Request) -> Response:
    return await _run_response(request, "_step_detail.html", fragment=True)
