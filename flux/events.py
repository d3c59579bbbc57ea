"""The trace vocabulary, defined once: every event type, the keys each may carry, and the
helpers that build events (SPEC §6, §9, §10, §11, §12).

The engine builds its events with `event`; the sinks and the viewer read them through
`EventType`. The names are those of `@gravito/flux` (camelCase keys, `type` as
`"<subject>:<what>"`), so that one viewer reads the traces of both engines. A reader
ignores the keys and types it does not know.

```python
event(EventType.STEP_START, run_id="ORD-1", name="order", seq=2, timestamp=timestamp_ms(time.time()),
      stepName="pay", stepIndex=0, commit=False, attempt=1)
```
"""

from __future__ import annotations

import os
import types
from collections.abc import Mapping
from enum import Enum
from typing import Any

__all__ = [
    "COMMON",
    "FIELDS",
    "PAYLOAD_KEYS",
    "SCHEMA_VERSION",
    "EventType",
    "action_event",
    "check",
    "event",
    "stack_of",
    "timestamp_ms",
]

#: The `v` of every event Flux writes; `@gravito/flux` writes none.
SCHEMA_VERSION = 1


class EventType(str, Enum):
    """What happened: the `type` of a trace event."""

    #: A run began (`input`, and `meta` with the definition's steps; a child run carries
    #: `parentId` and `parentStep`, a scheduled one `meta.schedule`).
    WORKFLOW_START = "workflow:start"
    #: A stopped run goes on (`meta.fromStep` and `meta.reason`: resume, retry_step, recover).
    WORKFLOW_RESUME = "workflow:resume"
    #: An attempt of a step began (`attempt`, `maxRetries`).
    STEP_START = "step:start"
    #: An attempt failed and the step will be tried again (`error`, `retries`, `maxRetries`).
    STEP_RETRY = "step:retry"
    #: The step's `when` was false.
    STEP_SKIPPED = "step:skipped"
    #: The step finished (`output`, and `data` as it stands after it).
    STEP_COMPLETE = "step:complete"
    #: The step failed for good (`error`, `errorType`, `stack`).
    STEP_ERROR = "step:error"
    #: The step returned `Flux.wait(...)`: the run waits for `signal` (until `wakeAt` if set).
    STEP_SUSPEND = "step:suspend"
    #: The signal a suspended step waited for arrived (`signal`, its payload as `output`).
    SIGNAL_RECEIVED = "signal:received"
    #: A step failed for good: the saga's compensations begin.
    WORKFLOW_ROLLBACK_START = "workflow:rollback_start"
    #: A completed step's compensation succeeded.
    STEP_COMPENSATE = "step:compensate"
    #: A compensation attempt failed (`status: "compensation_failed"` when for good).
    STEP_COMPENSATE_ERROR = "step:compensate_error"
    #: The saga ended (`status`: rolled_back or rollback_failed).
    WORKFLOW_ROLLBACK_COMPLETE = "workflow:rollback_complete"
    #: The run ended without completing (`status`, `error`, `errorType`, `stack`).
    WORKFLOW_ERROR = "workflow:error"
    #: Every step completed or was skipped (`data`, `duration`).
    WORKFLOW_COMPLETE = "workflow:complete"
    #: The run is being cancelled (`reason`); the saga's events and a `workflow:error`
    #: with `status: "cancelled"` follow (SPEC §9).
    WORKFLOW_CANCEL = "workflow:cancel"
    #: The step sleeps durably until `wakeAt` (epoch ms) (SPEC §10).
    STEP_SLEEP = "step:sleep"
    #: A sleeping step's wake time came; the run goes on.
    STEP_WAKE = "step:wake"
    #: A wait for `signal` timed out (the step fails, or completes with its default).
    SIGNAL_TIMEOUT = "signal:timeout"
    #: Someone acted on the run from outside (`action`: retry, resume, cancel, signal; `by`:
    #: `cli` or `dashboard`) (SPEC §12).
    WORKFLOW_ACTION = "workflow:action"

    def __str__(self) -> str:
        return self.value


#: The keys every event carries.
COMMON = ("v", "seq", "type", "timestamp", "workflowId", "workflowName")
#: The keys that carry a run's own values (what redaction masks); the rest is Flux's vocabulary.
PAYLOAD_KEYS = ("input", "data", "output")

_STEP = frozenset({"stepName", "stepIndex", "commit", "status", "group", "item", "childId"})
_ATTEMPT = _STEP | {"attempt", "duration"}
_ERROR = frozenset({"error", "errorType", "stack"})

_E = EventType

#: The keys, besides `COMMON`, that each type may carry.
FIELDS: Mapping[EventType, frozenset[str]] = types.MappingProxyType(
    {
        _E.WORKFLOW_START: frozenset({"status", "input", "meta", "parentId", "parentStep"}),
        _E.WORKFLOW_RESUME: frozenset({"status", "meta"}),
        _E.STEP_START: _ATTEMPT | {"retries", "maxRetries"},
        _E.STEP_RETRY: _ATTEMPT | _ERROR | {"retries", "maxRetries"},
        _E.STEP_SKIPPED: _STEP,
        _E.STEP_COMPLETE: _ATTEMPT | {"output", "data"},
        _E.STEP_ERROR: _ATTEMPT | _ERROR | {"retries", "maxRetries"},
        _E.STEP_SUSPEND: _STEP | {"signal", "wakeAt", "data"},
        _E.SIGNAL_RECEIVED: _STEP | {"signal", "output"},
        _E.WORKFLOW_ROLLBACK_START: _ERROR | {"status", "stepName", "stepIndex"},
        _E.STEP_COMPENSATE: _ATTEMPT,
        _E.STEP_COMPENSATE_ERROR: _ATTEMPT | _ERROR,
        _E.WORKFLOW_ROLLBACK_COMPLETE: frozenset({"status", "duration"}),
        _E.WORKFLOW_ERROR: _ERROR | {"status", "stepName", "stepIndex", "duration", "data", "reason"},
        _E.WORKFLOW_COMPLETE: frozenset({"status", "duration", "data", "output"}),
        _E.WORKFLOW_CANCEL: frozenset({"status", "reason", "by", "errorType"}),
        _E.STEP_SLEEP: _STEP | {"wakeAt", "data"},
        _E.STEP_WAKE: _STEP,
        _E.SIGNAL_TIMEOUT: _STEP | _ERROR | {"signal", "wakeAt", "output"},
        _E.WORKFLOW_ACTION: frozenset({"action", "by", "stepName", "signal", "reason", "data"}),
    }
)


def event(
    kind: EventType, *, run_id: str, name: str, seq: int, timestamp: int, **fields: Any
) -> dict[str, Any]:
    """One event, as the sinks receive it. On the engine's hot path: no validation here
    (the tests run `check` over what the engine writes)."""
    return {
        "v": SCHEMA_VERSION,
        "seq": seq,
        "type": kind.value,
        "timestamp": timestamp,
        "workflowId": run_id,
        "workflowName": name,
        **fields,
    }


def action_event(
    *, run_id: str, name: str, seq: int, timestamp: int, action: str, by: str, **fields: Any
) -> dict[str, Any]:
    """A `workflow:action`: someone (`by`: `cli` or `dashboard`) acted on the run. `seq` is
    the run's last event number (the stored `RunRecord.seq`): the action sorts after what
    came before it, and the engine's own events for it follow. Fields that are None are left
    out."""
    extra = {k: v for k, v in fields.items() if v is not None}
    return event(EventType.WORKFLOW_ACTION, run_id=run_id, name=name, seq=seq, timestamp=timestamp,
                 action=action, by=by, **extra)  # fmt: skip


def check(ev: Mapping[str, Any]) -> list[str]:
    """The keys of `ev` that its type may not carry, sorted; `"type"` itself when the
    type is not one of `EventType`."""
    try:
        kind = EventType(ev.get("type"))
    except ValueError:
        return ["type"]
    allowed = FIELDS[kind]
    return sorted(key for key in ev if key not in COMMON and key not in allowed)


def timestamp_ms(epoch_seconds: float) -> int:
    """Epoch milliseconds as an integer, as JavaScript's `Date.now()` gives them."""
    return int(epoch_seconds * 1000)


#: Frames in files under this directory are Flux's own: a stack shows the user's code.
_FLUX_DIR = os.path.normcase(os.path.dirname(os.path.abspath(__file__))) + os.sep


def _is_flux(filename: str) -> bool:
    return os.path.normcase(os.path.abspath(filename)).startswith(_FLUX_DIR)


def stack_of(exc: BaseException, limit: int = 20) -> list[dict[str, Any]]:
    """The frames of `exc`'s traceback as `{"file", "line", "function"}`, innermost last,
    at most `limit` (the innermost), without the frames of Flux itself."""
    frames: list[dict[str, Any]] = []
    tb = exc.__traceback__
    while tb is not None:
        code = tb.tb_frame.f_code
        if not _is_flux(code.co_filename):
            frames.append({"file": code.co_filename, "line": tb.tb_lineno, "function": code.co_name})
        tb = tb.tb_next
    return frames[-limit:] if limit > 0 else []
