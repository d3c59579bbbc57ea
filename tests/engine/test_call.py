"""`.call(name, child, input=)` in one process (SPEC §11): the child is a run of its own
(id "<parent>/<name>", `parent_id`), driven at once by `execute`; its final data is the
step's output; its failure is a `ChildWorkflowError` naming it; a worker runs the parent
without holding it while the child runs."""

from __future__ import annotations

import asyncio
from typing import Any, TypedDict

import pytest

from flux import (
    ChildWorkflowError,
    Flux,
    FluxEngine,
    RunStatus,
    WorkflowContext,
    WorkflowDefinitionError,
    create_workflow,
)

from .conftest import EngineFactory

calls: list[str] = []


class Order(TypedDict):
    order: int


@pytest.fixture(autouse=True)
def _clear() -> None:
    calls.clear()


def bill(ctx: WorkflowContext[Any]) -> str:
    calls.append(f"{ctx.id}:{ctx.step_name}")
    ctx.data["invoice"] = f"INV-{ctx.input['order']}"
    ctx.data["seen_input"] = ctx.input
    return "billed"


def explode(ctx: WorkflowContext[Any]) -> None:
    calls.append(f"{ctx.id}:{ctx.step_name}")
    raise ValueError("card declined")


def after(ctx: WorkflowContext[Any]) -> Any:
    calls.append(f"{ctx.id}:{ctx.step_name}")
    return ctx.outputs["invoice"]


INVOICE = create_workflow("invoice").step("bill", bill)
FAILING = create_workflow("failing-invoice").step("bill", explode)
CHECKOUT = (
    create_workflow("checkout")
    .step("validate", lambda ctx: ctx.data.update(valid=True))
    .call("invoice", INVOICE, input=lambda ctx: {"order": ctx.input["id"]})
    .step("after", after)
)


def test_parent_and_child_complete_in_process(make_engine: EngineFactory) -> None:
    engine = make_engine()
    result = engine.execute_sync(CHECKOUT, {"id": 7}, id="ORD-7")
    assert result.status is RunStatus.COMPLETED, result.error
    assert result.outputs["invoice"] == {"invoice": "INV-7", "seen_input": {"order": 7}}
    assert result.outputs["after"] == {"invoice": "INV-7", "seen_input": {"order": 7}}
    assert result.data == {"valid": True}  # the child's data is the step's output, not merged
    assert result.parent_id is None
    child = engine.get_sync("ORD-7/invoice")
    assert child.status is RunStatus.COMPLETED and child.name == "invoice"
    assert child.parent_id == "ORD-7" and child.input == {"order": 7}
    assert [r.id for r in engine.list_sync(parent_id="ORD-7")] == ["ORD-7/invoice"]
    assert engine.list_sync(parent_id="ORD-7/invoice") == []
    assert calls == ["ORD-7/invoice:bill", "ORD-7:after"]


def test_a_call_without_input_gives_the_child_the_parents_input(make_engine: EngineFactory) -> None:
    flow = create_workflow("plain").call("invoice", INVOICE)
    result = make_engine().execute_sync(flow, {"order": 3}, id="P")
    assert result.status is RunStatus.COMPLETED, result.error
    assert result.outputs["invoice"]["seen_input"] == {"order": 3}


def test_executing_the_parent_again_starts_no_second_child(make_engine: EngineFactory) -> None:
    engine = make_engine()
    engine.execute_sync(CHECKOUT, {"id": 1}, id="P1")
    again = make_engine().execute_sync(CHECKOUT, {"id": 1}, id="P1")
    assert again.status is RunStatus.COMPLETED
    assert calls.count("P1/invoice:bill") == 1


def test_a_child_that_fails_fails_the_step_with_child_workflow_error(make_engine: EngineFactory) -> None:
    flow = create_workflow("checkout-f").call("invoice", FAILING, input=lambda ctx: {})
    result = make_engine().execute_sync(flow, {}, id="F1")
    assert result.status is RunStatus.FAILED
    assert result.error_type == "ChildWorkflowError" and result.failed_step == "invoice"
    assert result.error is not None and "F1/invoice" in result.error and "card declined" in result.error
    assert "ValueError" in result.error
    # the child retried its own step (default_retries=3); the call step was not retried on top
    assert calls == ["F1/invoice:bill"] * 4
    assert result.history[0].attempts == 1
    assert make_engine().get_sync("F1/invoice").status is RunStatus.FAILED
    assert issubclass(ChildWorkflowError, Exception)


def test_a_child_input_that_does_not_validate_names_the_step(make_engine: EngineFactory) -> None:
    typed = create_workflow("typed").input(Order).step("s", lambda ctx: None)
    flow = create_workflow("bad-input").call("typed", typed, input=lambda ctx: {"order": "x"})
    engine = make_engine()
    result = engine.execute_sync(flow, {}, id="B1")
    assert result.status is RunStatus.FAILED and result.failed_step == "typed"
    assert result.error_type == "InputValidationError" and "typed" in (result.error or "")
    assert engine.list_sync(parent_id="B1") == []  # nothing half-stored


def test_a_suspended_child_suspends_its_parent_until_it_ends(make_engine: EngineFactory) -> None:
    approval = create_workflow("approval").step("ask", lambda ctx: Flux.wait("ok")).step("done", bill)
    flow = create_workflow("needs-approval").call("approval", approval, input=lambda ctx: {"order": 9})
    engine = make_engine()
    result = engine.execute_sync(flow, {}, id="A1")
    assert result.status is RunStatus.SUSPENDED and result.waiting_for == "child:A1/approval"
    assert engine.get_sync("A1/approval").waiting_for == "ok"
    child = engine.signal_sync(approval, "A1/approval", "ok", True)
    assert child.status is RunStatus.COMPLETED
    assert engine.get_sync("A1").wake_at is not None  # due now: its child has ended
    engine.work_sync([flow], burst=True)
    done = engine.get_sync("A1")
    assert done.status is RunStatus.COMPLETED, done.error
    assert done.outputs["approval"]["invoice"] == "INV-9"


def test_a_worker_runs_the_parent_without_holding_it_while_the_child_runs(make_engine: EngineFactory) -> None:
    engine = make_engine()
    engine.start_sync(CHECKOUT, {"id": 5}, id="W1")

    async def steps() -> None:
        # one claim at a time: the parent suspends on its child, the child runs, the parent ends
        while await engine.work([CHECKOUT], burst=True, poll=0.01):
            pass

    parent_seen: list[tuple[RunStatus, str | None, bool]] = []

    async def one_at_a_time() -> None:
        storage = engine.storage
        lease = engine.leases.new()
        claimed = await storage.claim_next(["checkout", "invoice"], lease)
        assert claimed is not None and claimed.id == "W1"
        await engine._run_claimed(CHECKOUT, claimed, inline=False)
        stored = await storage.load_run("W1")
        assert stored is not None
        parent_seen.append((stored.status, stored.waiting_for, stored.lease is None))
        child = await storage.load_run("W1/invoice")
        assert child is not None and child.status is RunStatus.PENDING and child.parent_id == "W1"
        await steps()

    engine._run_on_loop(one_at_a_time)
    assert parent_seen == [(RunStatus.SUSPENDED, "child:W1/invoice", True)]
    result = engine.get_sync("W1")
    assert result.status is RunStatus.COMPLETED, result.error
    assert result.outputs["after"]["invoice"] == "INV-5"
    assert calls == ["W1/invoice:bill", "W1:after"]


def test_cancelling_a_parent_cancels_its_child_running_in_the_same_process(
    make_engine: EngineFactory,
) -> None:
    entered = asyncio.Event()

    async def slow(ctx: WorkflowContext[Any]) -> None:
        entered.set()
        await asyncio.sleep(3600)

    child = create_workflow("slow-child").step("slow", slow)
    flow = create_workflow("slow-parent").step("a", lambda ctx: 1).call("slow", child, input=lambda ctx: {})
    engine = make_engine()

    async def scenario() -> tuple[Any, Any]:
        task = asyncio.ensure_future(engine.execute(flow, {}, id="C1"))
        await entered.wait()
        cancelled = await engine.cancel("C1", reason="customer asked")
        await task
        return cancelled, await engine.get("C1/slow")

    parent, kid = engine._run_on_loop(scenario)
    assert parent.status is RunStatus.CANCELLED and kid.status is RunStatus.CANCELLED
    assert parent.error_type == "RunCancelledError" and parent.failed_step == "slow"
    assert "customer asked" in (kid.error or "")


def test_cancelling_a_suspended_parent_cancels_its_pending_child(make_engine: EngineFactory) -> None:
    engine = make_engine()
    engine.start_sync(CHECKOUT, {"id": 2}, id="S1")

    async def park() -> None:
        claimed = await engine.storage.claim_next(["checkout"], engine.leases.new())
        assert claimed is not None
        await engine._run_claimed(CHECKOUT, claimed, inline=False)

    engine._run_on_loop(park)
    assert engine.get_sync("S1").status is RunStatus.SUSPENDED
    result = engine.cancel_sync("S1", reason="stop")
    assert result.status is RunStatus.CANCELLED
    assert engine.get_sync("S1/invoice").status is RunStatus.CANCELLED
    assert engine.work_sync([CHECKOUT], burst=True) == 0
    assert calls == []


def test_a_call_of_a_non_workflow_or_of_itself_is_a_definition_error() -> None:
    with pytest.raises(WorkflowDefinitionError, match="needs a workflow"):
        create_workflow("p").call("c", lambda ctx: None)  # type: ignore[arg-type]
    with pytest.raises(WorkflowDefinitionError, match="cannot call itself"):
        create_workflow("p").call("c", create_workflow("p").step("s", lambda ctx: None))
    with pytest.raises(WorkflowDefinitionError, match="input must be a function"):
        create_workflow("p").call("c", INVOICE, input={"order": 1})  # type: ignore[arg-type]


def test_engine_list_filters_by_parent_id_and_checks_it(engine: FluxEngine) -> None:
    engine.execute_sync(CHECKOUT, {"id": 1}, id="L1")
    engine.execute_sync(CHECKOUT, {"id": 2}, id="L2")
    assert [r.id for r in engine.list_sync(parent_id="L2")] == ["L2/invoice"]
    assert {r.id for r in engine.list_sync(name="invoice")} == {"L1/invoice", "L2/invoice"}


def test_a_parent_past_its_deadline_cancels_its_waiting_child(make_engine: EngineFactory) -> None:
    import datetime as dt

    from flux.testing import VirtualClock

    clock = VirtualClock(dt.datetime(2030, 1, 1, tzinfo=dt.timezone.utc))
    engine = make_engine(clock=clock)
    approval = create_workflow("slow-approval").step("ask", lambda ctx: Flux.wait("ok"))
    flow = create_workflow("hurried").deadline(60).call("approval", approval, input=lambda ctx: {})
    result = engine.execute_sync(flow, {}, id="D1")
    assert result.status is RunStatus.SUSPENDED and result.waiting_for == "child:D1/approval"
    clock.advance_sync(61)
    parent, child = engine.get_sync("D1"), engine.get_sync("D1/approval")
    assert parent.status is RunStatus.CANCELLED and parent.error_type == "DeadlineExceededError"
    assert child.status is RunStatus.CANCELLED
    assert "its parent run 'D1'" in (child.error or "") and "deadline" in (child.error or "")


def test_a_parent_past_its_deadline_cancels_its_child_running_in_the_same_process(
    make_engine: EngineFactory,
) -> None:
    import datetime as dt

    from flux.testing import VirtualClock

    clock = VirtualClock(dt.datetime(2030, 1, 1, tzinfo=dt.timezone.utc))
    engine = make_engine(clock=clock)
    napping = create_workflow("napping").step("nap", lambda ctx: Flux.sleep(3)).step("after", bill)
    flow = create_workflow("in-a-hurry").deadline(1).call("nap", napping, input=lambda ctx: {"order": 1})

    async def scenario() -> Any:
        return await clock.run(engine.execute(flow, {}, id="D2"))

    parent = engine._run_on_loop(scenario)
    child = engine.get_sync("D2/nap")
    assert parent.status is RunStatus.CANCELLED and parent.error_type == "DeadlineExceededError"
    assert child.status is RunStatus.CANCELLED, child.status
    assert calls == []  # the child's step after its nap never ran


def test_calls_nest_and_a_cancel_reaches_the_grandchild(make_engine: EngineFactory) -> None:
    leaf = create_workflow("leaf").step("ask", lambda ctx: Flux.wait("go")).step("bill", bill)
    middle = create_workflow("middle").call("leaf", leaf, input=lambda ctx: {"order": 2})
    top = create_workflow("top").call("middle", middle, input=lambda ctx: {})
    engine = make_engine()
    result = engine.execute_sync(top, {}, id="N1")
    assert result.waiting_for == "child:N1/middle"
    assert engine.get_sync("N1/middle").waiting_for == "child:N1/middle/leaf"
    assert engine.get_sync("N1/middle/leaf").parent_id == "N1/middle"
    engine.cancel_sync("N1", reason="enough")
    for run_id in ("N1", "N1/middle", "N1/middle/leaf"):
        assert engine.get_sync(run_id).status is RunStatus.CANCELLED, run_id


def test_nested_calls_complete_and_wake_up_the_chain(make_engine: EngineFactory) -> None:
    leaf = create_workflow("leaf2").step("ask", lambda ctx: Flux.wait("go")).step("bill", bill)
    middle = create_workflow("middle2").call("leaf", leaf, input=lambda ctx: {"order": 3})
    top = create_workflow("top2").call("middle", middle, input=lambda ctx: {}).step("after", lambda ctx: 1)
    engine = make_engine()
    engine.execute_sync(top, {}, id="N2")
    engine.signal_sync(leaf, "N2/middle/leaf", "go")
    engine.work_sync([top], burst=True)  # the middle, then the top: each woken by its child's end
    done = engine.get_sync("N2")
    assert done.status is RunStatus.COMPLETED, done.error
    assert done.outputs["middle"] == {}  # the middle's data: its call left it unchanged
    assert engine.get_sync("N2/middle").outputs["leaf"]["invoice"] == "INV-3"


def test_a_failed_child_is_run_again_by_retrying_it_then_the_parents_call(make_engine: EngineFactory) -> None:
    broken = {"yes": True}

    def flaky(ctx: WorkflowContext[Any]) -> str:
        calls.append(ctx.id)
        if broken["yes"]:
            raise ValueError("down")
        return "up"

    child = create_workflow("flaky-child").step("try", flaky, retries=0)
    flow = create_workflow("flaky-parent").call("child", child, input=lambda ctx: {})
    flow = flow.step("after", lambda ctx: 1)
    engine = make_engine()
    assert engine.execute_sync(flow, {}, id="T1").error_type == "ChildWorkflowError"
    again = engine.retry_step_sync(flow, "T1", "child")  # the child has failed for good: same error
    assert again.error_type == "ChildWorkflowError" and calls == ["T1/child"]
    broken["yes"] = False
    assert engine.retry_step_sync(child, "T1/child", "try").status is RunStatus.COMPLETED
    done = engine.retry_step_sync(flow, "T1", "child")
    assert done.status is RunStatus.COMPLETED and done.outputs["child"] == {}
    assert calls == ["T1/child", "T1/child"]
