"""What the dashboard may do to a stored run, and what its action forms must hold: pure
functions of a ``RunRecord``, a clock reading and form fields, so that the routes
(``viewer.actions``) and the templates ask the same rules.

The engine remains the judge (``retry_step``, ``resume``, ``cancel`` and ``signal`` raise
``RunStateError`` on a run that does not allow them); these rules decide which forms a
page offers and which runs a bulk action takes.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

from flux.engine import _at_rest  # the engine's own rule for "waits for an explicit call"
from flux.records import RunRecord
from flux.status import EXECUTING, RUN_TERMINAL, RunStatus

__all__ = [
    "BULK_ACTIONS",
    "BULK_MAX",
    "RETRYABLE",
    "BulkFilter",
    "FormError",
    "RunActions",
    "bulk_eligible",
    "expected_count",
    "matches",
    "parse_form",
    "parse_payload",
    "run_actions",
    "text_field",
]

#: At most this many runs in one bulk action: a wider filter is refused, to be narrowed.
BULK_MAX = 1000
#: The bulk actions and the path each is posted to.
BULK_ACTIONS = ("retry", "cancel")
#: The states a bulk retry takes a run in: it failed for good.
RETRYABLE = frozenset({RunStatus.FAILED, RunStatus.ROLLED_BACK, RunStatus.ROLLBACK_FAILED})
#: The longest text a form field may hold (a reason, a step or signal name, a payload).
MAX_FIELD = 1_000_000


class FormError(ValueError):
    """A form field is missing or bad: a 400 that names the field."""


@dataclass(frozen=True)
class RunActions:
    """The actions a run's page offers."""

    #: The steps it may be retried from (those that have run), in order.
    retry_steps: list[str] = field(default_factory=list)
    resume: bool = False
    cancel: bool = False
    #: The signal it waits for, when it is suspended on one.
    signal: str | None = None
    #: Why nothing is offered, when nothing is.
    why_none: str = ""

    @property
    def any(self) -> bool:
        return bool(self.retry_steps or self.resume or self.cancel or self.signal)


def held(run: RunRecord, now: float, holder_dead: bool = False) -> bool:
    """Whether a live process holds the run: its lease has not expired, and its holder is
    not known to be dead (``flux.leases``: a process of this machine that is gone)."""
    live = run.lease is not None and run.lease.expires_at > now and not holder_dead
    return run.status in EXECUTING and live


def run_actions(run: RunRecord, now: float, holder_dead: bool = False) -> RunActions:
    busy = held(run, now, holder_dead)
    retry = [] if busy or run.status is RunStatus.PENDING else [s.name for s in run.steps if s.started_at]
    resume = not busy and not _at_rest(run) and run.status is not RunStatus.SUSPENDED
    cancel = run.status not in RUN_TERMINAL
    signal = run.waiting_for if run.status is RunStatus.SUSPENDED and run.waiting_for else None
    why = ""
    if not (retry or resume or cancel or signal):
        why = f"the run is {run.status.value}: nothing can be done to it from here"
    return RunActions(retry, resume, cancel, signal, why)


#: The largest form body read (a signal's payload is the big one).
MAX_BODY = 2 * MAX_FIELD


def parse_form(content_type: str, body: bytes) -> dict[str, str]:
    """An HTML form's fields (``application/x-www-form-urlencoded``, what the pages post;
    the first value of a repeated field). Read here rather than by Starlette, which would
    need python-multipart for it."""
    kind = content_type.split(";", 1)[0].strip().lower()
    if kind != "application/x-www-form-urlencoded":
        raise FormError(
            f"the form must be sent as application/x-www-form-urlencoded, not {kind[:60] or 'nothing'!r}"
        )
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise FormError("the form is not UTF-8") from None
    fields: dict[str, str] = {}
    for key, value in parse_qsl(text, keep_blank_values=True, max_num_fields=100):
        fields.setdefault(key, value)
    return fields


def text_field(form: Mapping[str, Any], name: str, *, required: bool = True, default: str = "") -> str:
    value = form.get(name)
    if value is None or value == "":
        if required:
            raise FormError(f"field '{name}' is required")
        return default
    if not isinstance(value, str):
        raise FormError(f"field '{name}' must be text, not a file")
    if len(value) > MAX_FIELD:
        raise FormError(f"field '{name}' is longer than {MAX_FIELD} characters")
    return value


def parse_payload(text: str) -> Any:
    """A signal's payload, from the JSON the form holds (empty: null)."""
    if not text.strip():
        return None
    try:
        return json.loads(text)
    except ValueError as exc:  # also an integer of more digits than Python reads
        raise FormError(f"field 'payload' is not valid JSON: {exc}") from None
    except RecursionError:
        raise FormError("field 'payload' is nested too deep to be read") from None


def expected_count(form: Mapping[str, Any]) -> int:
    text = text_field(form, "expected")
    try:
        value = int(text)
    except ValueError:
        raise FormError(f"field 'expected' must be a count of runs, got {text[:40]!r}") from None
    if value < 0:
        raise FormError(f"field 'expected' must be a count of runs, got {value}")
    return value


@dataclass(frozen=True)
class BulkFilter:
    """The stored runs page's filter, as a bulk action receives it in its query string:
    ``status``, ``workflow`` (or ``name``) and ``q``, the start of the run ids (the page's
    search over stored runs, by the primary key's index)."""

    status: RunStatus | None = None
    name: str | None = None
    q: str = ""

    @classmethod
    def from_params(cls, params: Mapping[str, str]) -> BulkFilter:
        raw = (params.get("status") or "").strip()
        try:
            status = RunStatus(raw) if raw else None
        except ValueError:
            known = ", ".join(s.value for s in RunStatus)
            raise FormError(f"field 'status': unknown status {raw[:40]!r} (known: {known})") from None
        name = (params.get("workflow") or params.get("name") or "").strip() or None
        return cls(status, name, params.get("q") or "")

    def statuses(self, action: str) -> list[RunStatus] | None:
        """The states to list for ``action``: the filter's, within those it applies to."""
        if action == "retry":
            return [s for s in RETRYABLE if self.status in (None, s)]
        if self.status is None:
            return [s for s in RunStatus if s not in RUN_TERMINAL]
        return [] if self.status in RUN_TERMINAL else [self.status]

    def describe(self) -> str:
        parts = [
            f"status {self.status.value}" if self.status else "",
            f"workflow {self.name}" if self.name else "",
        ]
        parts.append(f"id starting {self.q!r}" if self.q else "")
        return ", ".join(p for p in parts if p) or "all runs"


def matches(run: RunRecord, q: str) -> bool:
    """The search of the stored runs page: the run's id starts with ``q`` (as typed)."""
    return run.id.startswith(q)


def bulk_eligible(action: str, run: RunRecord, flt: BulkFilter, known: Mapping[str, object]) -> bool:
    """Whether a bulk ``action`` takes ``run``: in a state it applies to, matching the
    search, and (for a retry) of a workflow the dashboard has the definition of."""
    if not matches(run, flt.q) or (flt.name is not None and run.name != flt.name):
        return False
    if action == "retry":
        return run.status in RETRYABLE and run.name in known
    return run.status not in RUN_TERMINAL
