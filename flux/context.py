"""What a step handler sees: `WorkflowContext[T]`, and the record of one step's execution."""

from __future__ import annotations

import copy
import datetime as dt
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, replace
from decimal import Decimal
from typing import Any, Generic, Protocol, TypeVar

from . import serialization as ser
from .status import StepStatus

T = TypeVar("T")


@dataclass(frozen=True)
class StepExecution:
    """One step of a run as it stands: its status, attempts, timings, output and error."""

    name: str
    status: StepStatus
    attempts: int
    started_at: dt.datetime | None
    completed_at: dt.datetime | None
    duration: float | None
    output: Any
    error: str | None
    error_type: str | None = None
    commit: bool = False


class CancelFlag(Protocol):
    """What `ctx.cancelled` reads: a `threading.Event`, or anything with `is_set()`."""

    def is_set(self) -> bool: ...


class WorkflowContext(Generic[T]):
    """The run as seen from inside a step (or a `when`, or a compensation).

    `data` is shared by the steps and persisted after each; a failed attempt's changes to
    it are discarded. `input` and `outputs` (read-only mapping) are this context's own
    copies, made on first access: a handler may change them in place, but no later step,
    retry or compensation sees the change, so a resumed run sees what an uninterrupted one
    does. `idempotency_key` stays the same across the retries, resumes and `retry_step` of
    one step: pass it to payment APIs.
    """

    __slots__ = (
        "_cancel",
        "_history",
        "_input",
        "_input_json",
        "_outputs",
        "_outputs_json",
        "_outputs_view",
        "attempt",
        "data",
        "id",
        "item",
        "item_index",
        "name",
        "step_name",
    )

    def __init__(
        self,
        *,
        id: str,
        name: str,
        input: T,
        data: dict[str, Any],
        outputs: Mapping[str, Any],
        step_name: str,
        attempt: int,
        history: Callable[[], list[StepExecution]],
        cancel: CancelFlag | None = None,
        input_json: str | None = None,
        outputs_json: Mapping[str, str | None] | None = None,
    ) -> None:
        """`input_json` and `outputs_json` (step name → stored output text), when given,
        are what the copies are decoded from, exactly as a resumed run reads them; without
        them the values given are deep-copied."""
        self.id = id
        self.name = name
        self._input: Any = input
        self._input_json = input_json
        self.data = data
        self._outputs = outputs
        self._outputs_json = outputs_json
        self._outputs_view: ContextOutputs | None = None
        self.step_name = step_name
        self.attempt = attempt
        self._history = history
        self._cancel = cancel
        #: In a map's handler: the item (decoded from the stored items) and its position.
        self.item: Any = None
        self.item_index: int | None = None

    @property
    def input(self) -> T:
        value = self._input
        if type(value) is _Copied:
            return value.value  # type: ignore[no-any-return]
        if type(value) in _IMMUTABLE:
            return value  # type: ignore[no-any-return]
        text = self._input_json
        value = _copy(value) if text is None else ser.loads(text, path="input")
        self._input = _Copied(value)
        return value  # type: ignore[no-any-return]

    @property
    def outputs(self) -> Mapping[str, Any]:
        view = self._outputs_view
        if view is None:
            view = self._outputs_view = ContextOutputs(self._outputs, self._outputs_json)
        return view

    @property
    def idempotency_key(self) -> str:
        return f"{self.id}:{self.step_name}"

    @property
    def history(self) -> list[StepExecution]:
        """The steps as they stand; an output is the same copy as in `outputs`."""
        outputs = self.outputs
        return [
            s if type(s.output) in _IMMUTABLE or s.name not in outputs else replace(s, output=outputs[s.name])
            for s in self._history()
        ]

    @property
    def cancelled(self) -> bool:
        """True once this attempt was abandoned (timeout): a sync handler should stop."""
        return self._cancel is not None and self._cancel.is_set()

    def __repr__(self) -> str:
        return f"<WorkflowContext {self.name} id={self.id} step={self.step_name} attempt={self.attempt}>"


class ContextOutputs(Mapping[str, Any]):
    """Step name → output, read-only; each output read is this context's own copy."""

    __slots__ = ("_copies", "_source", "_texts")

    def __init__(self, source: Mapping[str, Any], texts: Mapping[str, str | None] | None) -> None:
        self._source = source
        self._texts = texts
        self._copies: dict[str, Any] = {}

    def __getitem__(self, name: str) -> Any:
        copies = self._copies
        if name in copies:
            return copies[name]
        value = self._source[name]
        if type(value) in _IMMUTABLE:
            return value
        text = None if self._texts is None else self._texts.get(name)
        path = f"outputs.{name}"
        copies[name] = value = _copy(value) if text is None else ser.loads(text, path=path)
        return value

    def __contains__(self, name: object) -> bool:
        return name in self._source

    def __iter__(self) -> Iterator[str]:
        return iter(self._source)

    def __len__(self) -> int:
        return len(self._source)

    def __repr__(self) -> str:
        return f"ContextOutputs({dict(self)!r})"


#: Values that cannot be changed in place: handed out as they are, with no copy.
_IMMUTABLE = frozenset({str, int, float, bool, type(None), bytes, Decimal, uuid.UUID, dt.datetime, dt.date})


class _Copied:
    """The input once this context has copied it (the copy may be None or a str)."""

    __slots__ = ("value",)

    def __init__(self, value: Any) -> None:
        self.value = value


def _copy(value: Any) -> Any:
    # A deep copy, not an encode-decode: a class the decoder cannot find again (one defined
    # in a function) stays itself on the run that made it.
    return copy.deepcopy(value)
