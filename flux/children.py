"""Child runs: a `.call` step starts a run of another workflow and waits for its end
(SPEC §11). The run machine sees a call as a step; this is its handler, run by the driver.

The child's id is "<parent id>/<step>", so that a call invoked again (after a crash, or
when its parent wakes) finds the same child and never starts a second one. Under
`execute` the child is driven in this process at once and the step ends with its outcome.
Under a worker (`work`, `flux worker`) the child is stored `pending` for any worker, and
the step asks the machine to suspend the parent on "child:<id>": it holds nothing while the
child runs. The storage write that ends the child makes the parent due (`storage._children`)
and the parent's call step runs again (`core.timers`), reading the child's outcome.
"""

from __future__ import annotations

import inspect
import time
from typing import TYPE_CHECKING, Any

from . import serialization as ser
from .core.messages import AttemptEnded, Invoke, Started
from .errors import (
    ChildWorkflowError,
    RunConflictError,
    RunNotFoundError,
    RunStateError,
    WorkflowVersionError,
)
from .events import stack_of
from .records import RunRecord
from .status import RUN_TERMINAL, RunStatus
from .storage._children import waiting_for

if TYPE_CHECKING:
    from .builder import StepDefinition, Workflow
    from .driver import RunDriver
    from .engine import FluxEngine


def child_id(parent_id: str, step: str) -> str:
    return f"{parent_id}/{step}"


async def invoke_call(driver: RunDriver, sdef: StepDefinition[Any], effect: Invoke) -> AttemptEnded:
    """Start the child run (once: its id is "<parent id>/<step>") or look at it, and say how
    the call step ends: with the child's data, its error, or a wait for its end."""
    started = time.perf_counter()
    name = effect.step
    parent = driver.run
    data_json = parent.data_json  # a call leaves the parent's data as it was
    try:
        assert sdef.child is not None
        child = await _child(driver, sdef, sdef.child, effect)
        if parent.cancel_reason is not None:
            raise driver.interruption()
        if child.status is RunStatus.COMPLETED:
            output_json = child.data_json
            driver.outputs[name] = ser.loads(output_json)
            driver.outputs_json[name] = output_json
            duration = time.perf_counter() - started
            return AttemptEnded(name, duration, output_json=output_json, data_json=data_json)
        if child.status in RUN_TERMINAL:
            failure = ChildWorkflowError(
                f"step '{name}' of run '{parent.id}' ({parent.name}): child run '{child.id}' "
                f"({child.name}) ended {child.status.value}: {child.error_type or 'error'}: {child.error}"
            )
            # A child whose commit may have happened: the parent is not undone either (SPEC §5)
            failure.uncertain = child.error_type == "CommitInterruptedError"  # type: ignore[attr-defined]
            raise failure
        return AttemptEnded(
            name, time.perf_counter() - started, signal=waiting_for(child.id), data_json=data_json
        )
    except Exception as exc:
        stack = stack_of(exc) if driver.trace is not None else None
        return AttemptEnded(name, time.perf_counter() - started, error=exc, stack=stack)


async def _child(
    driver: RunDriver, sdef: StepDefinition[Any], flow: Workflow[Any], effect: Invoke
) -> RunRecord:
    """The child run as it stands once this call has done its part: created if it was not,
    and, under `execute`, driven in this process as far as it goes."""
    engine = driver.engine
    parent = driver.run
    run_id = child_id(parent.id, effect.step)
    if len(run_id) > 255:
        raise ChildWorkflowError(
            f"step '{effect.step}' of run '{parent.id}' ({parent.name}): the child's id '{run_id[:40]}...' "
            f"would be {len(run_id)} characters, more than 255: use a shorter run id or step name"
        )
    if parent.cancel_reason is not None:
        raise driver.interruption()
    inline = engine._drives_inline(parent.id)
    child = await engine.storage.load_run(run_id)
    if child is None:
        value = driver.input
        if sdef.child_input is not None:
            # on a copy of the data: a call never changes its parent's data, whoever drives it
            value = sdef.child_input(
                driver.ctx(effect.step, effect.attempt, data=ser.loads(parent.data_json))
            )
            if inspect.isawaitable(value):
                value = await driver.interruptibly(value)
        created = await _start(engine, flow, run_id, parent.id, value, inline=inline)
        if created is not None:
            return created
        child = await engine.storage.load_run(run_id)  # created meanwhile: take that one
        assert child is not None, f"child run '{run_id}' vanished from the storage"
    if child.parent_id == parent.id and child.name != flow.name:
        raise WorkflowVersionError(
            f"step '{effect.step}' of run '{parent.id}' ({parent.name}) started its child '{run_id}' as "
            f"a run of workflow '{child.name}'; the definition now calls '{flow.name}'"
        )
    if child.name != flow.name or child.parent_id != parent.id:
        raise RunConflictError(  # never retried (machine.may_retry): the id stays taken
            f"step '{effect.step}' of run '{parent.id}' ({parent.name}): run '{run_id}' exists "
            f"as a run of workflow '{child.name}' that this run did not start"
        )
    if inline and child.status not in RUN_TERMINAL:
        return await _continue(engine, flow, child)
    return child


async def _start(
    engine: FluxEngine, flow: Workflow[Any], run_id: str, parent_id: str, input: Any, *, inline: bool
) -> RunRecord | None:
    """Store the child run (None if its id exists): driven here at once if `inline`, else
    `pending` for any worker. Returns it as it stands then."""
    from .engine import _new_run

    value, input_json = engine._prepare_input(flow, input)
    lease = engine.leases.new() if inline else None
    status = RunStatus.RUNNING if inline else RunStatus.PENDING
    run = _new_run(flow, run_id, input_json, status, lease, engine.clock.now())
    run.parent_id = parent_id
    if not await engine.storage.create_run(run):
        return None
    if not inline:
        return run
    await engine._drive(flow, run, Started(), value)
    return await _reload(engine, run_id)


async def _continue(engine: FluxEngine, flow: Workflow[Any], child: RunRecord) -> RunRecord:
    """Bring a stored child forward here, as `execute` would (taken if nobody holds it)."""
    await engine._wait_active(child.id)
    await engine._continue(flow, child, reason="call")
    return await _reload(engine, child.id)


async def _reload(engine: FluxEngine, run_id: str) -> RunRecord:
    run = await engine.storage.load_run(run_id)
    if run is None:
        raise RunNotFoundError(f"run '{run_id}' vanished from the storage")
    return run


async def cancel_children(engine: FluxEngine, run: RunRecord, reason: str) -> None:
    """Cancel the unfinished child runs of `run` (started by its `.call` steps), and theirs
    (each cancel cascades in turn)."""
    if not any(s.kind == "call" for s in run.steps):
        return
    why = f"its parent run '{run.id}' was cancelled: {reason}"
    for child in await engine.storage.list_runs(parent_id=run.id, limit=10_000):
        if child.status in RUN_TERMINAL:
            continue
        try:
            await engine.cancel(child.id, why)
        except RunStateError:
            now = await engine.storage.load_run(child.id)
            if now is not None and now.status not in RUN_TERMINAL:
                raise  # not "it ended meanwhile": say why it cannot be cancelled
