"""`FluxEngine`: executes workflows, and finds, resumes, signals and retries their runs."""

from __future__ import annotations

import asyncio
import builtins
import inspect
import random
import time
from collections.abc import Callable, Coroutine, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from types import TracebackType
from typing import Any, TypeVar

from . import serialization as ser
from .backoff import DEFAULT_BACKOFF, Backoff
from .builder import Workflow
from .context import WorkflowContext
from .errors import (
    FluxError,
    LeaseLostError,
    RunConflictError,
    RunNotFoundError,
    RunStateError,
    StorageError,
    WaitTimeoutError,
    WorkflowDefinitionError,
    WorkflowVersionError,
)
from .heartbeat import Heartbeat
from .leases import Leases
from .logger import FluxLogger, StdlibLogger
from .loop_thread import LoopThread
from .records import Lease, RunRecord, StepRecord
from .result import FluxResult
from .runner import RunDriver, as_utc, stored_outputs
from .status import CLAIMABLE, EXECUTING, RUN_TERMINAL, STEP_DONE, RunStatus, StepStatus, check_run
from .storage import WorkflowStorage, open_storage
from .trace import FluxTraceSink
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
    ) -> None:
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
        self.heartbeat = Heartbeat(self.storage, self.leases.owner, self.lease_seconds, self.logger)
        self._executor: ThreadPoolExecutor | None = None
        self._active: dict[str, asyncio.Future[None]] = {}
        #: What the `_sync` methods run on, so that any number of threads may call them.
        self._loop = LoopThread()
        self._closed = False

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
        payload_json = ser.dumps(payload, path="signal.payload")
        await self._wait_active(self._check_id(id))
        run = await self._load(flow, id)
        self._check_waiting(run, signal)
        adopt_definition(flow, run)
        await self._claim(run)
        try:
            run = await self._load(flow, id)  # another process may have signalled it meanwhile
            self._check_waiting(run, signal)
            adopt_definition(flow, run)
        except FluxError:
            await self.leases.release(run.id)
            raise
        index = next(i for i, s in enumerate(run.steps) if s.status is S.SUSPENDED)
        driver = RunDriver(self, flow, run, ser.loads(run.input_json))
        work = driver.deliver(index, ser.loads(payload_json), payload_json, enqueue=enqueue)
        return await self._drive(driver, work)

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
        await self._claim(run)
        try:
            run = await self._load(flow, id)  # as it stands now that it is ours
            adopt_definition(flow, run)
        except FluxError:
            await self.leases.release(run.id)
            raise
        restart = index
        for k in range(index):
            if run.steps[k].status in (S.COMPENSATED, S.COMPENSATING, S.COMPENSATION_FAILED):
                restart = k
                break
        run.data_json = run.steps[restart].data_before or run.data_json
        driver = self._restart(flow, run, restart, "retry_step", enqueue=enqueue)
        if enqueue:
            return await self._drive(driver, driver.save(*driver.reset))
        return await self._drive(driver, self._resume_from(driver, restart))

    async def start(self, flow: Workflow[T], input: Any = None, *, id: str | None = None) -> str:
        """Store a `pending` run for a worker to execute and return its id at once.

        With an `id` that exists, nothing new is stored (the same input is required, as
        for `execute`): a redelivered request is safe.
        """
        _, input_json = self._prepare_input(flow, input)
        run_id = new_run_id() if id is None else self._check_id(id)
        if not await self.storage.create_run(_new_run(flow, run_id, input_json, R.PENDING, None)):
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
        is left). Returns the number of runs executed."""
        by_name: dict[str, Workflow[Any]] = {}
        for flow in flows:
            self._check_flow(flow)
            by_name[flow.name] = flow
        names = list(by_name)
        done = 0
        while stop is None or not stop():
            try:
                run = await self.storage.claim_next(names, self.leases.new())
            except StorageError as exc:
                self.logger.error(f"worker: claiming failed: {exc}")
                run = None
            if run is None:
                if burst:
                    return done
                await asyncio.sleep(poll)
                continue
            try:
                await self._continue(by_name[run.name], run, reason="worker", claimed=True)
            except (WorkflowVersionError, StorageError) as exc:
                self.logger.error(f"worker: cannot run it: {exc}", workflow=run.name, run=run.id, exc=exc)
                await self.leases.release(run.id)
                await asyncio.sleep(poll)
                continue
            done += 1
        return done

    async def recover(self, flows: Iterable[Workflow[Any]]) -> list[FluxResult]:
        """Finish the runs that a dead process left running; return their results."""
        by_name = {}
        for flow in flows:
            self._check_flow(flow)
            by_name[flow.name] = flow
        orphans: list[RunRecord] = []
        for name in by_name:  # list them all first: recovered runs leave the filter
            listed: list[RunRecord] = []
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
            except WorkflowVersionError as exc:
                self.logger.error(f"recover: {exc}", workflow=run.name, run=run.id)
                continue
            if not await self._claim(run, take_from=take_from, strict=False):
                continue
            fresh = await self.storage.load_run(run.id)  # as it stands now that it is ours
            if fresh is None or fresh.status not in EXECUTING:
                await self.leases.release(run.id)
                continue
            results.append(await self._continue(flow, fresh, reason="recover", claimed=True))
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
    ) -> builtins.list[FluxResult]:
        for field, value in (("limit", limit), ("offset", offset)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise FluxError(f"list({field}={value!r}): must be an int >= 0")
        statuses = None
        if status is not None:
            wanted = [status] if isinstance(status, str) else list(status)
            try:
                statuses = [RunStatus(s) for s in wanted]
            except ValueError:
                raise FluxError(
                    f"list(status={status!r}): unknown status; use one of {[s.value for s in RunStatus]}"
                ) from None
        runs = await self.storage.list_runs(name=name, status=statuses, limit=limit, offset=offset)
        return [self._result(r) for r in runs]

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self.heartbeat.close()
        self.leases.close()
        await self.storage.close()
        if self.trace is not None:
            self.trace.close()
        if self._executor is not None:
            self._executor.shutdown(wait=False)

    async def __aenter__(self) -> FluxEngine:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # --------------------------------------------------------------- sync twins

    def execute_sync(self, flow: Workflow[T], input: Any = None, *, id: str | None = None) -> FluxResult:
        return self._sync("execute_sync", lambda: self.execute(flow, input, id=id))

    def resume_sync(self, flow: Workflow[T], id: str) -> FluxResult:
        return self._sync("resume_sync", lambda: self.resume(flow, id))

    def signal_sync(
        self, flow: Workflow[T], id: str, signal: str, payload: Any = None, *, enqueue: bool = False
    ) -> FluxResult:
        return self._sync("signal_sync", lambda: self.signal(flow, id, signal, payload, enqueue=enqueue))

    def retry_step_sync(self, flow: Workflow[T], id: str, step: str, *, enqueue: bool = False) -> FluxResult:
        return self._sync("retry_step_sync", lambda: self.retry_step(flow, id, step, enqueue=enqueue))

    def recover_sync(self, flows: Iterable[Workflow[Any]]) -> builtins.list[FluxResult]:
        return self._sync("recover_sync", lambda: self.recover(flows))

    def start_sync(self, flow: Workflow[T], input: Any = None, *, id: str | None = None) -> str:
        return self._sync("start_sync", lambda: self.start(flow, input, id=id))

    def wait_sync(self, id: str, timeout: float | None = None, *, poll: float = 0.05) -> FluxResult:
        return self._sync("wait_sync", lambda: self.wait(id, timeout, poll=poll))

    def work_sync(
        self,
        flows: Iterable[Workflow[Any]],
        *,
        stop: Callable[[], bool] | None = None,
        burst: bool = False,
        poll: float = 0.2,
    ) -> int:
        return self._sync("work_sync", lambda: self.work(flows, stop=stop, burst=burst, poll=poll))

    def get_sync(self, id: str) -> FluxResult:
        return self._sync("get_sync", lambda: self.get(id))

    def list_sync(
        self,
        name: str | None = None,
        status: RunStatus | str | Sequence[RunStatus | str] | None = None,
        limit: int = 50,
        offset: int = 0,
    ) -> builtins.list[FluxResult]:
        return self._sync("list_sync", lambda: self.list(name, status, limit, offset))

    def close_sync(self) -> None:
        self._sync("close_sync", self.close)
        self._loop.close()

    def __enter__(self) -> FluxEngine:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close_sync()

    def _sync(self, method: str, make: Callable[[], Coroutine[Any, Any, T]]) -> T:
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            pass
        else:
            raise FluxError(
                f"FluxEngine.{method}() was called inside a running event loop; "
                f"use `await engine.{method.removesuffix('_sync')}(...)` there"
            )
        if self._closed and method != "close_sync":
            raise FluxError("this FluxEngine is closed")
        return self._loop.run(make)

    # ------------------------------------------------------------------ internals

    @property
    def owner(self) -> str:
        """This engine's name in the leases it holds."""
        return self.leases.owner

    @property
    def executor(self) -> ThreadPoolExecutor:
        if self._executor is None:
            self._executor = ThreadPoolExecutor(max_workers=32, thread_name_prefix="flux-step")
        return self._executor

    async def call_hook(self, name: str, *args: Any) -> None:
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

    def _check_flow(self, flow: object) -> None:
        if not isinstance(flow, Workflow):
            raise WorkflowDefinitionError(f"expected a workflow from create_workflow(...), got {flow!r}")
        if not flow.steps:
            raise WorkflowDefinitionError(f"workflow '{flow.name}' has no steps")
        if self._closed:
            raise FluxError("this FluxEngine is closed")

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

    async def _claim(self, run: RunRecord, *, take_from: str | None = None, strict: bool = True) -> bool:
        if run.id in self._active:  # this very engine drives it (its lease is re-entrant)
            if strict:
                raise RunStateError(f"run '{run.id}' ({run.name}) is being executed right now")
            return False
        return await self.leases.claim(run, take_from=take_from, strict=strict)

    async def _wait_active(self, run_id: str) -> None:
        while (future := self._active.get(run_id)) is not None:
            await asyncio.shield(future)

    async def _start(
        self, flow: Workflow[Any], run_id: str, value: Any, input_json: str
    ) -> FluxResult | None:
        run = _new_run(flow, run_id, input_json, R.RUNNING, self.leases.new())
        if not await self.storage.create_run(run):
            return None
        driver = RunDriver(self, flow, run, value)
        if self.trace is not None:
            driver.emit_start()
        return await self._drive(driver, driver.drive(0))

    async def _continue(
        self, flow: Workflow[Any], run: RunRecord, *, reason: str, claimed: bool = False
    ) -> FluxResult:
        """Bring an existing run forward as far as it can go without being asked explicitly."""
        if _at_rest(run):
            return self._result(run)
        adopt_definition(flow, run)
        if not claimed:
            if not await self._claim(run, strict=False):
                return self._result(run)  # another process is executing it
            try:  # as it stands now that it is ours: another process may have just finished it
                fresh = await self.storage.load_run(run.id)
                if fresh is None:
                    raise RunNotFoundError(f"run '{run.id}' vanished from the storage")
                adopt_definition(flow, fresh)
            except FluxError:
                await self.leases.release(run.id)
                raise
            run = fresh
            if _at_rest(run):
                await self.leases.release(run.id)
                return self._result(run)
        if run.status is R.ROLLING_BACK:
            driver = RunDriver(self, flow, run, ser.loads(run.input_json))
            failed = next(i for i, s in enumerate(run.steps) if s.status is S.FAILED)
            driver.emit_resume(run.steps[failed].name, reason)
            todo = driver.to_compensate(failed)
            return await self._drive(driver, driver.rollback(todo, FluxError(run.error or "step failed")))
        restart = next((i for i, s in enumerate(run.steps) if s.status not in STEP_DONE), len(run.steps))
        for k in range(restart):
            if run.steps[k].status in (S.COMPENSATED, S.COMPENSATION_FAILED):
                restart = k  # its effect was undone: it must run again
                break
        if run.status in (R.ROLLED_BACK, R.ROLLBACK_FAILED, R.FAILED):
            before = run.steps[restart].data_before if restart < len(run.steps) else None
            if before is not None:
                run.data_json = before
        driver = self._restart(flow, run, restart, reason)
        return await self._drive(driver, self._resume_from(driver, restart))

    def _restart(
        self, flow: Workflow[Any], run: RunRecord, restart: int, reason: str, *, enqueue: bool = False
    ) -> RunDriver:
        """Reset the steps from `restart` on (keeping an in-flight one as it is: a commit
        in flight must be seen as interrupted) and mark the run running (or pending) again."""
        keep_in_flight = reason != "retry_step" and run.status is R.RUNNING
        changed = []
        for k in range(restart, len(run.steps)):
            rec = run.steps[k]
            fresh = StepRecord(rec.name, rec.kind)
            if (keep_in_flight and rec.status is S.RUNNING) or rec == fresh:
                continue
            run.steps[k] = fresh
            changed.append(k)
        never_started = run.status is R.PENDING and all(s.started_at is None for s in run.steps)
        run.status = check_run(run.status, R.PENDING if enqueue else R.RUNNING)
        run.error = run.error_type = run.error_step = None
        run.completed_at = None
        run.waiting_for = None
        driver = RunDriver(self, flow, run, ser.loads(run.input_json))
        driver.reset = changed
        if enqueue:
            return driver
        if never_started:  # a queued run begins here
            driver.emit_start()
        else:
            name = run.steps[restart].name if restart < len(run.steps) else ""
            driver.emit_resume(name, reason)
        return driver

    async def _resume_from(self, driver: RunDriver, restart: int) -> None:
        await driver.save(*driver.reset)
        await driver.drive(restart)

    async def _drive(self, driver: RunDriver, work: Coroutine[Any, Any, None]) -> FluxResult:
        run_id = driver.run.id
        loop = asyncio.get_running_loop()
        done: asyncio.Future[None] = loop.create_future()
        self._active[run_id] = done
        try:
            # A memory storage lives and dies with this process: no other process can take a
            # run over, and holding its lease would cost more than the run's steps.
            if self.storage.durable:
                await self._drive_held(driver, loop, work)
            else:
                await work
        finally:
            if driver.run.status in EXECUTING:  # otherwise the last save released it
                await self.leases.release(run_id)
            del self._active[run_id]
            done.set_result(None)
        return self._result(driver.run, driver.data, dict(driver.outputs))

    async def _drive_held(
        self, driver: RunDriver, loop: asyncio.AbstractEventLoop, work: Coroutine[Any, Any, None]
    ) -> None:
        """Drive the run while the heartbeat thread keeps its lease; if another process takes
        it over, the driving task is cancelled at once (nothing more is saved) and
        `LeaseLostError` names the run."""
        run = driver.run

        async def carried() -> BaseException | None:
            # SystemExit or KeyboardInterrupt from a handler would escape the task and stop the
            # loop: carry it to the caller, as if the work had been awaited directly.
            try:
                await work
            except (SystemExit, KeyboardInterrupt) as exc:
                return exc
            return None

        task = loop.create_task(carried())
        lost = False

        def on_lost(run_id: str) -> None:
            nonlocal lost
            lost = True
            task.cancel()

        def on_cancel(run_id: str, reason: str) -> None:  # SPEC §9: the run machine acts on it
            self.logger.info(f"cancel requested: {reason}", workflow=run.name, run=run_id)

        self.heartbeat.hold(run.id, loop, on_lost, on_cancel)
        try:
            stopped = await task
        except asyncio.CancelledError:
            if not lost:
                raise
            raise LeaseLostError(
                f"run '{run.id}' ({run.name}): another process took its lease over; "
                f"this one ({self.owner}) stopped driving it"
            ) from None
        finally:
            self.heartbeat.drop(run.id)
        if stopped is not None:
            raise stopped

    def _result(
        self, run: RunRecord, data: dict[str, Any] | None = None, outputs: dict[str, Any] | None = None
    ) -> FluxResult:
        if outputs is None:
            outputs = stored_outputs(run.steps)
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
            duration=(end or time.time()) - run.created_at,
            waiting_for=run.waiting_for,
            failed_step=run.error_step,
            version=run.version,
            created_at=as_utc(run.created_at),
            completed_at=as_utc(end),
            _steps=run.steps,
        )


def _new_run(
    flow: Workflow[Any], run_id: str, input_json: str, status: RunStatus, lease: Lease | None
) -> RunRecord:
    now = time.time()
    return RunRecord(
        id=run_id, name=flow.name, status=status, input_json=input_json, shape=flow.shape(),
        version=flow.version_tag, steps=[StepRecord(s.name, s.kind) for s in flow.steps],
        created_at=now, updated_at=now, lease=lease,
    )  # fmt: skip


def _at_rest(run: RunRecord) -> bool:
    """Whether a run waits for nobody but an explicit call (signal, retry_step)."""
    return (
        run.status is R.COMPLETED
        or run.status is R.SUSPENDED
        or (run.status is R.FAILED and run.error_type == "CommitInterruptedError")
    )


def new_run_id() -> str:
    """128 random bits as hex: as unique as a uuid4, without a syscall per run."""
    return f"{random.getrandbits(128):032x}"
