"""`FluxEngine`: executes workflows, and finds, resumes, signals and retries their runs."""

from __future__ import annotations

import asyncio
import builtins
import dataclasses
import inspect
import random
import time
from collections.abc import Callable, Coroutine, Iterable, Mapping, Sequence
from datetime import timedelta
from types import TracebackType
from typing import Any, TypeVar

from . import retention, scheduler
from . import serialization as ser
from .attempts import Attempts
from .backoff import DEFAULT_BACKOFF, Backoff
from .builder import Workflow
from .clock import Clock, SystemClock
from .context import WorkflowContext
from .core import Plan, plan_of
from .core.messages import CancelNow, Event, Resumed, RetryFrom, Signalled, Started, Woke
from .core.timers import iso
from .driver import RunDriver, stored_outputs
from .errors import (
    FluxError,
    RunConflictError,
    RunNotFoundError,
    RunStateError,
    StorageError,
    WaitTimeoutError,
    WorkflowDefinitionError,
)
from .heartbeat import Heartbeat
from .history import as_utc
from .leases import Leases
from .logger import FluxLogger, StdlibLogger
from .loop_thread import LoopThread
from .records import Lease, RunRecord, StepRecord
from .result import FluxResult
from .schedules import Schedule
from .status import CLAIMABLE, EXECUTING, RUN_TERMINAL, RunStatus, StepStatus
from .storage import WorkflowStorage, open_storage
from .trace import FluxTraceSink
from .twins import twin
from .validation import validate_input
from .versions import adopt_definition

T = TypeVar("T")
R = RunStatus
S = StepStatus

HOOKS = ("step_start", "step_complete", "step_error", "workflow_complete", "workflow_error")
_UNSET: Any = object()


class FluxEngine:
    """Runs workflows on a storage, writing trace events and calling hooks.

    Every coroutine method has a blocking `_sync` twin for code with no event loop.
    """

    def __init__(
        self,
        storage: WorkflowStorage | str | None = None,
        *,
        default_retries: int = 3,
        default_timeout: float | None = None,
        default_backoff: Backoff | None = None,
        logger: FluxLogger | None = None,
        trace: FluxTraceSink | None = None,
        on: Mapping[str, Callable[..., Any]] | None = None,
        lease_seconds: float = 30.0,
        max_crashes: int = 3,
        clock: Clock | None = None,
        inline_sleep: float = 5.0,
        max_map_items: int = 10_000,
    ) -> None:
        if isinstance(max_map_items, bool) or not isinstance(max_map_items, int) or max_map_items < 1:
            raise FluxError(f"FluxEngine(max_map_items={max_map_items!r}): must be an int >= 1")
        if isinstance(default_retries, bool) or not isinstance(default_retries, int) or default_retries < 0:
            raise FluxError(f"FluxEngine(default_retries={default_retries!r}): must be an int >= 0")
        if default_timeout is not None and (
            isinstance(default_timeout, bool)
            or not isinstance(default_timeout, (int, float))
            or default_timeout <= 0
        ):
            raise FluxError(f"FluxEngine(default_timeout={default_timeout!r}): must be seconds > 0 or None")
        if not isinstance(lease_seconds, (int, float)) or lease_seconds <= 0:
            raise FluxError(f"FluxEngine(lease_seconds={lease_seconds!r}): must be seconds > 0")
        if isinstance(max_crashes, bool) or not isinstance(max_crashes, int) or max_crashes < 1:
            raise FluxError(f"FluxEngine(max_crashes={max_crashes!r}): must be an int >= 1")
        if (
            isinstance(inline_sleep, bool)
            or not isinstance(inline_sleep, (int, float))
            or not 0 <= inline_sleep < float("inf")
        ):
            raise FluxError(
                f"FluxEngine(inline_sleep={inline_sleep!r}): must be a finite number of seconds >= 0"
            )
        hooks = dict(on or {})
        for key, fn in hooks.items():
            if key not in HOOKS:
                raise FluxError(f"FluxEngine(on=...): unknown hook '{key}' (known: {', '.join(HOOKS)})")
            if not callable(fn):
                raise FluxError(f"FluxEngine(on=...): hook '{key}' is not callable: {fn!r}")
        if trace is not None and not callable(getattr(trace, "emit", None)):
            raise FluxError(f"FluxEngine(trace={trace!r}): a trace sink needs an emit(event) method")
        if storage is None:
            storage = open_storage("memory://")
        elif isinstance(storage, str):
            storage = open_storage(storage)
        self.storage: WorkflowStorage = storage
        self.default_retries = default_retries
        self.default_timeout = default_timeout
        self.default_backoff = default_backoff or DEFAULT_BACKOFF
        self.logger: FluxLogger = logger or StdlibLogger()
        self.trace = trace
        self.hooks: dict[str, Callable[..., Any]] = hooks
        self.lease_seconds = float(lease_seconds)
        self.leases = Leases(self.storage, self.logger, self.lease_seconds)
        self.max_crashes = max_crashes
        #: The most items a `.map` may have in one run (SPEC §11).
        self.max_map_items = max_map_items
        #: Every notion of time the engine has (SPEC §10): wake times, backoff, deadlines, slots.
        self.clock: Clock = clock or SystemClock()
        #: A sleep that ends within this many seconds is slept in-process by `execute`.
        self.inline_sleep = float(inline_sleep)
        #: Runs this engine took because they were due, driven as tasks (`VirtualClock.advance`).
        self._background: set[asyncio.Future[Any]] = set()
        #: Calls the handlers; keeps track of the attempts abandoned at their timeout.
        self.attempts = Attempts()
        #: Renews the leases of the runs this engine holds, from a thread of its own.
        self.heartbeat = Heartbeat(self.storage, self.leases.owner, self.lease_seconds, self.logger)
        self._active: dict[str, asyncio.Future[None]] = {}
        self._drivers: dict[str, RunDriver] = {}
        #: Runs driven by the work loop (`inline=False`): their `.call` children are left
        #: `pending` for any worker instead of being driven here (`flux.children`).
        self._detached: set[str] = set()
        self._plans: dict[int, tuple[Workflow[Any], Plan]] = {}
        #: Workflows this engine has been given, by name: what a cancel needs to compensate.
        self._known: dict[str, Workflow[Any]] = {}
        #: What the `_sync` methods run on, so that any number of threads may call them.
        self._loop = LoopThread()
        self._closed = False
        attach = getattr(self.clock, "attach", None)
        if callable(attach):  # a VirtualClock runs what falls due on the engines it serves
            attach(self)

    # ------------------------------------------------------------------ schedules (SPEC §10)

    async def schedule(
        self,
        flow: Workflow[Any],
        *,
        cron: str | None = None,
        every: float | None = None,
        input: Any = None,
        id: str | None = None,
        timezone: str = "UTC",
        catch_up: str = "latest",
    ) -> Schedule:
        """Store a schedule: a run of `flow` with `input` at each slot of `cron` (in
        `timezone`) or of `every` seconds, started by whichever worker (`work`, `flux
        worker`) sees the slot first. `id` defaults to the workflow's name; the same
        definition again is a no-op, another one under the same id a `ScheduleConflictError`."""
        return await scheduler.add(
            self, flow, cron=cron, every=every, input=input, id=id, timezone=timezone, catch_up=catch_up
        )

    async def unschedule(self, id: str) -> bool:
        """Remove the schedule `id` (False if there is none); the runs it started stay."""
        return await scheduler.remove(self, id)

    async def schedules(self) -> builtins.list[Schedule]:
        """Every stored schedule, by id."""
        return await scheduler.listing(self)

    schedule_sync = twin(schedule)
    unschedule_sync = twin(unschedule)
    schedules_sync = twin(schedules)

    async def _fire_schedules(self, now: float) -> int:
        """Start the runs of the schedule slots due at `now`; return how many were started.
        Called by the work loop on every tick and by `VirtualClock.advance`."""
        return await scheduler.fire(self, now)

    async def _next_schedule_due(self) -> float | None:
        """The epoch time of the next schedule slot this engine will fire, or None."""
        return await scheduler.next_due(self)

    # ------------------------------------------------------------------ public API

    async def execute(self, flow: Workflow[T], input: Any = None, *, id: str | None = None) -> FluxResult:
        """Run `flow` with `input`; with an existing `id`, return or continue that run."""
        value, input_json = self._prepare_input(flow, input)
        if id is None:
            started = await self._start(flow, new_run_id(), value, input_json)
            if started is None:  # 128 random bits collided: astronomically unlikely
                raise RunConflictError("a new run id collided with a stored run; try again")
            return started
        run_id = self._check_id(id)
        while True:
            await self._wait_active(run_id)
            run = await self.storage.load_run(run_id)
            if run is None:
                result = await self._start(flow, run_id, value, input_json)
                if result is not None:
                    return result
                continue  # another caller created it first: take its run
            self._check_same_run(flow, run, input_json)
            return await self._continue(flow, run, reason="execute")

    async def resume(self, flow: Workflow[T], id: str) -> FluxResult:
        """Continue a run that stopped: its process died, or a step failed."""
        self._check_flow(flow)
        run = await self._load(flow, id)
        return await self._continue(flow, run, reason="resume")

    async def signal(
        self, flow: Workflow[T], id: str, signal: str, payload: Any = None, *, enqueue: bool = False
    ) -> FluxResult:
        """Deliver `signal` to a suspended run and continue it in this process, or with
        `enqueue=True` leave it `pending` for a worker (`work`, `flux worker`) to continue."""
        self._check_flow(flow)
        if not isinstance(signal, str) or not signal:
            raise RunStateError(
                f"signal to run '{id}': the signal name must be a non-empty string, got {signal!r}"
            )
        if signal.startswith("child:"):
            raise RunStateError(
                f"signal to run '{id}': '{signal}' is the end of a child run; it is delivered by the "
                "child's own end, never by hand"
            )
        payload_json = ser.dumps(payload, path="signal.payload")
        await self._wait_active(self._check_id(id))
        run = await self._load(flow, id)
        self._check_waiting(run, signal)
        if self._due(run):  # too late: the timeout (or the deadline) is the run's outcome
            await self._continue(flow, run, reason="signal")
            raise self._late_signal(run, signal)
        adopt_definition(flow, run)
        taken = await self._take(flow, run, lambda fresh: self._check_waiting(fresh, signal))
        assert taken is not None  # strict: it raised otherwise
        if self._due(taken):  # it fell due while we took it: decided under its lease
            await self._drive(flow, taken, Woke())
            raise self._late_signal(taken, signal)
        return await self._drive(flow, taken, Signalled(signal, payload_json, enqueue))

    def _due(self, run: RunRecord) -> bool:
        """Whether a suspended run's wake time (or deadline) has come, on the engine's clock."""
        due = run.due_at()
        return due is not None and self.clock.now() >= due

    @staticmethod
    def _late_signal(run: RunRecord, signal: str) -> RunStateError:
        if run.wake_at is not None and (run.deadline is None or run.wake_at <= run.deadline):
            why = f"its wait timed out at {iso(run.wake_at)}"
        else:
            why = f"it passed its deadline ({iso(run.deadline or 0.0)})"
        return RunStateError(f"cannot signal '{signal}' to run '{run.id}' ({run.name}): {why}")

    async def retry_step(self, flow: Workflow[T], id: str, step: str, *, enqueue: bool = False) -> FluxResult:
        """Run `step` again and everything after it, with `ctx.data` as before it first ran;
        with `enqueue=True`, reset the run and leave it `pending` for a worker."""
        self._check_flow(flow)
        await self._wait_active(self._check_id(id))
        run = await self._load(flow, id)
        index = flow.index_of(step) if isinstance(step, str) else -1
        if index < 0:
            raise RunStateError(f"retry_step: workflow '{flow.name}' has no step {step!r} (run '{run.id}')")
        adopt_definition(flow, run)
        if run.steps[index].started_at is None:
            raise RunStateError(
                f"retry_step: step '{step}' of run '{run.id}' ({flow.name}) has not run yet; "
                "use resume to continue the run"
            )
        taken = await self._take(flow, run)
        assert taken is not None  # strict: it raised otherwise
        return await self._drive(flow, taken, RetryFrom(step, enqueue))

    async def cancel(
        self, id: str, reason: str = "cancelled", *, flow: Workflow[Any] | None = None
    ) -> FluxResult:
        """Cancel a run (SPEC §9): a pending or suspended one at once; a running one by
        whichever process holds it, within one heartbeat. Its completed steps are
        compensated and it ends `cancelled`. A finished run raises `RunStateError`.

        The run's workflow is needed to compensate: it is `flow`, or one this engine was
        given before (executed, worked, recovered)."""
        run_id = self._check_id(id)
        if not isinstance(reason, str) or not reason:
            raise RunStateError(
                f"cancel run '{run_id}': the reason must be a non-empty string, got {reason!r}"
            )
        if flow is not None:
            self._check_flow(flow)
        run = await self.storage.load_run(run_id)
        if run is None:
            raise RunNotFoundError(f"no run with id '{run_id}'")
        self._check_cancellable(run)
        driver = self._drivers.get(run_id)
        known: Workflow[Any] | None = None
        holder_alive = (
            run.lease is not None
            and run.lease.expires_at > time.time()
            and self.leases.dead_holder(run.lease) is None
        )
        if driver is None and not (run.status in EXECUTING and holder_alive):
            # this engine carries the cancel out itself: it needs the workflow to compensate
            known = flow if flow is not None and flow.name == run.name else self._known.get(run.name)
            if known is None:
                if any(s.status is not S.PENDING for s in run.steps):
                    raise RunStateError(
                        f"cancel run '{run_id}' ({run.name}): steps of it have run, so its workflow "
                        "is needed to compensate them: pass flow= (CLI: --workflow module:attribute)"
                    )
                known = _placeholder(run)
        stored = await self.storage.request_cancel(run_id, reason)
        if stored is None:
            raise RunNotFoundError(f"no run with id '{run_id}'")
        self._check_cancellable(stored)
        if driver is not None:  # this very engine drives it
            driver.interrupt(cancel_reason=reason)
            # its children next: a call in flight then ends with the parent's cancel
            await self._cancel_children(stored, reason)
            await self._wait_active(run_id)
            return await self.get(run_id)
        if run.status in EXECUTING and holder_alive:
            await self._cancel_children(stored, reason)
            return self._result(stored)  # its holder cancels it at its next heartbeat
        assert known is not None  # set above for every case that reaches here
        adopt_definition(known, stored)
        taken = await self._take(known, stored, strict=False)
        if taken is None:
            await self._cancel_children(stored, reason)
            return await self.get(run_id)
        if taken.status in RUN_TERMINAL:
            await self.leases.release(run_id)
            return self._result(taken)
        result = await self._drive(known, taken, CancelNow())
        await self._cancel_children(stored, reason)
        return result

    async def _cancel_children(self, run: RunRecord, reason: str) -> None:
        from .children import cancel_children

        try:
            await cancel_children(self, run, reason)
        except FluxError as exc:  # the parent is cancelled: a child's trouble is told, not raised
            self.logger.error(
                f"cancelling the children of run '{run.id}': {exc}", workflow=run.name, run=run.id, exc=exc
            )

    @staticmethod
    def _check_cancellable(run: RunRecord) -> None:
        if run.status in RUN_TERMINAL:
            raise RunStateError(
                f"cannot cancel run '{run.id}' ({run.name}): it is already {run.status.value}"
            )

    async def start(self, flow: Workflow[T], input: Any = None, *, id: str | None = None) -> str:
        """Store a `pending` run for a worker to execute and return its id at once.

        With an `id` that exists, nothing new is stored (the same input is required, as
        for `execute`): a redelivered request is safe.
        """
        _, input_json = self._prepare_input(flow, input)
        run_id = new_run_id() if id is None else self._check_id(id)
        if not await self.storage.create_run(
            _new_run(flow, run_id, input_json, R.PENDING, None, self.clock.now())
        ):
            existing = await self.storage.load_run(run_id)
            if existing is not None:
                self._check_same_run(flow, existing, input_json)
        return run_id

    async def wait(self, id: str, timeout: float | None = None, *, poll: float = 0.05) -> FluxResult:
        """Wait until the run is finished or suspended (by whichever process runs it)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            result = await self.get(id)
            if result.status not in CLAIMABLE:
                return result
            if deadline is not None and time.monotonic() >= deadline:
                raise WaitTimeoutError(
                    f"run '{id}' ({result.name}) is still {result.status.value} after {timeout:g}s"
                )
            await asyncio.sleep(
                poll if deadline is None else min(poll, max(0.0, deadline - time.monotonic()))
            )

    async def work(
        self,
        flows: Iterable[Workflow[Any]],
        *,
        stop: Callable[[], bool] | None = None,
        burst: bool = False,
        poll: float = 0.2,
    ) -> int:
        """Be a worker: claim waiting runs of `flows` (pending, or orphaned by a dead
        process) and execute them, until `stop()` is true (or, with `burst`, until none
        is left). Returns the number of runs executed. A run that cannot be executed is
        logged and left; the worker goes on with the others."""
        by_name = self._by_name(flows)
        names = list(by_name)
        done = 0
        while stop is None or not stop():
            try:
                await self._fire_schedules(self.clock.now())
            except Exception as exc:
                self.logger.error(f"worker: starting scheduled runs failed: {exc}", exc=exc)
            try:
                run = await self.storage.claim_next(names, self.leases.new(), now=self.clock.now())
            except StorageError as exc:
                self.logger.error(f"worker: claiming failed: {exc}")
                run = None
            if run is None:
                if burst:
                    return done
                await self._idle(names, poll)
                continue
            if not await self._run_claimed(by_name[run.name], run, inline=False):
                await asyncio.sleep(poll)
                continue
            done += 1
        return done

    async def _idle(self, names: builtins.list[str], poll: float) -> None:
        """Wait for the next poll, or less if a stored wake time comes before it: one query."""
        wait = poll
        try:
            due = await self.storage.next_due(names)
        except StorageError as exc:
            self.logger.error(f"worker: finding the next wake time failed: {exc}")
            due = None
        if due is not None:
            # a run due now but not claimable (held by a signaller, say): poll again soon
            wait = min(poll, max(due - self.clock.now(), 0.01))
        await asyncio.sleep(wait)

    async def _run_claimed(self, flow: Workflow[Any], run: RunRecord, *, inline: bool = True) -> bool:
        """Execute a run this engine claimed (pending, orphaned or due); False if it failed.
        With `inline` False (the work loop, which drives one run at a time) no sleep is
        slept in-process: it is stored, so that the loop goes on to the runs due meanwhile."""
        try:
            await self._continue(flow, run, reason="worker", claimed=True, inline=inline)
        except Exception as exc:
            # The claim's lease is kept, not released, until it expires: released, the run
            # (the earliest due, say) would be claimed again at once, here or elsewhere, and
            # no other run would ever be taken. Then it is tried again.
            self.logger.error(
                f"worker: cannot run it: {exc} (left aside for {self.lease_seconds:g}s, then tried again)",
                workflow=run.name, run=run.id, exc=exc,
            )  # fmt: skip
            return False
        return True

    async def _take_due(self, now: float) -> int:
        """Claim every run of the workflows this engine knows that is waiting or due at
        `now` and drive each as a task of its own; how many were taken (`VirtualClock`)."""
        names = builtins.list(self._known)
        taken = 0
        while names and not self._closed:
            run = await self.storage.claim_next(names, self.leases.new(), now=now)
            if run is None:
                break
            taken += 1
            task = asyncio.ensure_future(self._run_claimed(self._known[run.name], run))
            self._background.add(task)
            task.add_done_callback(self._background.discard)
        return taken

    async def recover(self, flows: Iterable[Workflow[Any]]) -> builtins.list[FluxResult]:
        """Finish the runs that a dead process left running; return their results. A run
        that cannot be recovered is logged and skipped: the others are still recovered."""
        by_name = self._by_name(flows)
        orphans: builtins.list[RunRecord] = []
        for name in by_name:  # list them all first: recovered runs leave the filter
            listed: builtins.list[RunRecord] = []
            while batch := await self.storage.list_runs(
                name=name, status=[R.RUNNING, R.ROLLING_BACK], limit=200, offset=len(listed)
            ):
                listed.extend(batch)
                if len(batch) < 200:
                    break
            orphans.extend(listed)
        results = []
        for run in orphans:
            if run.id in self._active:
                continue
            take_from = self.leases.dead_holder(run.lease)
            if run.lease is not None and take_from is None and run.lease.expires_at > time.time():
                continue  # alive elsewhere
            flow = by_name[run.name]
            try:
                adopt_definition(flow, run)
                fresh = await self._take(flow, run, take_from=take_from, strict=False)
                if fresh is None:
                    continue
                if fresh.status not in EXECUTING:
                    await self.leases.release(run.id)
                    continue
                results.append(await self._continue(flow, fresh, reason="recover", claimed=True))
            except Exception as exc:
                self.logger.error(
                    f"recover: cannot recover it: {exc}", workflow=run.name, run=run.id, exc=exc
                )
        return results

    async def get(self, id: str) -> FluxResult:
        run = await self.storage.load_run(self._check_id(id))
        if run is None:
            raise RunNotFoundError(f"no run with id '{id}'")
        return self._result(run)

    async def list(
        self,
        name: str | None = None,
        status: RunStatus | str | Sequence[RunStatus | str] | None = None,
        limit: int = 50,
        offset: int = 0,
        parent_id: str | None = None,
    ) -> builtins.list[FluxResult]:
        """Runs, newest first, by workflow name, statuses, and the run whose `.call` started
        them (`parent_id`)."""
        for field, value in (("limit", limit), ("offset", offset)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise FluxError(f"list({field}={value!r}): must be an int >= 0")
        statuses = None
        if status is not None:
            wanted = [status] if isinstance(status, str) else builtins.list(status)
            try:
                statuses = [RunStatus(s) for s in wanted]
            except ValueError:
                raise FluxError(
                    f"list(status={status!r}): unknown status; use one of {[s.value for s in RunStatus]}"
                ) from None
        if parent_id is None:
            runs = await self.storage.list_runs(name=name, status=statuses, limit=limit, offset=offset)
        else:
            runs = await self.storage.list_runs(
                name=name, status=statuses, limit=limit, offset=offset, parent_id=self._check_id(parent_id)
            )
        return [self._result(r) for r in runs]

    # ------------------------------------------------------------------ retention (h/lean)

    async def prune(
        self, older_than: timedelta | float, status: RunStatus | str | Iterable[RunStatus | str] | None = None
    ) -> int:
        """Remove the runs whose last change is older than `older_than` (a timedelta or
        seconds) and that are in `status` (default: the finished states; a pending, running
        or suspended run only when named), with their steps; return how many were removed.
        Done by the storage in bounded batches, by an index."""
        seconds = retention.age_seconds(older_than)
        wanted = retention.statuses(status)
        prune = getattr(self.storage, "prune", None)
        if prune is None:  # a user's storage written before retention existed
            raise FluxError(
                f"prune: {type(self.storage).__name__} has no prune() method (see WorkflowStorage)"
            )
        removed: int = await prune(self.clock.now() - seconds, wanted)
        return removed

    prune_sync = twin(prune)

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self.heartbeat.close()
        self.leases.close()
        await self.storage.close()
        if self.trace is not None:
            self.trace.close()
        self.attempts.close()

    async def __aenter__(self) -> FluxEngine:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # --------------------------------------------------------------- sync twins

    execute_sync = twin(execute)
    resume_sync = twin(resume)
    signal_sync = twin(signal)
    retry_step_sync = twin(retry_step)
    cancel_sync = twin(cancel)
    recover_sync = twin(recover)
    start_sync = twin(start)
    wait_sync = twin(wait)
    work_sync = twin(work)
    get_sync = twin(get)
    list_sync = twin(list)
    _close_sync = twin(close)

    def close_sync(self) -> None:
        self._close_sync()
        self._loop.close()

    def __enter__(self) -> FluxEngine:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close_sync()

    def _run_on_loop(self, make: Callable[[], Coroutine[Any, Any, T]]) -> T:
        return self._loop.run(make)

    # ------------------------------------------------------------------ internals

    @property
    def owner(self) -> str:
        """This engine's name in the leases it holds."""
        return self.leases.owner

    async def _call_hook(self, name: str, *args: Any) -> None:
        fn = self.hooks.get(name)
        if fn is None:
            return
        try:
            result = fn(*args)
            if inspect.isawaitable(result):
                await result
        except Exception as exc:
            ctx = next((a for a in args if isinstance(a, WorkflowContext)), None)
            where = {"workflow": ctx.name, "run": ctx.id, "step": ctx.step_name or None} if ctx else {}
            self.logger.error(f"hook '{name}' raised {exc!r}; the run goes on", exc=exc, **where)

    def _plan(self, flow: Workflow[Any]) -> Plan:
        hit = self._plans.get(id(flow))
        if hit is not None and hit[0] is flow:
            return hit[1]
        plan = plan_of(
            flow,
            default_retries=self.default_retries,
            default_timeout=self.default_timeout,
            default_backoff=self.default_backoff,
            traced=self.trace is not None,
            hooks=frozenset(self.hooks),
            max_crashes=self.max_crashes,
            inline_sleep=self.inline_sleep,
            max_map_items=self.max_map_items,
        )
        self._plans[id(flow)] = (flow, plan)
        self._known[flow.name] = flow
        return plan

    def _by_name(self, flows: Iterable[Workflow[Any]]) -> dict[str, Workflow[Any]]:
        """The workflows a worker (or `recover`) serves, by name: those given, and the ones
        their `.call` steps start (a worker that runs a parent runs its children too)."""
        by_name: dict[str, Workflow[Any]] = {}
        for flow in flows:
            self._check_flow(flow)
            by_name[flow.name] = flow
        todo = builtins.list(by_name.values())
        while todo:  # the children, theirs, ...: the workflows given win over a namesake
            for s in todo.pop().steps:
                if s.child is not None and s.child.name not in by_name:
                    by_name[s.child.name] = s.child
                    todo.append(s.child)
        return by_name

    def _check_flow(self, flow: object) -> None:
        if not isinstance(flow, Workflow):
            raise WorkflowDefinitionError(f"expected a workflow from create_workflow(...), got {flow!r}")
        if not flow.steps:
            raise WorkflowDefinitionError(f"workflow '{flow.name}' has no steps")
        if self._closed:
            raise FluxError("this FluxEngine is closed")
        if flow.name not in self._known:
            self._known[flow.name] = flow
            for s in flow.steps:  # what a cancel of a parent needs to compensate its children
                if s.child is not None:
                    self._check_flow(s.child)

    def _prepare_input(self, flow: Workflow[Any], input: Any) -> tuple[Any, str]:
        """The input as handlers will see it, and as it is stored; nothing is stored yet."""
        self._check_flow(flow)
        value = validate_input(flow.input_type, input, flow.name) if flow.input_type is not None else input
        return value, ser.dumps(value, path="input")

    @staticmethod
    def _check_id(run_id: object) -> str:
        if not isinstance(run_id, str) or not run_id or len(run_id) > 255:
            raise RunStateError(
                f"a run id must be a non-empty string of at most 255 characters, got {run_id!r}"
            )
        if "\x00" in run_id or (not run_id.isprintable() and _unstorable(run_id)):
            raise RunStateError(
                f"a run id must be text a database can store (no NUL, no lone surrogate), got {run_id!r}"
            )
        return run_id

    async def _load(self, flow: Workflow[Any], run_id: str) -> RunRecord:
        run = await self.storage.load_run(self._check_id(run_id))
        if run is None:
            raise RunNotFoundError(f"workflow '{flow.name}': no run with id '{run_id}'")
        if run.name != flow.name:
            raise RunConflictError(f"run '{run_id}' belongs to workflow '{run.name}', not to '{flow.name}'")
        return run

    @staticmethod
    def _check_same_run(flow: Workflow[Any], run: RunRecord, input_json: str) -> None:
        if run.name != flow.name:
            raise RunConflictError(f"run '{run.id}' belongs to workflow '{run.name}', not to '{flow.name}'")
        if run.input_json != input_json:
            raise RunConflictError(
                f"run '{run.id}' of workflow '{flow.name}' exists with a different input; "
                "use a new id for a new run"
            )

    @staticmethod
    def _check_waiting(run: RunRecord, signal: str) -> None:
        if run.status is not R.SUSPENDED:
            raise RunStateError(
                f"cannot signal '{signal}' to run '{run.id}' ({run.name}): "
                f"it is {run.status.value}, not suspended"
            )
        if run.waiting_for != signal:
            raise RunStateError(
                f"cannot signal '{signal}' to run '{run.id}' ({run.name}): it waits for '{run.waiting_for}'"
            )

    async def _take(
        self,
        flow: Workflow[Any],
        run: RunRecord,
        check: Callable[[RunRecord], None] | None = None,
        *,
        take_from: str | None = None,
        strict: bool = True,
    ) -> RunRecord | None:
        """The one claim sequence: take the run's lease, reload it as it stands now that it
        is ours (another process may have just changed it), fit it to `flow` and `check` it;
        on any failure the lease is given back. None when (not `strict`) it is held elsewhere."""
        if run.id in self._active:  # this very engine drives it (its lease is re-entrant)
            if strict:
                raise RunStateError(f"run '{run.id}' ({run.name}) is being executed right now")
            return None
        if not await self.leases.claim(run, take_from=take_from, strict=strict):
            return None
        try:
            fresh = await self.storage.load_run(run.id)
            if fresh is None:
                raise RunNotFoundError(f"run '{run.id}' vanished from the storage")
            adopt_definition(flow, fresh)
            if check is not None:
                check(fresh)
        except BaseException:
            await self.leases.release(run.id)
            raise
        return fresh

    async def _wait_active(self, run_id: str) -> None:
        while (future := self._active.get(run_id)) is not None:
            await asyncio.shield(future)

    async def _start(
        self, flow: Workflow[Any], run_id: str, value: Any, input_json: str
    ) -> FluxResult | None:
        run = _new_run(flow, run_id, input_json, R.RUNNING, self.leases.new(), self.clock.now())
        if not await self.storage.create_run(run):
            return None
        return await self._drive(flow, run, Started(), value)

    async def _continue(
        self, flow: Workflow[Any], run: RunRecord, *, reason: str, claimed: bool = False, inline: bool = True
    ) -> FluxResult:
        """Bring an existing run forward as far as it can go without being asked explicitly."""
        if run.status is R.SUSPENDED and (claimed or self._due(run)):
            adopt_definition(flow, run)
            if not claimed:
                fresh = await self._take(flow, run, strict=False)
                if fresh is None:
                    return self._result(run)
                run = fresh
            # it wakes, times out, or meets its deadline
            return await self._drive(flow, run, Woke(), inline=inline)
        if _at_rest(run):
            return self._result(run)
        adopt_definition(flow, run)
        if not claimed:
            fresh = await self._take(flow, run, strict=False)
            if fresh is None:
                return self._result(run)  # another process is executing it
            run = fresh
            if _at_rest(run):
                await self.leases.release(run.id)
                return self._result(run)
        return await self._drive(flow, run, Resumed(reason, crashed=run.status is R.RUNNING), inline=inline)

    async def _drive(
        self, flow: Workflow[Any], run: RunRecord, event: Event, value: Any = _UNSET, *, inline: bool = True
    ) -> FluxResult:
        run_id = run.id
        if value is _UNSET:
            value = ser.loads(run.input_json)
        plan = self._plan(flow)
        if not inline and plan.inline_sleep:
            plan = dataclasses.replace(plan, inline_sleep=0.0)
        driver = RunDriver(self, flow, plan, run, value)
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._active[run_id] = done
        self._drivers[run_id] = driver
        if not inline:
            self._detached.add(run_id)
        # A memory storage lives and dies with this process: no other process can take a run
        # over, and holding its lease would cost more than the run's steps.
        held = self.storage.durable
        if held:
            # The heartbeat's own thread renews the lease, whatever blocks this loop; what it
            # learns (lost, cancel requested) reaches the driver on this loop, and the flag
            # that `ctx.cancelled` reads at once.
            self.heartbeat.hold(
                run_id,
                asyncio.get_running_loop(),
                lambda _: driver.interrupt(lost=True),
                lambda _, reason: driver.interrupt(cancel_reason=reason),
                driver.run_cancel,
            )
        watch = None
        if run.deadline is not None:
            watch = asyncio.ensure_future(self._watch_deadline(driver, run.deadline))
        try:
            await driver.drive(event)
        finally:
            if watch is not None:
                watch.cancel()
            if held:
                self.heartbeat.drop(run_id)
            if driver.run.status in EXECUTING and not driver.lost:  # else the last save released it
                await self.leases.release(run_id)
            del self._active[run_id]
            del self._drivers[run_id]
            self._detached.discard(run_id)
            done.set_result(None)
        return self._result(driver.run, driver.data, dict(driver.outputs))

    # ------------------------------------------------------------------ child runs (SPEC §11)

    def _drives_inline(self, run_id: str) -> bool:
        """Whether the `.call` children of this run (driven here) are driven here too: yes
        under `execute` and friends, no under the work loop."""
        return run_id not in self._detached

    async def _watch_deadline(self, driver: RunDriver, deadline: float) -> None:
        """Interrupt the run at its deadline, as a cancel does (the machine calls it one)."""
        clock = self.clock
        while (left := deadline - clock.now()) > 0:
            await clock.sleep(left)
        run = driver.run
        reason = f"run '{run.id}' ({run.name}) passed its deadline ({iso(deadline)})"
        driver.interrupt(cancel_reason=reason)
        # a `.call` in flight waits for its child: the child is cancelled too, then the call ends
        try:
            await self._cancel_children(run, reason)
        except Exception as exc:  # a task: said here; the parent is cancelled anyway
            self.logger.error(
                f"cancelling its children failed: {exc}", workflow=run.name, run=run.id, exc=exc
            )

    def _result(
        self, run: RunRecord, data: dict[str, Any] | None = None, outputs: dict[str, Any] | None = None
    ) -> FluxResult:
        if outputs is None:
            outputs = stored_outputs(run.steps[: len(run.shape)])  # a map's items: in its list
        end = run.completed_at if run.status in RUN_TERMINAL else None
        return FluxResult(
            id=run.id,
            name=run.name,
            status=run.status,
            input=ser.loads(run.input_json),
            data=ser.loads(run.data_json) if data is None else data,
            outputs=outputs,
            error=run.error,
            error_type=run.error_type,
            duration=(end or self.clock.now()) - run.created_at,
            waiting_for=run.waiting_for,
            failed_step=run.error_step,
            version=run.version,
            created_at=as_utc(run.created_at),
            completed_at=as_utc(end),
            wake_at=as_utc(run.wake_at) if run.status in _ASLEEP else None,
            deadline=as_utc(run.deadline),
            parent_id=run.parent_id,
            _steps=run.steps,
        )


#: Run states in which a run may have a wake time (a sleep in-process keeps it running).
_ASLEEP = frozenset({R.SUSPENDED, R.RUNNING})


def _new_run(
    flow: Workflow[Any], run_id: str, input_json: str, status: RunStatus, lease: Lease | None, now: float
) -> RunRecord:
    seconds = flow.deadline_seconds
    return RunRecord(
        id=run_id, name=flow.name, status=status, input_json=input_json, shape=flow.shape(),
        version=flow.version_tag, steps=[StepRecord(s.name, s.kind) for s in flow.steps],
        created_at=now, updated_at=now, lease=lease, deadline=None if seconds is None else now + seconds,
    )  # fmt: skip


def _unstorable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def _noop(ctx: WorkflowContext[Any]) -> None:  # pragma: no cover - never called
    return None


def _placeholder(run: RunRecord) -> Workflow[Any]:
    """A stand-in for a workflow this engine does not know, for a run none of whose steps
    has run (nothing is called, nothing compensated): enough to cancel it."""
    flow: Workflow[Any] = Workflow(run.name)
    for rec in run.steps:
        flow = flow.commit(rec.name, _noop) if rec.kind == "commit" else flow.step(rec.name, _noop)
    return flow


def _at_rest(run: RunRecord) -> bool:
    """Whether a run waits for nobody but an explicit call (signal, retry_step)."""
    return (
        run.status is R.COMPLETED
        or run.status is R.SUSPENDED
        or run.status is R.CANCELLED
        or (run.status is R.FAILED and run.error_type == "CommitInterruptedError")
    )


def new_run_id() -> str:
    """128 random bits as hex: as unique as a uuid4, without a syscall per run."""
    return f"{random.getrandbits(128):032x}"
