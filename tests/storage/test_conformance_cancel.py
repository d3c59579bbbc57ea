"""Conformance: `request_cancel` records a reason whoever holds the run, and a holder's own
saves never wipe a request written meanwhile by another process."""

from __future__ import annotations

import pytest

from flux.records import RunRecord
from flux.status import RunStatus, StepStatus

from .conftest import Factory, run
from .test_conformance import lease, make_run, save

ACTIVE = [RunStatus.PENDING, RunStatus.RUNNING, RunStatus.SUSPENDED, RunStatus.ROLLING_BACK]
FINISHED = [
    RunStatus.COMPLETED,
    RunStatus.FAILED,
    RunStatus.ROLLED_BACK,
    RunStatus.ROLLBACK_FAILED,
    RunStatus.CANCELLED,
]


def same_apart_from_the_request(a: RunRecord, b: RunRecord) -> None:
    assert (a.status, a.data_json, a.error, a.waiting_for, a.seq, a.updated_at) == (
        b.status,
        b.data_json,
        b.error,
        b.waiting_for,
        b.seq,
        b.updated_at,
    )
    assert a.steps == b.steps
    assert (a.lease is None) == (b.lease is None)
    if a.lease is not None and b.lease is not None:
        assert (a.lease.owner, a.lease.expires_at) == (b.lease.owner, b.lease.expires_at)


@pytest.mark.parametrize("status", ACTIVE)
def test_a_request_on_an_active_run_is_recorded_and_nothing_else_changes(
    make_storage: Factory, status: RunStatus
) -> None:
    storage = make_storage()
    held = lease("holder") if status in (RunStatus.RUNNING, RunStatus.ROLLING_BACK) else None
    run(storage.create_run(make_run(status=status, lease=held, data_json='{"k":1}', waiting_for=None)))
    before = run(storage.load_run("r1"))
    answer = run(make_storage().request_cancel("r1", "customer asked"))
    assert answer is not None and answer.cancel_reason == "customer asked"
    loaded = run(make_storage().load_run("r1"))
    assert loaded is not None and loaded.cancel_reason == "customer asked"
    same_apart_from_the_request(loaded, before)
    same_apart_from_the_request(answer, before)
    if held is not None:  # the holder keeps its lease and may go on saving
        assert run(storage.renew_lease("r1", "holder", held.expires_at + 10))


@pytest.mark.parametrize("status", FINISHED)
def test_a_finished_run_is_returned_unchanged(make_storage: Factory, status: RunStatus) -> None:
    storage = make_storage()
    run(storage.create_run(make_run(status=status)))
    before = run(storage.load_run("r1"))
    answer = run(make_storage().request_cancel("r1", "too late"))
    assert answer is not None and answer.cancel_reason is None
    same_apart_from_the_request(answer, before)
    loaded = run(storage.load_run("r1"))
    assert loaded is not None and loaded.cancel_reason is None


def test_an_unknown_run_gives_none(make_storage: Factory) -> None:
    assert run(make_storage().request_cancel("ghost", "why")) is None


def test_the_first_request_is_kept(make_storage: Factory) -> None:
    storage = make_storage()
    run(storage.create_run(make_run(status=RunStatus.PENDING)))
    run(storage.request_cancel("r1", "first"))
    answer = run(make_storage().request_cancel("r1", "second"))
    assert answer is not None and answer.cancel_reason == "first"


@pytest.mark.parametrize("how", ["one step", "several steps", "status change", "release"])
def test_a_holders_save_keeps_a_request_written_meanwhile(make_storage: Factory, how: str) -> None:
    storage = make_storage()
    record = make_run(lease=lease("holder"))
    run(storage.create_run(record))
    record.steps[0].status = StepStatus.COMPLETED
    save(storage, record, [0], "holder")  # the holder is in its stride (SQLite's fast path)
    assert run(make_storage().request_cancel("r1", "stop it")) is not None  # another process
    assert record.cancel_reason is None  # the holder has not seen it yet
    record.steps[1].status = StepStatus.RUNNING
    record.data_json = '{"more":true}'
    if how == "one step":
        save(storage, record, [1], "holder")
    elif how == "several steps":
        save(storage, record, [0, 1], "holder")
    elif how == "status change":
        record.status = RunStatus.ROLLING_BACK
        save(storage, record, [1], "holder")
    else:
        record.status = RunStatus.SUSPENDED
        save(storage, record, [1], "holder")
    loaded = run(make_storage().load_run("r1"))
    assert loaded is not None and loaded.cancel_reason == "stop it"
    assert loaded.data_json == '{"more":true}'


def test_claim_next_returns_the_request(make_storage: Factory) -> None:
    storage = make_storage()
    run(storage.create_run(make_run(status=RunStatus.PENDING)))
    run(storage.request_cancel("r1", "before it started"))
    claimed = run(make_storage().claim_next(["wf"], lease("worker")))
    assert claimed is not None and claimed.cancel_reason == "before it started"


def test_a_save_of_an_active_run_writes_the_records_reason(make_storage: Factory) -> None:
    storage = make_storage()
    record = make_run(status=RunStatus.SUSPENDED)
    run(storage.create_run(record))
    record.cancel_reason = "cancelled at once"
    record.status = RunStatus.CANCELLED
    save(storage, record, [], None)
    loaded = run(make_storage().load_run("r1"))
    assert loaded is not None and loaded.cancel_reason == "cancelled at once"


def test_a_run_restarted_after_it_finished_takes_the_records_reason(make_storage: Factory) -> None:
    """A finished run can have no request in flight: `retry_step` of a cancelled run clears it."""
    storage = make_storage()
    record = make_run(status=RunStatus.CANCELLED, cancel_reason="old")
    run(storage.create_run(record))
    record.cancel_reason = None
    record.status = RunStatus.RUNNING
    save(storage, record, [], None)
    loaded = run(make_storage().load_run("r1"))
    assert loaded is not None and loaded.cancel_reason is None and loaded.status is RunStatus.RUNNING
