"""Conformance: the fields of schema 2 (cancel reason, holder identity, crash count) are
stored and read back by every operation that carries them."""

from __future__ import annotations

import time

from flux.records import Lease, StepRecord
from flux.status import RunStatus, StepStatus

from .conftest import Factory, run
from .test_conformance import lease, make_run, save

IDENTITY = "boot=4f1c;pidns=4026531836;pid=4242;start=81723"


def identified(owner: str, ttl: float = 30.0) -> Lease:
    return Lease(owner, "host-a", 4242, time.time() + ttl, identity=IDENTITY)


def test_create_and_load_round_trip_the_new_fields(make_storage: Factory) -> None:
    storage = make_storage()
    record = make_run(cancel_reason="customer asked", lease=identified("me"))
    record.steps[0] = StepRecord("s1", "step", StepStatus.RUNNING, attempts=3, started_at=1.0, crashes=2)
    assert run(storage.create_run(record))
    loaded = run(make_storage().load_run("r1"))
    assert loaded is not None
    assert loaded.cancel_reason == "customer asked"
    assert loaded.lease is not None and loaded.lease.identity == IDENTITY and loaded.lease.pid == 4242
    assert loaded.steps[0].crashes == 2 and loaded.steps[1].crashes == 0
    listed = run(make_storage().list_runs())[0]
    assert listed.cancel_reason == "customer asked" and listed.steps[0].crashes == 2


def test_a_lease_without_identity_reads_back_empty(make_storage: Factory) -> None:
    storage = make_storage()
    run(storage.create_run(make_run(lease=lease("me"))))
    loaded = run(storage.load_run("r1"))
    assert loaded is not None and loaded.lease is not None and loaded.lease.identity == ""


def test_saves_write_the_crash_count_of_the_named_steps(make_storage: Factory) -> None:
    storage = make_storage()
    record = make_run(lease=identified("holder"))
    run(storage.create_run(record))
    record.steps[0].status = StepStatus.RUNNING
    record.steps[0].crashes = 1
    save(storage, record, [0], "holder")  # one step: the backends' fast path
    loaded = run(make_storage().load_run("r1"))
    assert loaded is not None and loaded.steps[0].crashes == 1
    record.steps[0].crashes = 2
    record.steps[1].crashes = 1
    save(storage, record, [0, 1], "holder")
    loaded = run(make_storage().load_run("r1"))
    assert loaded is not None and [s.crashes for s in loaded.steps] == [2, 1]


def test_acquire_and_claim_store_the_holder_identity(make_storage: Factory) -> None:
    storage = make_storage()
    run(storage.create_run(make_run("a", created=1.0)))
    run(storage.create_run(make_run("b", created=2.0, status=RunStatus.PENDING)))
    assert run(storage.acquire_lease("a", identified("one")))
    loaded = run(make_storage().load_run("a"))
    assert loaded is not None and loaded.lease is not None and loaded.lease.identity == IDENTITY
    claimed = run(make_storage().claim_next(["wf"], identified("two")))
    assert claimed is not None and claimed.id == "b"
    assert claimed.lease is not None and claimed.lease.identity == IDENTITY
    run(storage.release_lease("b", "two"))
    assert run(storage.acquire_lease("b", lease("three")))  # a holder without identity
    loaded = run(make_storage().load_run("b"))
    assert loaded is not None and loaded.lease is not None and loaded.lease.identity == ""
