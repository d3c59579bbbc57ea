"""What goes into the run machine (events) and what comes out (effects): plain data."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Union

#: A step's address in a run: its name (unique in the workflow, branches and items included).
StepRef = str

# ---------------------------------------------------------------------- events (inputs)


@dataclass(slots=True)
class Started:
    """A new run was stored, held by this process: begin with its first step."""


@dataclass(slots=True)
class Resumed:
    """An existing run is now held by this process: bring it forward.

    `reason` says who asked (execute, resume, recover, worker); `crashed` is true when the
    run was left `running` by a process that is gone (its step in flight was cut short).
    """

    reason: str
    crashed: bool = False


@dataclass(slots=True)
class WhenEnded:
    step: StepRef
    go: bool = True
    error: BaseException | None = None


@dataclass(slots=True)
class Timer:
    """What a handler asked for with `Flux.sleep`/`sleep_until` (`kind="sleep"`) or
    `Flux.wait(signal, timeout=)` (`kind="wait"`): a wake time `seconds` from now, or `until`
    (epoch seconds); a wait's `default_json` when it has a default."""

    kind: str  # "sleep" | "wait"
    seconds: float | None = None
    until: float | None = None
    signal: str | None = None
    default_json: str | None = None


@dataclass(slots=True)
class Woke:
    """The run's wake time (or its deadline) came: it is held by this process, either
    claimed by a worker as due or at the end of an in-process sleep."""


@dataclass(slots=True)
class AttemptEnded:
    """A handler call returned: `output_json`/`data_json` when it succeeded, `signal` when it
    asked to wait, `error` when it raised (or timed out, or was cancelled)."""

    step: StepRef
    duration: float
    output_json: str | None = None
    data_json: str | None = None
    signal: str | None = None
    error: BaseException | None = None
    stack: list[dict[str, Any]] | None = None
    #: A sleep, or a wait with a timeout (then `signal` is None).
    timer: Timer | None = None
    #: A branch's or an item's changes to its own copy of the data (JSON; None: none).
    delta_json: str | None = None
    #: When a branch or an item ended (the engine's clock): members that end together are
    #: decided in this order, and it is their completion time (the saga undoes the latest first).
    at: float | None = None


@dataclass(slots=True)
class ItemsEnded:
    """A map's `items(ctx)` returned (`items_json`, a JSON list of `count` items) or raised."""

    step: StepRef
    items_json: str | None = None
    count: int = 0
    error: BaseException | None = None


@dataclass(slots=True)
class BackoffEnded:
    step: StepRef
    compensation: bool = False


@dataclass(slots=True)
class CompensationEnded:
    step: StepRef
    duration: float
    data_json: str | None = None
    error: BaseException | None = None
    stack: list[dict[str, Any]] | None = None


@dataclass(slots=True)
class Signalled:
    signal: str
    payload_json: str
    enqueue: bool = False


@dataclass(slots=True)
class RetryFrom:
    step: StepRef
    enqueue: bool = False


@dataclass(slots=True)
class CancelNow:
    """Cancel the run now (`run.cancel_reason` holds the reason): it is held by this process
    and no attempt of it is in flight."""


@dataclass(slots=True)
class Proceeded:
    """The driver carried out the effects before a `Proceed`: start `step` now."""

    step: StepRef


@dataclass(slots=True)
class SaveFailed:
    """The last save raised (not a lost lease): put the run to rest with a named error."""

    error: BaseException


Event = Union[  # noqa: UP007 - a runtime alias: `X | Y` of classes needs 3.10's types.UnionType
    Started, Resumed, WhenEnded, AttemptEnded, BackoffEnded, CompensationEnded, Signalled,
    RetryFrom, CancelNow, SaveFailed, Proceeded, Woke, ItemsEnded,
]  # fmt: skip

# ---------------------------------------------------------------------- effects (outputs)


@dataclass(slots=True)
class Save:
    """Write the run row and the rows of these steps, in one atomic write."""

    steps: tuple[StepRef, ...] = ()
    #: The steps' positions, when the machine knows them already (else looked up by name).
    indexes: tuple[int, ...] | None = None


@dataclass(slots=True)
class Emit:
    """A trace event; `raw` holds values already encoded as JSON text."""

    kind: str  # a flux.events.EventType
    seq: int
    timestamp: int
    fields: dict[str, Any]
    raw: dict[str, str] | None = None


@dataclass(slots=True)
class Invoke:
    """Call the step's handler (`when`, `handler`, `compensate`, or a map's `items`) once."""

    step: StepRef
    what: str  # "when" | "handler" | "compensate" | "items"
    attempt: int
    timeout: float | None
    #: The step's position in the definition (what the driver looks its handler up by).
    index: int = -1
    #: A branch or a map item: run it alongside the others (the driver feeds its outcome
    #: back when it ends), on its own copy of this data; report its changes as a delta.
    concurrent: bool = False
    data_json: str | None = None
    #: A map item's position, and its map (`ctx.item` comes from the map's stored items).
    item: int | None = None
    group: str | None = None


@dataclass(slots=True)
class Wait:
    """Wait out the step's backoff before retry number `retry`, then feed `BackoffEnded`
    (the driver draws the jitter: the machine stays deterministic)."""

    step: StepRef
    retry: int
    compensation: bool = False
    #: A branch's or an item's backoff: waited out alongside the others.
    concurrent: bool = False


@dataclass(slots=True)
class Hook:
    """Call a user hook: step_start/step_complete/step_error/workflow_complete/workflow_error."""

    name: str
    step: StepRef = ""
    attempt: int = 0
    error: BaseException | None = None
    #: A branch's or an item's output, for `step_complete` (the live outputs have it only
    #: once its group has ended).
    output_json: str | None = None


@dataclass(slots=True)
class Log:
    level: str  # "info" | "warn" | "error"
    message: str
    step: StepRef | None = None
    error: BaseException | None = None


@dataclass(slots=True)
class Outputs:
    """The live outputs changed: `set` names steps whose output is now `output_json`,
    `drop` steps whose output is gone (compensated, reset)."""

    set: dict[StepRef, str] = field(default_factory=dict)
    drop: tuple[StepRef, ...] = ()


@dataclass(slots=True)
class Proceed:
    """Carry out the effects so far, then feed `Proceeded(step)`: a commit's start is saved
    on its own, after the hooks of the step before it, never merged into an earlier save."""

    step: StepRef


@dataclass(slots=True)
class Pause:
    """Sleep in this process, holding the run, until `until` (epoch seconds on the engine's
    clock; a cancel or a lost lease ends it early), then feed `Woke`."""

    step: StepRef
    until: float


@dataclass(slots=True)
class Interrupt:
    """Cancel these concurrent attempts and backoffs (a sibling failed for good): each still
    ends with its own event, an `AttemptEnded` with an error or a `BackoffEnded`."""

    steps: tuple[StepRef, ...]
    reason: str


@dataclass(slots=True)
class Done:
    """The machine has nothing more to do for now: the run is at rest, or left for a worker."""


Effect = Union[Save, Emit, Invoke, Wait, Hook, Log, Outputs, Proceed, Pause, Interrupt, Done]  # noqa: UP007
