"""Conformance: child runs (`.call`, SPEC §11). `list_runs(parent_id=)` finds a parent's
children; the write that ends a child makes its waiting parent due in the same transaction
(and no other parent), and a parent that suspends on a child already ended is due at once."""

from __future__ import annotations

import pytest

from flux import WorkflowStorage
from flux.records import RunRecord, StepRecord
from flux.status import RunStatus, StepStatus

from .conftest import Factory, run
from .test_conformance import lease, make_run, save

T0 = 2_000_000_000.0  # an engine clock far from the real one


def child_of(storage: WorkflowStorage, parent: str, step: str, *, name: str = "child-wf") -> RunRecord:
    """A child run as `invoke_call` stores it for a worker: pending, with `parent_id`."""
    record = make_run(f"{parent}/{step}", name, created=T0, status=RunStatus.PENDING, parent_id=parent)
    record.shape = [["c1", "step"]]
    record.steps = [StepRecord("c1", "step")]
    assert run(storage.create_run(record))
    return record


def parent_run(storage: WorkflowStorage, run_id: str = "p1", *, deadline: float | None = None) -> RunRecord:
    record = make_run(run_id, "parent-wf", created=T0 - 10, lease=lease("w-parent"), deadline=deadline)
    record.shape = [["call", "call"], ["after", "step"]]
    record.steps = [StepRecord("call", "call"), StepRecord("after", "step")]
    assert run(storage.create_run(record))
    return record


def suspend_on(storage: WorkflowStorage, parent: RunRecord, child_id: str, at: float = T0) -> None:
    """The parent's save as the machine makes it when its call step waits for the child."""
    parent.status = RunStatus.SUSPENDED
    parent.waiting_for = f"child:{child_id}"
    parent.steps[0].status = StepStatus.SUSPENDED
    parent.steps[0].waiting_for = parent.waiting_for
    parent.updated_at = at
    save(storage, parent, [0], "w-parent")


def end_child(storage: WorkflowStorage, child: RunRecord, status: RunStatus, at: float) -> None:
    """A worker claims the child and saves it in `status` (a final state, or another)."""
    claimed = run(storage.claim_next([child.name], lease("w-child"), now=at))
    assert claimed is not None and claimed.id == child.id
    claimed.status = RunStatus.RUNNING
    claimed.steps[0].status = StepStatus.RUNNING
    save(storage, claimed, [0], "w-child")
    # a step's save with the run's state unchanged: SQLite's one-statement fast path, which
    # must never carry the final write that follows (it changes the run's status)
    claimed.data_json = '{"step": 1}'
    save(storage, claimed, [0], "w-child")
    claimed.status = status
    claimed.steps[0].status = StepStatus.COMPLETED if status is RunStatus.COMPLETED else StepStatus.FAILED
    claimed.updated_at = at
    claimed.completed_at = at if status is not RunStatus.RUNNING else None
    save(storage, claimed, [0], "w-child")


def test_parent_id_round_trips_and_lists_filter_by_it(make_storage: Factory) -> None:
    storage = make_storage()
    parent_run(storage, "p1")
    parent_run(storage, "p2")
    child_of(storage, "p1", "a")
    child_of(storage, "p1", "b", name="other-child")
    child_of(storage, "p2", "a")
    loaded = run(make_storage().load_run("p1/a"))
    assert loaded is not None and loaded.parent_id == "p1"
    top = run(make_storage().load_run("p1"))
    assert top is not None and top.parent_id is None
    view = make_storage()
    assert sorted(r.id for r in run(view.list_runs(parent_id="p1"))) == ["p1/a", "p1/b"]
    assert [r.id for r in run(view.list_runs(parent_id="p1", name="other-child"))] == ["p1/b"]
    assert [r.id for r in run(view.list_runs(parent_id="p2", status=[RunStatus.PENDING]))] == ["p2/a"]
    assert run(view.list_runs(parent_id="p2", status=[RunStatus.COMPLETED])) == []
    assert run(view.list_runs(parent_id="nobody")) == []


@pytest.mark.parametrize("final", [RunStatus.COMPLETED, RunStatus.FAILED, RunStatus.CANCELLED])
def test_a_child_that_ends_makes_its_waiting_parent_due_in_the_same_write(
    make_storage: Factory, final: RunStatus
) -> None:
    storage = make_storage()
    parent = parent_run(storage)
    child = child_of(storage, "p1", "call")
    suspend_on(storage, parent, child.id)
    assert run(storage.next_due(["parent-wf"])) is None  # asleep until the child ends
    end_child(make_storage(), child, final, at=T0 + 5)
    stored = run(make_storage().load_run("p1"))
    assert stored is not None
    assert (stored.status, stored.wake_at, stored.timer) == (RunStatus.SUSPENDED, T0 + 5, "child")
    assert stored.waiting_for == "child:p1/call" and stored.lease is None
    assert run(storage.next_due(["parent-wf"])) == T0 + 5
    claimed = run(make_storage().claim_next(["parent-wf"], lease("w2"), now=T0 + 5))
    assert claimed is not None and claimed.id == "p1" and claimed.timer == "child"


def test_a_child_that_does_not_end_leaves_its_parent_asleep(make_storage: Factory) -> None:
    storage = make_storage()
    parent = parent_run(storage)
    child = child_of(storage, "p1", "call")
    suspend_on(storage, parent, child.id)
    end_child(make_storage(), child, RunStatus.RUNNING, at=T0 + 5)  # a step done, not the run
    stored = run(make_storage().load_run("p1"))
    assert stored is not None and stored.wake_at is None and stored.timer is None
    assert run(storage.claim_next(["parent-wf"], lease("w2"), now=T0 + 1e6)) is None


def test_only_the_parent_that_waits_for_this_child_wakes(make_storage: Factory) -> None:
    storage = make_storage()
    other = parent_run(storage, "p2")
    suspend_on(storage, other, "p2/call")  # waits for its own child, not yet stored
    plain = make_run("p1", "parent-wf", created=T0, lease=lease("w-parent"))
    plain.status = RunStatus.SUSPENDED
    assert run(storage.create_run(plain))
    plain.waiting_for = "approval"  # the parent of the child, waiting for something else
    plain.steps[0].status = StepStatus.SUSPENDED
    save(storage, plain, [0], "w-parent")
    child = child_of(storage, "p1", "call")
    end_child(make_storage(), child, RunStatus.COMPLETED, at=T0 + 5)
    for run_id in ("p1", "p2"):
        stored = run(make_storage().load_run(run_id))
        assert stored is not None and stored.wake_at is None and stored.timer is None, run_id


def test_a_parent_that_suspends_on_an_ended_child_is_due_at_once(make_storage: Factory) -> None:
    storage = make_storage()
    parent = parent_run(storage, deadline=T0 + 3600)
    child = child_of(storage, "p1", "call")
    end_child(make_storage(), child, RunStatus.COMPLETED, at=T0 + 5)  # before the parent sleeps
    suspend_on(storage, parent, child.id, at=T0 + 7)
    stored = run(make_storage().load_run("p1"))
    assert stored is not None
    assert (stored.status, stored.wake_at, stored.timer) == (RunStatus.SUSPENDED, T0 + 7, "child")
    assert run(storage.next_due(["parent-wf"])) == T0 + 7
    claimed = run(make_storage().claim_next(["parent-wf"], lease("w2"), now=T0 + 7))
    assert claimed is not None and claimed.id == "p1"


def test_a_parent_that_suspends_on_a_running_child_sleeps(make_storage: Factory) -> None:
    storage = make_storage()
    parent = parent_run(storage)
    child = child_of(storage, "p1", "call")
    suspend_on(storage, parent, child.id)
    stored = run(make_storage().load_run("p1"))
    assert stored is not None and stored.wake_at is None and stored.timer is None


@pytest.mark.parametrize("final", [RunStatus.CANCELLED, RunStatus.FAILED])
def test_a_parent_that_ends_requests_the_cancel_of_its_unfinished_children(
    make_storage: Factory, final: RunStatus
) -> None:
    storage = make_storage()
    parent = parent_run(storage)
    done = child_of(storage, "p1", "b")
    end_child(storage, done, RunStatus.COMPLETED, at=T0 + 1)
    asleep = child_of(storage, "p1", "c")
    claimed = run(storage.claim_next(["child-wf"], lease("w-c"), now=T0 + 1))
    assert claimed is not None and claimed.id == asleep.id
    claimed.status, claimed.waiting_for = RunStatus.SUSPENDED, "approval"
    claimed.steps[0].status = StepStatus.SUSPENDED
    save(storage, claimed, [0], "w-c")
    pending = child_of(storage, "p1", "a")
    other = child_of(storage, "p2", "a", name="other-child")  # another parent's child: untouched
    parent.status, parent.error = final, "stop it"
    parent.updated_at = parent.completed_at = T0 + 9
    parent.steps[0].status = StepStatus.CANCELLED if final is RunStatus.CANCELLED else StepStatus.FAILED
    save(storage, parent, [0], "w-parent")
    view = make_storage()
    why = f"its parent run 'p1' ended {final.value}: stop it"
    for child in (pending, asleep):
        stored = run(view.load_run(child.id))
        assert stored is not None and stored.cancel_reason == why, child.id
    for child in (done, other):
        stored = run(view.load_run(child.id))
        assert stored is not None and stored.cancel_reason is None, child.id
    # the suspended child is due at once, for a worker to cancel it; the pending one is claimable
    assert run(view.next_due(["child-wf"])) == T0 + 9
    first = run(view.claim_next(["child-wf"], lease("w"), now=T0 + 9))
    assert first is not None and first.id == asleep.id
    second = run(view.claim_next(["child-wf"], lease("w"), now=T0 + 9))
    assert second is not None and second.id == pending.id


def test_a_completed_parent_without_calls_writes_nothing_more(make_storage: Factory) -> None:
    storage = make_storage()
    plain = make_run("p9", "plain", created=T0, lease=lease("w"))
    assert run(storage.create_run(plain))
    stray = child_of(storage, "p9", "x")  # a run naming it as parent, though it has no call
    plain.status, plain.completed_at = RunStatus.COMPLETED, T0 + 1
    save(storage, plain, [], "w")
    stored = run(make_storage().load_run(stray.id))
    assert stored is not None and stored.cancel_reason is None


def test_a_child_ending_while_its_parent_suspends_never_leaves_the_parent_asleep(
    make_storage: Factory,
) -> None:
    """The two writes at the same instant, from two connections (two processes' views), many
    times over: whichever commits first, the parent ends up due."""
    import asyncio
    import threading

    if not make_storage().durable:
        pytest.skip("the memory storage lives in one thread: its writes cannot interleave")
    views = [make_storage(), make_storage()]
    setup = make_storage()
    rounds = 60
    for i in range(rounds):
        parent = parent_run(setup, f"p{i}")
        child = child_of(setup, parent.id, "call")
        claimed = run(setup.claim_next(["child-wf"], lease("w-child"), now=T0))
        assert claimed is not None and claimed.id == child.id
        claimed.status = RunStatus.RUNNING
        save(setup, claimed, [], "w-child")
    barrier = threading.Barrier(2)
    failures: list[BaseException] = []

    def parent_side() -> None:
        async def go() -> None:
            for i in range(rounds):
                record = run_in(await views[0].load_run(f"p{i}"))
                record.status = RunStatus.SUSPENDED
                record.waiting_for = f"child:p{i}/call"
                record.steps[0].status = StepStatus.SUSPENDED
                record.updated_at, record.rev = T0 + 1, record.rev + 1
                barrier.wait()
                await views[0].save_run(record, [0], "w-parent")

        asyncio.run(go())

    def child_side() -> None:
        async def go() -> None:
            for i in range(rounds):
                record = run_in(await views[1].load_run(f"p{i}/call"))
                record.status = RunStatus.COMPLETED
                record.steps[0].status = StepStatus.COMPLETED
                record.updated_at = record.completed_at = T0 + 2
                record.rev += 1
                barrier.wait()
                await views[1].save_run(record, [0], "w-child")

        asyncio.run(go())

    def guarded(fn: object) -> None:
        try:
            fn()  # type: ignore[operator]
        except BaseException as exc:
            failures.append(exc)
            barrier.abort()

    threads = [threading.Thread(target=guarded, args=(f,)) for f in (parent_side, child_side)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not failures, failures
    asleep = []
    for i in range(rounds):
        stored = run_in(run(setup.load_run(f"p{i}")))
        if stored.timer != "child" or stored.due_at() is None:
            asleep.append(stored.id)
    assert asleep == []


def run_in(record: RunRecord | None) -> RunRecord:
    assert record is not None
    return record
