"""The chainable, typed workflow builder: `create_workflow(name).input(T).step(...)`."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, Literal, TypeVar, overload

from .backoff import Backoff
from .context import WorkflowContext
from .errors import WorkflowDefinitionError
from .validation import check_input_type

T = TypeVar("T")
U = TypeVar("U")

Handler = Callable[[WorkflowContext[T]], Any]
Condition = Callable[[WorkflowContext[T]], bool]
StepKind = Literal["step", "commit"]


@dataclass(frozen=True)
class StepDefinition(Generic[T]):
    """One step as written; `None` options take the engine's defaults."""

    name: str
    kind: StepKind
    handler: Handler[T]
    is_async: bool
    retries: int | None = None
    timeout: float | None = None
    when: Condition[T] | None = None
    compensate: Handler[T] | None = None
    compensate_is_async: bool = False
    backoff: Backoff | None = None
    retry_on: tuple[type[BaseException], ...] | None = None

    @property
    def commit(self) -> bool:
        return self.kind == "commit"


def _is_async(fn: Callable[..., Any]) -> bool:
    if inspect.iscoroutinefunction(fn):
        return True
    call = getattr(fn, "__call__", None)  # noqa: B004 - callable objects with async __call__
    return call is not None and inspect.iscoroutinefunction(call)


class Workflow(Generic[T]):
    """An immutable workflow definition; every builder method returns a new one."""

    __slots__ = ("_steps", "deadline_seconds", "input_type", "name", "version_tag")

    def __init__(
        self,
        name: str,
        input_type: Any = None,
        steps: tuple[StepDefinition[T], ...] = (),
        version_tag: str | None = None,
        deadline_seconds: float | None = None,
    ) -> None:
        self.name = name
        self.input_type = input_type
        self._steps = steps
        self.version_tag = version_tag
        #: Seconds from a run's creation after which it is cancelled (`DeadlineExceededError`).
        self.deadline_seconds = deadline_seconds

    @property
    def steps(self) -> tuple[StepDefinition[T], ...]:
        return self._steps

    def input(self, tp: type[U]) -> Workflow[U]:
        """Type `ctx.input` as `tp` and validate the input against it at `execute`."""
        problem = check_input_type(tp)
        if problem:
            raise WorkflowDefinitionError(f"workflow '{self.name}': .input(): {problem}")
        return Workflow(self.name, tp, self._steps, self.version_tag, self.deadline_seconds)  # type: ignore[arg-type]

    def version(self, version: str) -> Workflow[T]:
        """Label the definition; stored with each run and shown in its trace."""
        if not isinstance(version, str) or not version:
            raise WorkflowDefinitionError(
                f"workflow '{self.name}': .version({version!r}): must be a non-empty string"
            )
        return Workflow(self.name, self.input_type, self._steps, version, self.deadline_seconds)

    def deadline(self, seconds: float) -> Workflow[T]:
        """Cancel a run still unfinished `seconds` after its creation (as `engine.cancel`
        does, with `DeadlineExceededError` as its error type), wherever it stands: running,
        sleeping or waiting for a signal."""
        from .signals import check_seconds

        value = check_seconds(f"workflow '{self.name}': .deadline({seconds!r})", seconds, zero=False)
        return Workflow(self.name, self.input_type, self._steps, self.version_tag, value)

    def step(
        self,
        name: str,
        handler: Handler[T],
        *,
        retries: int | None = None,
        timeout: float | None = None,
        when: Condition[T] | None = None,
        compensate: Handler[T] | None = None,
        backoff: Backoff | None = None,
        retry_on: tuple[type[BaseException], ...] | None = None,
    ) -> Workflow[T]:
        """Add a step: at-least-once (a crash mid-step runs it again on recovery)."""
        return self._add("step", name, handler, retries, timeout, when, compensate, backoff, retry_on)

    def commit(
        self,
        name: str,
        handler: Handler[T],
        *,
        retries: int | None = None,
        timeout: float | None = None,
        when: Condition[T] | None = None,
        compensate: Handler[T] | None = None,
        backoff: Backoff | None = None,
        retry_on: tuple[type[BaseException], ...] | None = None,
    ) -> Workflow[T]:
        """Add a commit: at-most-once (its start is stored before it runs; never repeated)."""
        return self._add("commit", name, handler, retries, timeout, when, compensate, backoff, retry_on)

    def _add(
        self,
        kind: StepKind,
        name: str,
        handler: Handler[T],
        retries: int | None,
        timeout: float | None,
        when: Condition[T] | None,
        compensate: Handler[T] | None,
        backoff: Backoff | None,
        retry_on: tuple[type[BaseException], ...] | None,
    ) -> Workflow[T]:
        where = f"workflow '{self.name}'"
        if not isinstance(name, str) or not name.strip():
            raise WorkflowDefinitionError(f"{where}: a step name must be a non-empty string, got {name!r}")
        where = f"{where}, step '{name}'"
        if any(s.name == name for s in self._steps):
            raise WorkflowDefinitionError(f"{where}: a step with this name already exists")
        if not callable(handler):
            raise WorkflowDefinitionError(f"{where}: the handler must be callable, got {handler!r}")
        _check_count(where, "retries", retries)
        _check_positive(where, "timeout", timeout)
        for option, fn in (("when", when), ("compensate", compensate)):
            if fn is not None and not callable(fn):
                raise WorkflowDefinitionError(f"{where}: {option} must be callable, got {fn!r}")
        if backoff is not None and not isinstance(backoff, Backoff):
            raise WorkflowDefinitionError(f"{where}: backoff must be a flux.Backoff, got {backoff!r}")
        if retry_on is not None:
            retry_on = _check_retry_on(where, retry_on)
        step: StepDefinition[T] = StepDefinition(
            name=name,
            kind=kind,
            handler=handler,
            is_async=_is_async(handler),
            retries=retries,
            timeout=timeout,
            when=when,
            compensate=compensate,
            compensate_is_async=compensate is not None and _is_async(compensate),
            backoff=backoff,
            retry_on=retry_on,
        )
        return Workflow(
            self.name, self.input_type, (*self._steps, step), self.version_tag, self.deadline_seconds
        )

    def index_of(self, step: str) -> int:
        for i, s in enumerate(self._steps):
            if s.name == step:
                return i
        return -1

    def shape(self) -> list[list[str]]:
        """Step names and kinds in order: what a run stores to detect changed definitions."""
        return [[s.name, s.kind] for s in self._steps]

    def __repr__(self) -> str:
        return f"<Workflow {self.name!r} steps={[s.name for s in self._steps]}>"


def _check_count(where: str, option: str, value: object) -> None:
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 0):
        raise WorkflowDefinitionError(f"{where}: {option} must be an int >= 0, got {value!r}")


def _check_positive(where: str, option: str, value: object) -> None:
    if value is not None and (
        isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0
    ):
        raise WorkflowDefinitionError(f"{where}: {option} must be a number of seconds > 0, got {value!r}")


def _check_retry_on(where: str, retry_on: object) -> tuple[type[BaseException], ...]:
    if isinstance(retry_on, type):
        retry_on = (retry_on,)
    if not isinstance(retry_on, tuple) or not all(
        isinstance(t, type) and issubclass(t, BaseException) for t in retry_on
    ):
        raise WorkflowDefinitionError(
            f"{where}: retry_on must be a tuple of exception types, got {retry_on!r}"
        )
    return retry_on


@overload
def create_workflow(name: str) -> Workflow[Any]: ...
@overload
def create_workflow(name: str, input_type: type[U]) -> Workflow[U]: ...
def create_workflow(name: str, input_type: Any = None) -> Workflow[Any]:
    """Start a workflow definition."""
    if not isinstance(name, str) or not name.strip():
        raise WorkflowDefinitionError(f"a workflow name must be a non-empty string, got {name!r}")
    flow: Workflow[Any] = Workflow(name)
    return flow.input(input_type) if input_type is not None else flow
