"""The driver: carries out what the run machine decides, and feeds the outcomes back.

One `RunDriver` per run an engine holds. `run(event)` asks `flux.core.decide` what to do
and does it: saves through the storage, emits trace events, calls handlers (through
`flux.attempts`), waits out backoffs, calls hooks and logs. It makes no decision of its own
beyond turning what happened into the machine's next event.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import threading
import time
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from . import serialization as ser
from .builder import StepDefinition, Workflow
from .context import StepExecution, WorkflowContext
from .core import Memo, Plan, decide
from .core.messages import (
    AttemptEnded,
    BackoffEnded,
    CompensationEnded,
    Done,
    Effect,
    Emit,
    Event,
    Hook,
    Interrupt,
    Invoke,
    ItemsEnded,
    Log,
    Outputs,
    Pause,
    Proceed,
    Proceeded,
    Save,
    SaveFailed,
    Timer,
    Wait,
    WhenEnded,
    Woke,
)
from .errors import (
    LeaseLostError,
    RunCancelledError,
    SerializationError,
    StorageError,
    WorkflowDefinitionError,
)
from .events import stack_of
from .records import RunRecord, StepRecord
from .signals import RequestError, SleepRequest, WaitRequest
from .status import RunStatus, StepStatus

if TYPE_CHECKING:
    from .engine import FluxEngine

_PLAIN = frozenset({str, int, float, bool, type(None)})


def _seen(plan: Plan, run: RunRecord) -> list[StepRecord]:
    """The records whose outputs the run's steps see: not a map's items (the map's list has
    them), nor the branches of a group that has not ended (as in an uninterrupted run)."""
    steps = run.steps[: len(plan.steps)]
    if not any(sp.group is not None for sp in plan.steps):
        return steps
    open_groups = {
        sp.name
        for sp in plan.steps
        if sp.kind == "parallel" and steps[sp.index].status is not StepStatus.COMPLETED
    }
    return [rec for sp, rec in zip(plan.steps, steps, strict=True) if sp.group not in open_groups]


def stored_outputs(steps: list[StepRecord]) -> dict[str, Any]:
    """Step name → output, decoded, for the steps that completed."""
    return {
        s.name: ser.loads(s.output_json)
        for s in steps
        if s.status is StepStatus.COMPLETED and s.output_json is not None
    }


class RunDriver:
    def __init__(
        self, engine: FluxEngine, flow: Workflow[Any], plan: Plan, run: RunRecord, input: Any
    ) -> None:
        self.engine = engine
        self.flow = flow
        self.sdefs = flow.steps
        self.plan = plan
        self.run = run
        self.input = input
        self.memo = Memo()
        #: The branches and map items in flight (attempts and backoffs), by step name.
        self.members: dict[str, asyncio.Task[Event]] = {}
        self.member_cancels: dict[str, threading.Event] = {}
        self.backoffs: set[str] = set()
        self._group_data: tuple[str, Any] | None = None
        #: A map's stored items, decoded once: what `ctx.item` is read from.
        self.items: dict[str, list[Any]] = {}
        self.outputs: dict[str, Any] = stored_outputs(_seen(plan, run))
        self.outputs_view = MappingProxyType(self.outputs)
        #: The stored text of each output: what a context's own copies are decoded from.
        self.outputs_json: dict[str, str | None] = {
            s.name: s.output_json for s in run.steps if s.name in self.outputs
        }
        self._data: dict[str, Any] | None = None
        self._data_src: str | None = None
        self.trace = engine.trace
        self.emit_raw = getattr(self.trace, "emit_raw", None)
        self.owner: str | None = engine.owner
        #: Set from outside (cancel, lost lease) while an attempt or a backoff is awaited.
        self.task: asyncio.Task[Any] | None = None
        self.interruptible = False
        self.interrupted = False
        self.lost = False
        self.cancel_event: threading.Event | CancelFlag | None = None
        #: `ctx.cancelled` of the attempts that run on the loop's thread (set by a cancel).
        self.run_cancel = CancelFlag()
        #: The context the last attempt ran with, for the hooks that follow it.
        self._hook_ctx: WorkflowContext[Any] | None = None
        self._save_failed = False

    # ------------------------------------------------------------------ the loop

    async def drive(self, event: Event) -> None:
        self.task = asyncio.current_task()
        try:
            await self._drive(event)
        finally:
            self._hook_ctx = None  # no cycle through a context outlives the run
            self.task = None
            if self.members:  # the run stopped (a lost lease, a storage error): so do its members
                await self.stop_members()

    async def _drive(self, event: Event) -> None:
        next_event: Event | None = event
        flag = self.run_cancel
        clock = self.engine.clock
        while next_event is not None:
            if flag._set and not self.interrupted and self.run.cancel_reason is None:
                # The heartbeat thread saw a cancel (or a lost lease) while a sync handler held
                # this loop: let its message reach us before the machine decides what is next.
                await asyncio.sleep(0)
            effects = decide(self.run, self.plan, next_event, clock.now(), self.memo)
            next_event = None
            if self.members:
                # Members that ended meanwhile are decided now too: their rows go to storage
                # in one write, before anything that follows them is done.
                while _batchable(effects) and (ready := self.ended_member()) is not None:
                    effects.extend(decide(self.run, self.plan, ready, clock.now(), self.memo))
            if len(effects) > 2:
                saves = 0
                for effect in effects:
                    if type(effect) is Save:
                        saves += 1
                if saves > 1:
                    effects = _one_save(effects)
            for effect in effects:
                kind = type(effect)
                # the effects that need no waiting are done here, without a coroutine each
                if kind is Save:
                    next_event = await self.save(effect)  # type: ignore[arg-type]
                elif kind is Invoke:
                    next_event = await self.invoke(effect)  # type: ignore[arg-type]
                elif kind is Emit:
                    self.emit(effect)  # type: ignore[arg-type]
                elif kind is Outputs:
                    self.outputs_changed(effect)  # type: ignore[arg-type]
                elif kind is Log:
                    self.log(effect)  # type: ignore[arg-type]
                elif kind is Proceed:
                    next_event = Proceeded(effect.step)  # type: ignore[union-attr, arg-type]
                elif kind is Interrupt:
                    self.interrupt_members(effect.steps)  # type: ignore[union-attr]
                elif kind is not Done:
                    next_event = await self.perform(effect)
                if next_event is not None:
                    break
            if next_event is None and self.members:
                next_event = await self.next_member_event()

    async def perform(self, effect: Effect) -> Event | None:
        kind = type(effect)
        if kind is Save:
            return await self.save(effect)  # type: ignore[arg-type]
        if kind is Invoke:
            return await self.invoke(effect)  # type: ignore[arg-type]
        if kind is Hook:
            await self.hook(effect)  # type: ignore[arg-type]
            return None
        if kind is Wait:
            if effect.concurrent:  # type: ignore[union-attr]
                self.spawn(effect.step, self.member_wait(effect), backoff=True)  # type: ignore[union-attr, arg-type]
                return None
            return await self.wait(effect)  # type: ignore[arg-type]
        if kind is Pause:
            return await self.pause(effect)  # type: ignore[arg-type]
        raise TypeError(f"driver: no way to carry out {effect!r}")  # pragma: no cover - a bug

    def log(self, effect: Log) -> None:
        log = getattr(self.engine.logger, effect.level)
        extra: dict[str, Any] = {"exc": effect.error} if effect.level == "error" else {}
        if effect.step is not None:
            extra["step"] = effect.step
        log(effect.message, workflow=self.run.name, run=self.run.id, **extra)

    # ------------------------------------------------------------------ effects

    @property
    def data(self) -> dict[str, Any]:
        """The live `ctx.data`: the stored data, decoded once per change."""
        if self._data is None or self._data_src is not self.run.data_json:
            self._data = ser.loads(self.run.data_json)
            self._data_src = self.run.data_json
        return self._data

    async def save(self, effect: Save) -> Event | None:
        if self.lost:
            raise self.lease_lost()
        run = self.run
        run.updated_at = self.engine.clock.now()
        run.rev += 1
        steps = effect.indexes
        if steps is None:
            index = self.plan.by_name
            where = self.memo.where
            steps = tuple(index[n].index if n in index else where.get(n, -1) for n in effect.steps)
            if -1 in steps:  # a map item not looked up yet in this execution
                at = {rec.name: i for i, rec in enumerate(run.steps)}
                steps = tuple(at[n] for n in effect.steps)
        storage = self.engine.storage
        try:
            await storage.save_run(run, steps, self.owner)
        except LeaseLostError:
            self.lost = True
            raise
        except StorageError as first:
            # Is the storage reachable at all? Then the same write once more (it is
            # idempotent), on a new connection if the old one was lost.
            try:
                stored = await storage.load_run(run.id)
            except StorageError:
                await self.engine.leases.release(run.id)
                raise first from None
            try:
                await storage.save_run(run, steps, self.owner)
            except LeaseLostError:
                self.lost = True
                raise
            except StorageError as again:
                if self._save_failed or stored is None:
                    await self.engine.leases.release(run.id)
                    raise
                # Reachable, yet this write keeps failing: it is the run's own state. Put the
                # run to rest, failed with a named error, so that no worker claims it forever.
                self._save_failed = True
                from .versions import adopt_definition

                adopt_definition(self.flow, stored)
                self.run = stored
                return SaveFailed(again)
        return None

    def emit(self, effect: Emit) -> None:
        if self.trace is None:
            return
        run = self.run
        event = {
            "v": 1,
            "seq": effect.seq,
            "type": effect.kind,
            "timestamp": effect.timestamp,
            "workflowId": run.id,
            "workflowName": run.name,
            **effect.fields,
        }
        try:
            raw = effect.raw
            if raw is None:
                self.trace.emit(event)
            elif self.emit_raw is not None:
                self.emit_raw(event, raw)
            else:
                event.update({key: ser.loads_plain(text) for key, text in raw.items()})
                self.trace.emit(event)
        except Exception as exc:  # a sink never fails a run
            self.engine.logger.error(f"trace sink failed: {exc!r}", run=run.id, workflow=run.name, exc=exc)

    def outputs_changed(self, effect: Outputs) -> None:
        for name, text in effect.set.items():
            self.outputs_json[name] = text
            self.outputs[name] = ser.loads(text)
        for name in effect.drop:
            self.outputs.pop(name, None)
            self.outputs_json.pop(name, None)

    def ctx(
        self,
        step: str,
        attempt: int,
        data: dict[str, Any] | None = None,
        cancel: threading.Event | CancelFlag | None = None,
    ) -> WorkflowContext[Any]:
        return WorkflowContext(
            id=self.run.id,
            name=self.run.name,
            input=self.input,
            data=self.data if data is None else data,
            outputs=self.outputs_view,
            step_name=step,
            attempt=attempt,
            history=self.history,
            cancel=cancel,
            outputs_json=self.outputs_json,
        )

    def history(self) -> list[StepExecution]:
        from .history import build_history

        return build_history(self.run.steps, self.outputs)

    async def invoke(self, effect: Invoke) -> Event | None:
        if effect.concurrent:
            self.spawn(effect.step, self.invoke_member(effect))
            return None
        sdef: StepDefinition[Any] = self.sdefs[effect.index]
        name = effect.step
        if effect.what == "items":
            return await self.invoke_items(sdef, effect)
        if sdef.kind == "call" and effect.what == "handler":
            from .children import invoke_call

            if "step_start" in self.plan.hooks:  # its step_complete follows: they come in pairs
                await self.engine._call_hook("step_start", name, self.ctx(name, effect.attempt))
            return await invoke_call(self, sdef, effect)
        if effect.what == "when":
            assert sdef.when is not None
            try:
                go: Any = sdef.when(self.ctx(name, effect.attempt))
                if inspect.isawaitable(go):
                    go = await self.interruptibly(go)
            except Exception as exc:
                return WhenEnded(name, error=exc)
            return WhenEnded(name, go=bool(go))
        compensate = effect.what == "compensate"
        fn = sdef.compensate if compensate else sdef.handler
        is_async = sdef.compensate_is_async if compensate else sdef.is_async
        assert fn is not None
        abandonable = effect.timeout is not None
        # A handler that may be abandoned at its timeout (sync or async) runs on its own copy
        # of the data, so that its late writes land nowhere, with a cancel flag of its own.
        cancel = threading.Event() if abandonable else None if compensate else self.run_cancel
        data = ser.loads(self.run.data_json) if abandonable else None
        ctx = self.ctx(name, effect.attempt, data=data, cancel=cancel)
        if effect.item is not None:  # a map item's compensation
            self.set_item(ctx, effect)
        self.cancel_event = cancel
        if not compensate and "step_start" in self.plan.hooks:
            await self.engine._call_hook("step_start", name, ctx)
        started = time.perf_counter()
        try:
            if effect.timeout is None and not self.interrupted:
                result = fn(ctx)  # the fast path: inline, as a plain loop would call it
                if is_async or (type(result) not in _PLAIN and inspect.isawaitable(result)):
                    # `interruptibly` written out: one coroutine less on every async step
                    self.interruptible = True
                    try:
                        result = await result
                    except asyncio.CancelledError:
                        if not self.was_interrupted():
                            raise
                        self.uncancel()
                        raise self.interruption() from None
                    finally:
                        self.interruptible = False
            else:
                call = self.engine.attempts.call(
                    fn, ctx, is_async=is_async, timeout=effect.timeout,
                    cancel=cancel if isinstance(cancel, threading.Event) else None,
                    key=(self.run.id, name), timeout_error=lambda: self.timeout_error(effect),
                )  # fmt: skip
                result = await self.interruptibly(call)
            if not isinstance(ctx.data, dict):
                raise SerializationError(
                    f"ctx.data must stay a dict in step '{name}', got {type(ctx.data).__name__}",
                    path="data",
                    step=name,
                )
            if compensate:
                data_json = ser.dumps(ctx.data, path="data", step=name)
                return CompensationEnded(name, time.perf_counter() - started, data_json=data_json)
            if isinstance(result, (WaitRequest, SleepRequest)):
                data_json = ser.dumps(ctx.data, path="data", step=name)
                if isinstance(result, SleepRequest):
                    timer = Timer("sleep", result.seconds, result.until)
                elif result.timeout is not None:
                    default = (
                        ser.dumps(result.default, path=f"outputs.{name}", step=name)
                        if result.has_default
                        else None
                    )
                    timer = Timer("wait", result.timeout, signal=result.signal, default_json=default)
                else:
                    return AttemptEnded(
                        name, time.perf_counter() - started, signal=result.signal, data_json=data_json
                    )
                return AttemptEnded(name, time.perf_counter() - started, data_json=data_json, timer=timer)
            output_json = ser.dumps(result, path=f"outputs.{name}", step=name)
            data_json = ser.dumps(ctx.data, path="data", step=name)
        except Exception as exc:
            duration = time.perf_counter() - started
            self._data = None  # a failed attempt's changes are discarded
            if isinstance(exc, RequestError):
                # a bad Flux.sleep / Flux.wait written in the handler: name where it is
                exc = WorkflowDefinitionError(
                    f"workflow '{self.run.name}', step '{name}' (run '{self.run.id}'): {exc}"
                ).with_traceback(exc.__traceback__)
            stack = stack_of(exc) if self.trace is not None else None
            if compensate:
                return CompensationEnded(name, duration, error=exc, stack=stack)
            if self.plan.hooks:  # kept only for a hook: a context refers back to this driver
                self._hook_ctx = ctx
            return AttemptEnded(name, duration, error=exc, stack=stack)
        finally:
            self.cancel_event = None
        if self.plan.hooks:
            self._hook_ctx = ctx
        # What later steps see is what a resumed run reads back from storage (a plain value
        # is the same either way). The machine stores every attempt that succeeded.
        self.outputs[name] = result if type(result) in _PLAIN else ser.loads(output_json)
        self.outputs_json[name] = output_json
        self._data = ser.loads(data_json)
        self._data_src = data_json  # what the machine stores as the run's data
        return AttemptEnded(name, time.perf_counter() - started, output_json=output_json, data_json=data_json)

    # ------------------------------------------------------------------ branches and items

    def spawn(self, step: str, work: Any, backoff: bool = False) -> None:
        task = asyncio.ensure_future(work)
        if backoff:
            self.backoffs.add(step)
        self.members[step] = task

    def ended_member(self) -> Event | None:
        """The outcome of the member that ended first among those that have (without waiting)."""
        first: Event | None = None
        first_at = 0.0
        for name, task in self.members.items():
            if not task.done():
                continue
            event = self._outcome(name, task)
            at = getattr(event, "at", None)
            if at is None:  # a backoff or an interruption: no time of its own, taken at once
                first = event
                break
            if first is None or at < first_at:
                first, first_at = event, at
        if first is None:
            return None
        name = first.step  # type: ignore[union-attr]
        self.member_cancels.pop(name, None)
        self.backoffs.discard(name)
        del self.members[name]
        return first

    def _outcome(self, name: str, task: asyncio.Task[Event]) -> Event:
        if not task.cancelled():
            return task.result()
        # interrupted before it began: what it would have said had it begun
        if name in self.backoffs:
            return BackoffEnded(name)
        error = self.lease_lost() if self.lost else RunCancelledError(
            f"step '{name}' of run '{self.run.id}' ({self.run.name}) was cancelled"
        )  # fmt: skip
        return AttemptEnded(name, 0.0, error=error)

    async def next_member_event(self) -> Event:
        """The outcome of the first member to end."""
        event = self.ended_member()
        while event is None:
            await asyncio.wait(self.members.values(), return_when=asyncio.FIRST_COMPLETED)
            event = self.ended_member()
        return event

    def interrupt_members(self, steps: tuple[str, ...]) -> None:
        for name in steps:
            cancel = self.member_cancels.get(name)
            if cancel is not None:
                cancel.set()
            task = self.members.get(name)
            if task is not None:
                task.cancel()

    async def stop_members(self) -> None:
        tasks = list(self.members.values())
        self.interrupt_members(tuple(self.members))
        self.members.clear()
        self.member_cancels.clear()
        await asyncio.gather(*tasks, return_exceptions=True)

    def set_item(self, ctx: WorkflowContext[Any], effect: Invoke) -> None:
        group = effect.group
        assert group is not None and effect.item is not None
        items = self.items.get(group)
        if items is None:
            text = self.run.steps[self.plan.by_name[group].index].items_json
            items = self.items[group] = ser.loads(text) if text is not None else []
        ctx.item = items[effect.item]
        ctx.item_index = effect.item

    async def invoke_items(self, sdef: StepDefinition[Any], effect: Invoke) -> Event:
        """Evaluate a map's `items(ctx)` once; the machine stores what it returned."""
        assert sdef.items is not None
        name = effect.step
        where = f"workflow '{self.run.name}', map '{name}' (run '{self.run.id}')"
        try:
            items = sdef.items(self.ctx(name, effect.attempt))
            if inspect.isawaitable(items):
                items = await self.interruptibly(items)
            if not isinstance(items, list):
                raise WorkflowDefinitionError(
                    f"{where}: items() must return a list, got {type(items).__name__}"
                )
            text = ser.dumps(items, path=f"{name}.items", step=name)
        except Exception as exc:
            return ItemsEnded(name, error=exc)
        return ItemsEnded(name, text, len(items))

    async def invoke_member(self, effect: Invoke) -> Event:
        """One attempt of a branch or a map item, beside the others: on its own copy of the
        data as it stood when the group began, its changes reported as a delta."""
        sdef: StepDefinition[Any] = self.sdefs[effect.index]
        name = effect.step
        assert effect.data_json is not None
        # The group's starting data, decoded once per group (only read, by `_delta`); each
        # member gets its own copy to change.
        cached = self._group_data
        if cached is None or cached[0] is not effect.data_json:
            cached = self._group_data = (effect.data_json, ser.loads(effect.data_json))
        before = cached[1]
        data = ser.loads(effect.data_json)
        cancel = self.member_cancels[name] = threading.Event()
        ctx = self.ctx(name, effect.attempt, data=data, cancel=cancel)
        if effect.item is not None:
            self.set_item(ctx, effect)
        started = time.perf_counter()
        try:
            if "step_start" in self.plan.hooks:
                await self.engine._call_hook("step_start", name, ctx)
            result = await self.engine.attempts.call(
                sdef.handler, ctx, is_async=sdef.is_async, timeout=effect.timeout, cancel=cancel,
                key=(self.run.id, name), timeout_error=lambda: self.timeout_error(effect), thread=True,
            )  # fmt: skip
            if not isinstance(ctx.data, dict):
                raise SerializationError(
                    f"ctx.data must stay a dict in step '{name}', got {type(ctx.data).__name__}",
                    path="data",
                    step=name,
                )
            if isinstance(result, SleepRequest):
                return AttemptEnded(name, time.perf_counter() - started, timer=Timer("sleep", result.seconds))
            if isinstance(result, WaitRequest):
                return AttemptEnded(name, time.perf_counter() - started, signal=result.signal)
            output_json = ser.dumps(result, path=f"outputs.{name}", step=name)
            delta = _delta(before, ctx.data)
            delta_json = ser.dumps(delta, path="data", step=name) if delta is not None else None
        except asyncio.CancelledError:
            cancel.set()
            error: BaseException = (
                self.lease_lost()
                if self.lost
                else RunCancelledError(
                    f"step '{name}' of run '{self.run.id}' ({self.run.name}) was cancelled"
                )
            )
            return AttemptEnded(name, time.perf_counter() - started, error=error)
        except Exception as exc:
            stack = stack_of(exc) if self.trace is not None else None
            return AttemptEnded(name, time.perf_counter() - started, error=exc, stack=stack)
        took = time.perf_counter() - started
        return AttemptEnded(
            name, took, output_json=output_json, delta_json=delta_json, at=self.engine.clock.now()
        )

    async def member_wait(self, effect: Wait) -> Event:
        with contextlib.suppress(asyncio.CancelledError):  # the machine sees why next
            await self.engine.clock.sleep(self.plan.of(effect.step).backoff.delay(effect.retry))
        return BackoffEnded(effect.step)

    async def interruptibly(self, work: Any) -> Any:
        """Await `work` where a cancel or a lost lease may interrupt it."""
        if self.interrupted:
            work.close()
            raise self.interruption()
        self.interruptible = True
        try:
            return await work
        except asyncio.CancelledError:
            if not self.was_interrupted():
                raise
            self.uncancel()
            raise self.interruption() from None
        finally:
            self.interruptible = False

    def uncancel(self) -> None:
        uncancel = getattr(self.task, "uncancel", None)  # 3.11+: the cancel was ours
        if uncancel is not None:
            uncancel()

    def was_interrupted(self) -> bool:
        return self.interrupted

    def interruption(self) -> BaseException:
        if self.lost:
            return self.lease_lost()
        self.interrupted = False  # delivered: the compensations that follow run as usual
        return RunCancelledError(
            f"run '{self.run.id}' ({self.run.name}) was cancelled: {self.run.cancel_reason}"
        )

    def lease_lost(self) -> LeaseLostError:
        return LeaseLostError(
            f"run '{self.run.id}' ({self.run.name}): this process lost its lease (another process "
            "took the run over); it stops without saving anything more"
        )

    def interrupt(self, *, cancel_reason: str | None = None, lost: bool = False) -> None:
        """Called on the loop when a cancel was requested or the lease was lost."""
        if lost:
            self.lost = True
        if cancel_reason is not None and self.run.cancel_reason is None:
            self.run.cancel_reason = cancel_reason
        if not lost and self.run.status is not RunStatus.RUNNING:
            return  # rolling back already: its compensations are not interrupted
        self.interrupted = True
        if self.cancel_event is not None:
            self.cancel_event.set()
        if self.members:
            self.interrupt_members(tuple(self.members))
            if not self.interruptible:  # the members' outcomes bring the cancel to the machine
                self.interrupted = False
        if self.interruptible and self.task is not None:
            self.task.cancel()

    def timeout_error(self, effect: Invoke) -> Any:
        from .errors import StepTimeoutError

        return StepTimeoutError(
            f"step '{effect.step}' of run '{self.run.id}' ({self.run.name}) timed out after "
            f"{effect.timeout:g}s (attempt {effect.attempt})"
        )

    async def wait(self, effect: Wait) -> Event:
        sp = self.plan.by_name[effect.step]
        seconds = sp.backoff.delay(effect.retry)
        with contextlib.suppress(RunCancelledError):  # the machine sees the cancel next
            await self.interruptibly(self.engine.clock.sleep(seconds))
        return BackoffEnded(effect.step, compensation=effect.compensation)

    async def pause(self, effect: Pause) -> Event:
        """Sleep in-process until the step's wake time, on the engine's clock, holding the
        run (the heartbeat renews its lease); a cancel or a lost lease ends it early."""
        clock = self.engine.clock
        with contextlib.suppress(RunCancelledError):  # the machine sees the cancel next
            while (left := effect.until - clock.now()) > 0:
                await self.interruptibly(clock.sleep(left))
        return Woke()

    async def hook(self, effect: Hook) -> None:
        name = effect.name
        if name == "step_complete":
            ctx = self._hook_ctx or self.ctx(effect.step, effect.attempt)
            output = (
                self.outputs.get(effect.step) if effect.output_json is None else ser.loads(effect.output_json)
            )
            await self.engine._call_hook(name, effect.step, ctx, output)
        elif name == "step_error":
            ctx = self._hook_ctx or self.ctx(effect.step, effect.attempt)
            await self.engine._call_hook(name, effect.step, ctx, effect.error)
        elif name == "workflow_complete":
            await self.engine._call_hook(name, self.ctx("", 0))
        else:
            await self.engine._call_hook(name, self.ctx("", 0), effect.error)
        self._hook_ctx = None


class CancelFlag:
    """What `ctx.cancelled` reads for the attempts run on the loop's thread: set from any
    thread (a bool store is atomic), and far cheaper to make per run than an Event."""

    __slots__ = ("_set",)

    def __init__(self) -> None:
        self._set = False

    def set(self) -> None:
        self._set = True

    def is_set(self) -> bool:
        return self._set


#: Effects after which more events may be decided before any is carried out: none of them
#: feeds an event back (a concurrent invoke or backoff reports later, on its own).
_NO_EVENT = frozenset({Save, Emit, Outputs, Log, Interrupt})


def _batchable(effects: list[Effect]) -> bool:
    for effect in effects:
        kind = type(effect)
        if kind in _NO_EVENT:
            continue
        if (kind is Invoke or kind is Wait) and effect.concurrent:  # type: ignore[union-attr]
            continue
        return False
    return True


def _same(a: Any, b: Any) -> bool:
    """Equal and of the same types all the way down (1, True and 1.0 are stored apart)."""
    if type(a) is not type(b):
        return False
    if type(a) is dict:
        return a.keys() == b.keys() and all(_same(v, b[k]) for k, v in a.items())
    if type(a) is list:
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    return bool(a == b)


def _delta(before: dict[str, Any], after: dict[str, Any]) -> dict[str, Any] | None:
    """What a member changed in its copy of the data: keys set (new or changed) and keys
    deleted; None when nothing changed."""
    changed = {k: v for k, v in after.items() if k not in before or not _same(before[k], v)}
    gone = [k for k in before if k not in after]
    if not changed and not gone:
        return None
    return {"set": changed, "del": gone}


def _one_save(effects: list[Effect]) -> list[Effect]:
    """The machine has already brought the run to the state of the batch's last save: one
    write of every step the batch touched, where the first save was."""
    saves = [e for e in effects if isinstance(e, Save)]
    names = tuple(dict.fromkeys(n for e in saves for n in e.steps))
    first = effects.index(saves[0])
    merged: list[Effect] = [e for e in effects if type(e) is not Save]
    merged.insert(first, Save(names))
    return merged
