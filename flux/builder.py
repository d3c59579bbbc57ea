"""The chainable, typed workflow builder: `create_workflow(name).input(T).step(...)`."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any, Generic, Literal, TypeVar, overload

from .backoff import Backoff
from .context import WorkflowContext
from .errors import WorkflowDefinitionError
from .validation import check_input_type

T = TypeVar("T")
U = TypeVar("U")

Handler = Callable[[WorkflowContext[T]], Any]
Condition = Callable[[WorkflowContext[T]], bool]
StepKind = Literal["step", "commit", "parallel", "map", "call"]
ItemsFn = Callable[[WorkflowContext[T]], Any]


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
    #: The parallel group this step is a branch of (SPEC §11).
    group: str | None = None
    #: A parallel group's branch names, in order.
    branches: tuple[str, ...] = ()
    #: A map's items function and how many items run at once.
    items: ItemsFn[T] | None = None
    max_concurrency: int = 8
    #: A call's child workflow and its input function.
    child: Workflow[Any] | None = None
    child_input: Handler[T] | None = None

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
        where = self._where_new(name)
        return self._with(
            _definition(where, kind, name, handler, retries, timeout, when, compensate, backoff, retry_on)
        )

    def parallel(self, name: str, *branches: StepDefinition[T]) -> Workflow[T]:
        """Add a group of branches that run at the same time (SPEC §11); build each with
        `flux.step` or `flux.commit`. The group ends when every branch has."""
        where = self._where_new(name)
        if not branches:
            raise WorkflowDefinitionError(f"{where}: a parallel group needs at least one branch")
        seen: set[str] = set()
        for b in branches:
            if not isinstance(b, StepDefinition) or b.kind not in ("step", "commit") or b.group is not None:
                raise WorkflowDefinitionError(
                    f"{where}: a branch must be built with flux.step(...) or flux.commit(...), got {b!r}"
                )
            if b.name == name or b.name in seen or self._has(b.name):
                raise WorkflowDefinitionError(
                    f"{where}, branch '{b.name}': a step with this name already exists in the workflow"
                )
            seen.add(b.name)
        group: StepDefinition[T] = StepDefinition(
            name=name, kind="parallel", handler=_no_handler, is_async=False,
            branches=tuple(b.name for b in branches),
        )  # fmt: skip
        members = tuple(replace(b, group=name) for b in branches)
        return self._with(group, *members)

    def map(
        self,
        name: str,
        handler: Handler[T],
        *,
        items: ItemsFn[T],
        max_concurrency: int = 8,
        retries: int | None = None,
        timeout: float | None = None,
        compensate: Handler[T] | None = None,
        backoff: Backoff | None = None,
        retry_on: tuple[type[BaseException], ...] | None = None,
    ) -> Workflow[T]:
        """Run `handler` once per item of `items(ctx)` (evaluated once and stored), with
        `ctx.item` and `ctx.item_index`, at most `max_concurrency` at a time; the output is
        the list of results in item order (SPEC §11)."""
        where = self._where_new(name)
        if not callable(items):
            raise WorkflowDefinitionError(f"{where}: items must be a function of ctx, got {items!r}")
        if isinstance(max_concurrency, bool) or not isinstance(max_concurrency, int) or max_concurrency < 1:
            raise WorkflowDefinitionError(
                f"{where}: max_concurrency must be an int >= 1, got {max_concurrency!r}"
            )
        one = _definition(where, "step", name, handler, retries, timeout, None, compensate, backoff, retry_on)
        return self._with(replace(one, kind="map", items=items, max_concurrency=max_concurrency))

    def call(self, name: str, child: Workflow[Any], *, input: Handler[T] | None = None) -> Workflow[T]:
        """Start `child` as a run of its own (id "<parent id>/<name>") and wait for its end
        without holding this run; the step's output is the child's final data (SPEC §11)."""
        where = self._where_new(name)
        if not isinstance(child, Workflow):
            raise WorkflowDefinitionError(f"{where}: .call() needs a workflow, got {child!r}")
        if child.name == self.name:
            raise WorkflowDefinitionError(f"{where}: a workflow cannot call itself ('{child.name}')")
        if input is not None and not callable(input):
            raise WorkflowDefinitionError(f"{where}: input must be a function of ctx, got {input!r}")
        step: StepDefinition[T] = StepDefinition(
            name=name, kind="call", handler=_no_handler, is_async=False, child=child, child_input=input
        )
        return self._with(step)

    def _has(self, name: str) -> bool:
        return any(s.name == name for s in self._steps)

    def _where_new(self, name: str) -> str:
        where = f"workflow '{self.name}'"
        if not isinstance(name, str) or not name.strip():
            raise WorkflowDefinitionError(f"{where}: a step name must be a non-empty string, got {name!r}")
        where = f"{where}, step '{name}'"
        if self._has(name):
            raise WorkflowDefinitionError(f"{where}: a step with this name already exists")
        return where

    def _with(self, *steps: StepDefinition[T]) -> Workflow[T]:
        return Workflow(
            self.name, self.input_type, (*self._steps, *steps), self.version_tag, self.deadline_seconds
        )

    def index_of(self, step: str) -> int:
        for i, s in enumerate(self._steps):
            if s.name == step:
                return i
        return -1

    def shape(self) -> list[list[str]]:
        """Step names and kinds in order: what a run stores to detect changed definitions
        (a group, a map and a call are steps of their kind; a group's branches follow it)."""
        return [[s.name, s.kind] for s in self._steps]

    @overload
    def graph(self, format: Literal["mermaid"] = "mermaid") -> str: ...
    @overload
    def graph(self, format: Literal["json"]) -> dict[str, Any]: ...
    @overload
    def graph(self, format: str) -> str | dict[str, Any]: ...
    def graph(self, format: str = "mermaid") -> str | dict[str, Any]:
        """The graph (SPEC §11): Mermaid `flowchart TD` text, or the same graph as data
        (`format="json"`); see `flux.graph`."""
        from .graph import graph

        return graph(self, format)

    def __repr__(self) -> str:
        return f"<Workflow {self.name!r} steps={[s.name for s in self._steps]}>"


def _no_handler(ctx: Any) -> Any:  # pragma: no cover - a group or a call is never called
    raise AssertionError("a parallel group or a call has no handler of its own")


def _definition(
    where: str,
    kind: StepKind,
    name: str,
    handler: Handler[T],
    retries: int | None,
    timeout: float | None,
    when: Condition[T] | None,
    compensate: Handler[T] | None,
    backoff: Backoff | None,
    retry_on: tuple[type[BaseException], ...] | None,
) -> StepDefinition[T]:
    """A step checked where it is written: `where` names the workflow (if any) and the step."""
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
    return StepDefinition(
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


def _branch(
    kind: StepKind,
    name: str,
    handler: Handler[T],
    retries: int | None,
    timeout: float | None,
    when: Condition[T] | None,
    compensate: Handler[T] | None,
    backoff: Backoff | None,
    retry_on: tuple[type[BaseException], ...] | None,
) -> StepDefinition[T]:
    if not isinstance(name, str) or not name.strip():
        raise WorkflowDefinitionError(
            f"flux.{kind}(): a branch name must be a non-empty string, got {name!r}"
        )
    where = f"flux.{kind}('{name}')"
    return _definition(where, kind, name, handler, retries, timeout, when, compensate, backoff, retry_on)


def step(
    name: str,
    handler: Handler[T],
    *,
    retries: int | None = None,
    timeout: float | None = None,
    when: Condition[T] | None = None,
    compensate: Handler[T] | None = None,
    backoff: Backoff | None = None,
    retry_on: tuple[type[BaseException], ...] | None = None,
) -> StepDefinition[T]:
    """A branch for `.parallel(...)`: the options of `Workflow.step` (at-least-once)."""
    return _branch("step", name, handler, retries, timeout, when, compensate, backoff, retry_on)


def commit(
    name: str,
    handler: Handler[T],
    *,
    retries: int | None = None,
    timeout: float | None = None,
    when: Condition[T] | None = None,
    compensate: Handler[T] | None = None,
    backoff: Backoff | None = None,
    retry_on: tuple[type[BaseException], ...] | None = None,
) -> StepDefinition[T]:
    """A branch for `.parallel(...)` that is at-most-once, as `Workflow.commit`."""
    return _branch("commit", name, handler, retries, timeout, when, compensate, backoff, retry_on)


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
