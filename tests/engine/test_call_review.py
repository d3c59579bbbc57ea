"""Adversarial review of `.call` (SPEC §11) in one process: a child never created twice,
the parent never asleep forever, cancels that reach the child, failures that name it,
hostile ids and inputs, and the trace fields. Tests marked xfail(strict) show a promise
broken on main; the reason says what."""

from __future__ import annotations

import asyncio
import datetime as dt
from typing import Any

import pytest

from flux import (
    ChildWorkflowError,
    Flux,
    FluxEngine,
    FluxSilentLogger,
    MemoryTraceSink,
    RunConflictError,
    RunStateError,
    RunStatus,
    StepStatus,
    WorkflowContext,
    WorkflowDefinitionError,
    create_workflow,
    step,
)
from flux.testing import VirtualClock

from .conftest import FAST, EngineFactory

log: list[str] = []


@pytest.fixture(autouse=True)
def _clear() -> None:
    log.clear()


def note(ctx: WorkflowContext[Any]) -> str:
    log.append(f"{ctx.id}:{ctx.step_name}")
    ctx.data[ctx.step_name] = True
    return ctx.step_name


def undo(ctx: WorkflowContext[Any]) -> None:
    log.append(f"undo {ctx.id}:{ctx.step_name}")


WAITING = create_workflow("rv-waiting").step("ask", lambda ctx: Flux.wait("ok")).step("done", note)
PARENT = (
    create_workflow("rv-parent")
    .step("before", note, compensate=undo)
    .call("kid", WAITING, input=lambda ctx: {})
    .step("after", note)
)


async def park_under_worker(engine: FluxEngine, flow: Any, run_id: str) -> None:
    """Run the parent as a worker would (its child left `pending`), up to its suspension."""
    await engine.start(flow, {}, id=run_id)
    claimed = await engine.storage.claim_next([flow.name], engine.leases.new())
    assert claimed is not None and claimed.id == run_id
    await engine._run_claimed(flow, claimed, inline=False)


# ---------------------------------------------------------------- a child never created twice


def test_resume_of_a_parent_waiting_for_its_running_child_starts_no_second_child(
    make_engine: EngineFactory,
) -> None:
    engine = make_engine()
    assert engine.execute_sync(PARENT, {}, id="RS1").waiting_for == "child:RS1/kid"
    again = make_engine().resume_sync(PARENT, "RS1")
    assert again.status is RunStatus.SUSPENDED and again.waiting_for == "child:RS1/kid"
    assert [r.id for r in engine.list_sync(parent_id="RS1")] == ["RS1/kid"]
    assert log == ["RS1:before"]


def test_retry_step_of_the_call_while_its_child_waits_starts_no_second_child(
    make_engine: EngineFactory,
) -> None:
    engine = make_engine()
    engine.execute_sync(PARENT, {}, id="RS2")
    again = make_engine().retry_step_sync(PARENT, "RS2", "kid")
    assert again.status is RunStatus.SUSPENDED and again.waiting_for == "child:RS2/kid"
    assert [r.id for r in engine.list_sync(parent_id="RS2")] == ["RS2/kid"]
    engine.signal_sync(WAITING, "RS2/kid", "ok")
    engine.work_sync([PARENT], burst=True)
    done = engine.get_sync("RS2")
    assert done.status is RunStatus.COMPLETED, done.error
    assert log == ["RS2:before", "RS2/kid:done", "RS2:after"]


def test_retry_step_before_a_finished_call_reuses_the_finished_child(make_engine: EngineFactory) -> None:
    """What `retry_step` of an earlier step does to a call already done: the child's id is
    fixed, so the call reads the same finished child; it does not run again."""
    quick = create_workflow("rv-quick").step("q", note)
    flow = create_workflow("rv-rerun").step("before", note).call("kid", quick, input=lambda ctx: {})
    engine = make_engine()
    assert engine.execute_sync(flow, {}, id="RS3").status is RunStatus.COMPLETED
    again = engine.retry_step_sync(flow, "RS3", "before")
    assert again.status is RunStatus.COMPLETED and again.outputs["kid"] == {"q": True}
    assert log == ["RS3:before", "RS3/kid:q", "RS3:before"]


def test_two_workers_racing_on_one_parent_create_one_child(make_engine: EngineFactory) -> None:
    engines = [make_engine(), make_engine()]
    engines[0].start_sync(PARENT, {}, id="RC1")

    async def both() -> list[int]:
        return list(await asyncio.gather(*(e.work([PARENT], burst=True, poll=0.01) for e in engines)))

    engines[0]._run_on_loop(both)
    assert [r.id for r in engines[0].list_sync(parent_id="RC1")] == ["RC1/kid"]
    assert engines[0].get_sync("RC1").waiting_for == "child:RC1/kid"
    assert log == ["RC1:before"]


# ---------------------------------------------------------------- the parent never asleep forever


def _may_fail(ctx: WorkflowContext[Any]) -> None:
    if ctx.input.get("fail"):
        raise ValueError("child broke")


_PLAIN_KID = (
    create_workflow("rv-ends").step("ask", lambda ctx: Flux.wait("ok")).step("b", _may_fail, retries=0)
)
_UNDO_KID = (
    create_workflow("rv-ends-undo")
    .step("a", note, compensate=undo)
    .step("ask", lambda ctx: Flux.wait("ok"))
    .step("b", _may_fail, retries=0)
)


@pytest.mark.parametrize("end", ["completed", "failed", "cancelled", "rolled_back"])
def test_the_parent_wakes_however_its_child_ends(make_engine: EngineFactory, end: str) -> None:
    child = _UNDO_KID if end == "rolled_back" else _PLAIN_KID
    flow = (
        create_workflow(f"rv-ends-parent-{end}")
        .call("kid", child, input=lambda ctx: ctx.input)
        .step("z", note)
    )
    engine = make_engine()
    rid = f"E-{end}"
    inp = {"fail": end in ("failed", "rolled_back")}
    assert engine.execute_sync(flow, inp, id=rid).waiting_for == f"child:{rid}/kid"
    other = make_engine()  # another process's view of the same storage
    if end == "cancelled":
        other.cancel_sync(f"{rid}/kid", reason="by hand", flow=child)
    else:
        other.signal_sync(child, f"{rid}/kid", "ok")
    assert other.get_sync(f"{rid}/kid").status.value == end
    assert engine.get_sync(rid).wake_at is not None  # due at once
    assert engine.work_sync([flow], burst=True) == 1
    parent = engine.get_sync(rid)
    if end == "completed":
        assert parent.status is RunStatus.COMPLETED, parent.error
    else:
        assert parent.status is RunStatus.FAILED and parent.error_type == "ChildWorkflowError"
        assert f"{rid}/kid" in (parent.error or "") and end in (parent.error or "")


def test_a_child_signalled_with_enqueue_wakes_its_parent_through_a_worker(make_engine: EngineFactory) -> None:
    engine = make_engine()
    engine.execute_sync(PARENT, {}, id="EQ1")
    child = make_engine().signal_sync(WAITING, "EQ1/kid", "ok", enqueue=True)
    assert child.status is RunStatus.PENDING
    engine.work_sync([PARENT], burst=True)
    done = engine.get_sync("EQ1")
    assert done.status is RunStatus.COMPLETED, done.error


def test_a_failed_child_retried_by_hand_wakes_its_waiting_parent(make_engine: EngineFactory) -> None:
    broken = {"yes": True}

    def flaky(ctx: WorkflowContext[Any]) -> None:
        if broken["yes"]:
            raise ValueError("down")

    child = create_workflow("rv-flaky").step("ask", lambda ctx: Flux.wait("ok")).step("try", flaky, retries=0)
    flow = create_workflow("rv-flaky-parent").call("kid", child, input=lambda ctx: {}).step("z", note)
    engine = make_engine()
    engine.execute_sync(flow, {}, id="RT1")
    engine.signal_sync(child, "RT1/kid", "ok")  # the child fails: its parent is due
    broken["yes"] = False
    assert engine.retry_step_sync(child, "RT1/kid", "try").status is RunStatus.COMPLETED
    engine.work_sync([flow], burst=True)
    parent = engine.get_sync("RT1")
    # the child had failed when the parent woke or it completed before: either way the parent is not asleep
    assert parent.status in (RunStatus.COMPLETED, RunStatus.FAILED), parent.status
    assert parent.status is RunStatus.COMPLETED, parent.error


def test_resume_wakes_a_parent_whose_child_ended_without_a_worker(make_engine: EngineFactory) -> None:
    """With no worker at all (execute, signal, resume): the parent is due once its child
    has ended, and `resume` (or `execute` again) finishes it."""
    engine = make_engine()
    engine.execute_sync(PARENT, {}, id="NW1")
    engine.signal_sync(WAITING, "NW1/kid", "ok")
    done = engine.resume_sync(PARENT, "NW1")
    assert done.status is RunStatus.COMPLETED, done.error
    assert done.outputs["kid"] == {"done": True}


def test_prune_does_not_remove_a_finished_child_its_parent_has_not_read(make_engine: EngineFactory) -> None:
    engine = make_engine()
    engine.execute_sync(PARENT, {}, id="PR1")
    engine.signal_sync(WAITING, "PR1/kid", "ok")  # the child completes; its parent is due
    engine.prune_sync(dt.timedelta(microseconds=1))  # "finished runs older than ...": a nightly cleanup
    engine.work_sync([PARENT], burst=True)
    parent = engine.get_sync("PR1")
    assert log.count("PR1/kid:done") == 1, log  # the child's steps ran once
    assert parent.status is RunStatus.COMPLETED, (parent.status, parent.waiting_for)


# ---------------------------------------------------------------- cancel


def test_cancelling_a_parent_whose_child_sleeps_cancels_the_child(make_engine: EngineFactory) -> None:
    clock = VirtualClock(dt.datetime(2030, 1, 1, tzinfo=dt.timezone.utc))
    napper = (
        create_workflow("rv-napper")
        .step("a", note, compensate=undo)
        .step("nap", lambda ctx: Flux.sleep(3600))
    )
    flow = create_workflow("rv-nap-parent").call("kid", napper, input=lambda ctx: {})
    engine = make_engine(clock=clock)
    assert engine.execute_sync(flow, {}, id="CS1").waiting_for == "child:CS1/kid"
    assert engine.get_sync("CS1/kid").wake_at is not None
    engine.cancel_sync("CS1", reason="stop")
    clock.advance_sync(1)
    kid = engine.get_sync("CS1/kid")
    assert kid.status is RunStatus.CANCELLED and "stop" in (kid.error or "")
    assert "undo CS1/kid:a" in log  # the child's completed steps are compensated
    clock.advance_sync(7200)
    assert engine.get_sync("CS1/kid").status is RunStatus.CANCELLED


def test_cancelling_a_parent_from_an_engine_that_never_saw_the_child_workflow(
    make_engine: EngineFactory,
) -> None:
    """The child has completed steps to compensate; the cancelling engine was given only
    the parent (as `flux runs cancel --workflow parent` is)."""
    engine = make_engine()
    child = (
        create_workflow("rv-comp-kid")
        .step("a", note, compensate=undo)
        .step("ask", lambda ctx: Flux.wait("x"))
    )
    flow = create_workflow("rv-comp-parent").call("kid", child, input=lambda ctx: {})
    engine.execute_sync(flow, {}, id="CU1")
    fresh = make_engine()
    parent = fresh.cancel_sync("CU1", reason="stop", flow=flow)
    assert parent.status is RunStatus.CANCELLED
    assert fresh.get_sync("CU1/kid").status is RunStatus.CANCELLED
    assert log == ["CU1/kid:a", "undo CU1/kid:a"]


def test_cancelling_the_child_directly_fails_the_parent_with_child_workflow_error(
    make_engine: EngineFactory,
) -> None:
    """What a user sees when they cancel the child: the parent fails (not cancelled), its
    error names the child and the cancel, and its own saga undoes its steps."""
    engine = make_engine()
    engine.execute_sync(PARENT, {}, id="CD1")
    engine.cancel_sync("CD1/kid", reason="not needed")
    engine.work_sync([PARENT], burst=True)
    parent = engine.get_sync("CD1")
    assert parent.status is RunStatus.ROLLED_BACK and parent.error_type == "ChildWorkflowError"
    assert "CD1/kid" in (parent.error or "") and "not needed" in (parent.error or "")
    assert log == ["CD1:before", "undo CD1:before"]


def test_a_cancel_of_a_parent_reaches_a_grandchild_running_under_workers(make_engine: EngineFactory) -> None:
    leaf = create_workflow("rv-leaf").step("ask", lambda ctx: Flux.wait("go"))
    middle = create_workflow("rv-middle").call("leaf", leaf, input=lambda ctx: {})
    top = create_workflow("rv-top").call("middle", middle, input=lambda ctx: {})
    engine = make_engine()
    engine.start_sync(top, {}, id="G1")
    engine.work_sync([top], burst=True)
    assert engine.get_sync("G1/middle/leaf").waiting_for == "go"
    engine.cancel_sync("G1", reason="enough")
    engine.work_sync([top], burst=True)
    for run_id in ("G1", "G1/middle", "G1/middle/leaf"):
        assert engine.get_sync(run_id).status is RunStatus.CANCELLED, run_id


# ---------------------------------------------------------------- failure


def test_a_failed_child_rolls_back_the_parents_steps_and_names_the_child(make_engine: EngineFactory) -> None:
    def boom(ctx: WorkflowContext[Any]) -> None:
        raise ValueError("card declined")

    child = create_workflow("rv-boom").step("pay", boom, retries=0)
    flow = create_workflow("rv-boom-parent").step("before", note, compensate=undo).call("kid", child)
    result = make_engine().execute_sync(flow, {}, id="F1")
    assert result.status is RunStatus.ROLLED_BACK and result.error_type == "ChildWorkflowError"
    assert "F1/kid" in (result.error or "") and "rv-boom" in (result.error or "")
    assert "card declined" in (result.error or "")
    assert log == ["F1:before", "undo F1:before"]
    assert {s.name: s.status for s in result.history}["kid"] is StepStatus.FAILED


def test_a_later_failure_of_the_parent_does_not_undo_its_completed_child(make_engine: EngineFactory) -> None:
    """A call has no compensation: a parent that fails after its call leaves the child's
    completed steps as they are (the child's own saga ran only if the child failed)."""

    def boom(ctx: WorkflowContext[Any]) -> None:
        raise ValueError("later")

    child = create_workflow("rv-done-kid").step("a", note, compensate=undo)
    flow = create_workflow("rv-late-fail").call("kid", child, input=lambda ctx: {}).step("z", boom, retries=0)
    result = make_engine().execute_sync(flow, {}, id="F2")
    assert result.status is RunStatus.FAILED
    assert log == ["F2/kid:a"]


def test_a_call_takes_no_compensate_option() -> None:
    with pytest.raises(TypeError):
        create_workflow("p").call("c", WAITING, compensate=undo)  # type: ignore[call-arg]


# ---------------------------------------------------------------- hostile


def test_a_parent_id_so_long_that_the_child_id_passes_the_limit_is_refused_clearly(
    make_engine: EngineFactory,
) -> None:
    engine = make_engine()
    rid = "p" * 255  # the longest run id there is: "<it>/kid" is 259 characters
    result = engine.execute_sync(PARENT, {}, id=rid)
    # either the call fails naming the limit, or the child is a run that can be used like any other
    if result.status is RunStatus.SUSPENDED:
        assert engine.get_sync(f"{rid}/kid").parent_id == rid
        engine.signal_sync(WAITING, f"{rid}/kid", "ok")
        engine.cancel_sync(rid, reason="done looking")
    else:
        assert result.failed_step == "kid" and "255" in (result.error or "")
        assert engine.list_sync(parent_id=rid) == []


def test_a_slash_in_ids_cannot_make_two_parents_share_a_child(make_engine: EngineFactory) -> None:
    quick = create_workflow("rv-q").step("q", note)
    one = create_workflow("rv-one").call("b/c", quick, input=lambda ctx: {})
    two = create_workflow("rv-two").call("c", quick, input=lambda ctx: {})
    engine = make_engine()
    assert engine.execute_sync(one, {}, id="a").status is RunStatus.COMPLETED
    clash = engine.execute_sync(two, {}, id="a/b")
    assert clash.status is RunStatus.FAILED and clash.error_type == "RunConflictError"
    assert "a/b/c" in (clash.error or "")
    assert log == ["a/b/c:q"]


def test_a_run_made_by_hand_with_a_childs_id_is_not_taken_for_the_child(make_engine: EngineFactory) -> None:
    quick = create_workflow("rv-q2").step("q", note)
    flow = create_workflow("rv-own").call("kid", quick, input=lambda ctx: {})
    engine = make_engine()
    engine.execute_sync(quick, {}, id="H1/kid")
    result = engine.execute_sync(flow, {}, id="H1")
    assert result.status is RunStatus.FAILED and result.error_type == "RunConflictError"


def test_a_child_id_taken_by_another_run_is_not_retried(make_engine: EngineFactory) -> None:
    quick = create_workflow("rv-q4").step("q", note)
    flow = create_workflow("rv-own2").call("kid", quick, input=lambda ctx: {})
    engine = make_engine()
    engine.execute_sync(quick, {}, id="H2/kid")
    result = engine.execute_sync(flow, {}, id="H2")
    assert result.error_type == "RunConflictError"
    assert result.history[0].attempts == 1  # a taken id stays taken: retrying cannot help


def test_a_call_cannot_be_a_branch_of_a_parallel_group() -> None:
    with pytest.raises(WorkflowDefinitionError):
        create_workflow("p").parallel("g", step("x", WAITING), step("y", note))  # type: ignore[arg-type]


def test_an_input_function_that_returns_non_json_fails_the_call_naming_it(make_engine: EngineFactory) -> None:
    engine = make_engine()
    flow = create_workflow("rv-nonjson").call("kid", WAITING, input=lambda ctx: {"x": object()})
    result = engine.execute_sync(flow, {}, id="J1")
    assert result.status is RunStatus.FAILED and result.failed_step == "kid"
    assert result.error_type == "SerializationError"
    assert engine.list_sync(parent_id="J1") == []
    assert result.history[0].attempts == 1  # bad input is not retried


def test_an_input_function_that_raises_fails_the_call(make_engine: EngineFactory) -> None:
    def bad(ctx: WorkflowContext[Any]) -> Any:
        log.append("input")
        raise KeyError("order")

    flow = create_workflow("rv-raise").call("kid", WAITING, input=bad)
    engine = make_engine()
    result = engine.execute_sync(flow, {}, id="J2")
    assert result.status is RunStatus.FAILED and result.failed_step == "kid"
    assert result.error_type == "KeyError"
    assert engine.list_sync(parent_id="J2") == []


def test_an_input_function_that_changes_ctx_data_has_one_outcome_in_process_and_under_a_worker(
    make_engine: EngineFactory,
) -> None:
    def leaky(ctx: WorkflowContext[Any]) -> Any:
        ctx.data["leak"] = 1
        return {}

    quick = create_workflow("rv-q5").step("q", lambda ctx: None)
    flow = (
        create_workflow("rv-leak").call("kid", quick, input=leaky).step("z", lambda ctx: ctx.data.get("leak"))
    )
    engine = make_engine()
    inline = engine.execute_sync(flow, {}, id="L1")
    engine.start_sync(flow, {}, id="L2")
    engine.work_sync([flow], burst=True)
    worked = engine.get_sync("L2")
    assert inline.status is worked.status is RunStatus.COMPLETED
    assert engine.get_sync("L1").data == worked.data  # stored: the same whichever way it ran
    assert inline.outputs["z"] == worked.outputs["z"]


def test_an_async_input_function_works(make_engine: EngineFactory) -> None:
    async def inp(ctx: WorkflowContext[Any]) -> Any:
        await asyncio.sleep(0)
        return {"from": "async"}

    quick = create_workflow("rv-q3").step("q", lambda ctx: ctx.data.update(got=ctx.input))
    flow = create_workflow("rv-async-in").call("kid", quick, input=inp)
    result = make_engine().execute_sync(flow, {}, id="J3")
    assert result.status is RunStatus.COMPLETED, result.error
    assert result.outputs["kid"] == {"got": {"from": "async"}}


def test_a_child_definition_changed_before_the_child_starts_is_the_one_it_runs(
    make_engine: EngineFactory,
) -> None:
    v1 = create_workflow("rv-ver0").step("a", note)
    v2 = create_workflow("rv-ver0").step("a2", note)
    p1 = create_workflow("rv-ver0-parent").step("before", note).call("kid", v1, input=lambda ctx: {})
    p2 = create_workflow("rv-ver0-parent").step("before", note).call("kid", v2, input=lambda ctx: {})
    make_engine().start_sync(p1, {}, id="V0")
    later = make_engine()  # the next release's worker
    later.work_sync([p2], burst=True)
    done = later.get_sync("V0")
    assert done.status is RunStatus.COMPLETED, done.error
    assert done.outputs["kid"] == {"a2": True}


def test_cancelling_a_parent_whose_waiting_child_no_longer_fits_its_definition(
    make_engine: EngineFactory,
) -> None:
    """A new release renames a finished step of the child while the child waits; the
    operator cancels the parent with the new release's workflow. The cancel either refuses
    and changes nothing, or it succeeds and says so: not both."""
    v1 = create_workflow("rv-ver").step("a", note).step("ask", lambda ctx: Flux.wait("ok"))
    p1 = create_workflow("rv-ver-parent").call("kid", v1, input=lambda ctx: {})
    make_engine().execute_sync(p1, {}, id="V1")
    v2 = create_workflow("rv-ver").step("a2", note).step("ask", lambda ctx: Flux.wait("ok"))
    p2 = create_workflow("rv-ver-parent").call("kid", v2, input=lambda ctx: {})
    later = make_engine()
    try:
        result = later.cancel_sync("V1", reason="retired", flow=p2)
    except Exception:
        assert later.get_sync("V1").status is RunStatus.SUSPENDED, "raised, but the parent was cancelled"
    else:
        assert result.status is RunStatus.CANCELLED


def test_a_resumed_parent_whose_call_now_names_another_workflow_gets_a_version_error(
    make_engine: EngineFactory,
) -> None:
    other = create_workflow("rv-other").step("o", note)
    p2 = (
        create_workflow("rv-parent")
        .step("before", note, compensate=undo)
        .call("kid", other)
        .step("after", note)
    )
    engine = make_engine()
    engine.execute_sync(PARENT, {}, id="V2")
    engine.signal_sync(WAITING, "V2/kid", "ok")  # the parent is due
    result = make_engine().resume_sync(p2, "V2")
    assert result.failed_step == "kid"
    assert result.error_type == "WorkflowVersionError", (result.error_type, result.error)
    assert "did not start" not in (result.error or "")


# ---------------------------------------------------------------- trace


def test_the_trace_links_child_and_parent(tmp_path: Any) -> None:
    sink = MemoryTraceSink()
    engine = FluxEngine(trace=sink, logger=FluxSilentLogger(), default_backoff=FAST)
    quick = create_workflow("rv-tq").step("q", note)
    flow = create_workflow("rv-tp").call("kid", quick, input=lambda ctx: {}).step("z", note)
    assert engine.execute_sync(flow, {}, id="T1").status is RunStatus.COMPLETED
    start = next(e for e in sink.events if e["type"] == "workflow:start" and e["workflowId"] == "T1/kid")
    assert start["parentId"] == "T1" and start["parentStep"] == "kid"
    call_events = [e for e in sink.events if e["workflowId"] == "T1" and e.get("stepName") == "kid"]
    assert call_events and all(e["childId"] == "T1/kid" for e in call_events)
    assert not any("childId" in e for e in sink.events if e.get("stepName") == "z")
    parent_start = next(e for e in sink.events if e["type"] == "workflow:start" and e["workflowId"] == "T1")
    assert "parentId" not in parent_start
    engine.close_sync()


def test_the_trace_of_a_child_named_with_a_slash_under_a_parent_with_a_slash() -> None:
    sink = MemoryTraceSink()
    engine = FluxEngine(trace=sink, logger=FluxSilentLogger(), default_backoff=FAST)
    quick = create_workflow("rv-tq2").step("q", note)
    flow = create_workflow("rv-tp2").call("x/y", quick, input=lambda ctx: {})
    assert engine.execute_sync(flow, {}, id="a/b").status is RunStatus.COMPLETED
    start = next(e for e in sink.events if e["type"] == "workflow:start" and e["workflowId"] == "a/b/x/y")
    assert start["parentId"] == "a/b" and start["parentStep"] == "x/y"
    engine.close_sync()


def test_a_signal_by_hand_to_a_parent_waiting_for_its_child_is_refused(make_engine: EngineFactory) -> None:
    engine = make_engine()
    engine.execute_sync(PARENT, {}, id="SG1")
    with pytest.raises(RunStateError):
        engine.signal_sync(PARENT, "SG1", "child:SG1/kid", {"forged": True})
    assert engine.get_sync("SG1").status is RunStatus.SUSPENDED


def test_conflict_error_is_exported() -> None:
    assert issubclass(RunConflictError, Exception) and issubclass(ChildWorkflowError, Exception)


# ---------------------------------------------------------------- the race on PostgreSQL too


def test_a_child_that_ends_before_its_parent_suspends_leaves_the_parent_due_on_postgres(
    request: pytest.FixtureRequest,
) -> None:
    """tests/engine/test_call_race.py covers memory and SQLite; the same order on PostgreSQL:
    another worker runs the child to its end just before the parent's suspending write."""
    from flux.records import RunRecord
    from flux.storage.postgres import PostgresStorage

    from ..services import postgres_url_or_skip

    url = postgres_url_or_skip(request)
    quick = create_workflow("rv-pg-kid").step("q", note)
    flow = create_workflow("rv-pg-parent").call("kid", quick, input=lambda ctx: {}).step("z", note)
    other = FluxEngine(storage=PostgresStorage(url), logger=FluxSilentLogger())
    raced: list[bool] = []

    class Racing(PostgresStorage):
        async def save_run(self, run: RunRecord, steps: Any, owner: str | None) -> None:
            if not raced and run.status is RunStatus.SUSPENDED and run.waiting_for == "child:PG1/kid":
                raced.append(True)
                assert await other.work([quick], burst=True) == 1
            await super().save_run(run, steps, owner)

    engine = FluxEngine(storage=Racing(url), logger=FluxSilentLogger())

    async def scenario() -> Any:
        await park_under_worker(engine, flow, "PG1")
        assert raced
        parked = await engine.storage.load_run("PG1")
        assert parked is not None and parked.status is RunStatus.SUSPENDED
        assert parked.timer == "child" and parked.due_at() is not None  # due, not asleep
        assert await engine.work([flow], burst=True) == 1
        return await engine.get("PG1")

    try:
        result = asyncio.run(scenario())
    finally:
        engine.close_sync()
        other.close_sync()
    assert result.status is RunStatus.COMPLETED, result.error
    assert log == ["PG1/kid:q", "PG1:z"]


def test_a_parents_deadline_cancels_its_child_running_on_another_worker(tmp_path: Any) -> None:
    """The parent waits (held by nobody) while another worker runs its child; at the
    parent's deadline a worker cancels the parent, and the child, held elsewhere, is
    cancelled by its holder within a heartbeat (the cancel request left by the parent's end)."""
    from flux import SQLiteStorage

    entered = asyncio.Event()

    async def slow(ctx: WorkflowContext[Any]) -> None:
        entered.set()
        await asyncio.sleep(3600)

    child = create_workflow("rv-dl-kid").step("slow", slow)
    flow = create_workflow("rv-dl-parent").deadline(1.0).call("kid", child, input=lambda ctx: {})
    db = tmp_path / "flux.db"
    a = FluxEngine(storage=SQLiteStorage(db), logger=FluxSilentLogger(), lease_seconds=2.0)
    b = FluxEngine(storage=SQLiteStorage(db), logger=FluxSilentLogger(), lease_seconds=2.0)
    stop = asyncio.Event()

    async def scenario() -> tuple[Any, Any]:
        await park_under_worker(a, flow, "DL1")
        kid_worker = asyncio.ensure_future(b.work([child], stop=stop.is_set, poll=0.05))
        await entered.wait()
        parent_worker = asyncio.ensure_future(a.work([flow], stop=stop.is_set, poll=0.05))
        kid = await a.wait("DL1/kid", timeout=60)
        parent = await a.wait("DL1", timeout=60)
        stop.set()
        await asyncio.gather(kid_worker, parent_worker)
        return parent, kid

    try:
        parent, kid = asyncio.run(scenario())
    finally:
        a.close_sync()
        b.close_sync()
    assert parent.status is RunStatus.CANCELLED and parent.error_type == "DeadlineExceededError"
    assert kid.status is RunStatus.CANCELLED and "DL1" in (kid.error or "")


def test_the_step_hooks_of_a_call_come_in_pairs() -> None:
    seen: list[tuple[str, str]] = []

    def hook(kind: str) -> Any:
        def record(*args: Any) -> None:  # (step name, ctx, ...)
            ctx = next(a for a in args if isinstance(a, WorkflowContext))
            if ctx.id == "HK1":
                seen.append((kind, ctx.step_name))

        return record

    engine = FluxEngine(
        logger=FluxSilentLogger(), on={"step_start": hook("start"), "step_complete": hook("complete")}
    )
    quick = create_workflow("rv-hk-kid").step("q", note)
    flow = create_workflow("rv-hk").call("kid", quick, input=lambda ctx: {}).step("z", note)
    assert engine.execute_sync(flow, {}, id="HK1").status is RunStatus.COMPLETED
    engine.close_sync()
    assert seen == [("start", "kid"), ("complete", "kid"), ("start", "z"), ("complete", "z")]


@pytest.mark.xfail(
    strict=False, reason="MemoryStorage makes the parent due at the skewed time (SQL storages fixed)"
)
def test_a_child_ended_by_a_process_whose_clock_is_ahead_leaves_its_parent_due_now(
    make_engine: EngineFactory,
) -> None:
    engine = make_engine()  # this machine's clock
    engine.execute_sync(PARENT, {}, id="SK1")
    ahead = VirtualClock(dt.datetime.now(dt.timezone.utc) + dt.timedelta(minutes=10))
    make_engine(clock=ahead).signal_sync(WAITING, "SK1/kid", "ok")  # another machine, 10 minutes ahead
    assert engine.get_sync("SK1/kid").status is RunStatus.COMPLETED
    assert engine.work_sync([PARENT], burst=True) == 1  # the parent is due now, not in ten minutes
    assert engine.get_sync("SK1").status is RunStatus.COMPLETED


def test_execute_again_with_the_parents_id_finishes_it_once_its_child_ended(
    make_engine: EngineFactory,
) -> None:
    """docs/concepts/branches.md: once the child ends, the parent is due "for a worker, or
    for `execute` with the parent's id"."""
    engine = make_engine()
    engine.execute_sync(PARENT, {}, id="EX1")
    engine.signal_sync(WAITING, "EX1/kid", "ok")
    done = make_engine().execute_sync(PARENT, {}, id="EX1")
    assert done.status is RunStatus.COMPLETED, done.error
    assert log == ["EX1:before", "EX1/kid:done", "EX1:after"]


@pytest.mark.skip(reason="hangs here on 2 Dec (a sync child run inline, its parent cancelled): see the notes")
def test_cancelling_a_parent_whose_sync_child_runs_in_the_same_process(make_engine: EngineFactory) -> None:
    import threading

    entered = threading.Event()

    def busy(ctx: WorkflowContext[Any]) -> None:
        entered.set()
        while not ctx.cancelled:
            threading.Event().wait(0.005)
        log.append("noticed")

    child = create_workflow("rv-sync-kid").step("a", note, compensate=undo).step("busy", busy)
    flow = create_workflow("rv-sync-parent").step("before", note, compensate=undo).call("kid", child)
    engine = make_engine()

    async def scenario() -> tuple[Any, Any]:
        task = asyncio.ensure_future(engine.execute(flow, {}, id="SC1"))
        await asyncio.get_running_loop().run_in_executor(None, entered.wait)
        await engine.cancel("SC1", reason="stop now")
        await task
        return await engine.get("SC1"), await engine.get("SC1/kid")

    parent, kid = engine._run_on_loop(scenario)
    assert parent.status is RunStatus.CANCELLED and kid.status is RunStatus.CANCELLED
    assert "noticed" in log and "undo SC1/kid:a" in log and "undo SC1:before" in log
