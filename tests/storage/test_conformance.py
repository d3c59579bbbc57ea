"""The storage conformance suite, run against every backend."""

from __future__ import annotations

import time

import pytest

from flux import StorageError, WorkflowStorage
from flux.errors import LeaseLostError
from flux.records import Lease, RunRecord, StepRecord
from flux.status import RunStatus, StepStatus

from .conftest import Factory, run


def make_run(run_id: str = "r1", name: str = "wf", created: float | None = None, **kw: object) -> RunRecord:
    now = time.time() if created is None else created
    fields: dict[str, object] = {
        "id": run_id,
        "name": name,
        "status": RunStatus.RUNNING,
        "input_json": '{"a":1}',
        "shape": [["s1", "step"], ["s2", "commit"]],
        "steps": [StepRecord("s1", "step"), StepRecord("s2", "commit")],
        "created_at": now,
        "updated_at": now,
    }
    fields.update(kw)
    return RunRecord(**fields)  # type: ignore[arg-type]


def save(storage: WorkflowStorage, record: RunRecord, steps: list[int], owner: str | None) -> None:
    """Save as the engine does: every save increments `rev`."""
    record.rev += 1
    run(storage.save_run(record, steps, owner))


def lease(owner: str, ttl: float = 30.0, pid: int = 1) -> Lease:
    return Lease(owner, "host-a", pid, time.time() + ttl)


def test_create_then_load_round_trips_every_field(make_storage: Factory) -> None:
    storage = make_storage()
    record = make_run(version="v2", seq=3, data_json='{"k":[1,2]}', lease=lease("me"))
    record.steps[0] = StepRecord(
        "s1",
        "step",
        StepStatus.COMPLETED,
        attempts=2,
        started_at=1.5,
        completed_at=2.5,
        output_json='"out"',
        error=None,
        data_before="{}",
        compensation_attempts=0,
    )
    assert run(storage.create_run(record)) is True
    loaded = run(make_storage().load_run("r1"))
    assert loaded is not None
    assert loaded.id == "r1" and loaded.name == "wf" and loaded.status is RunStatus.RUNNING
    assert loaded.input_json == '{"a":1}' and loaded.data_json == '{"k":[1,2]}'
    assert loaded.version == "v2" and loaded.seq == 3
    assert loaded.shape == [["s1", "step"], ["s2", "commit"]]
    assert loaded.steps[0] == record.steps[0]
    assert loaded.steps[1].status is StepStatus.PENDING and loaded.steps[1].kind == "commit"
    assert loaded.lease is not None and loaded.lease.owner == "me" and loaded.lease.host == "host-a"


def test_create_existing_id_changes_nothing(make_storage: Factory) -> None:
    storage = make_storage()
    assert run(storage.create_run(make_run()))
    assert run(storage.create_run(make_run(input_json='{"other":2}'))) is False
    loaded = run(storage.load_run("r1"))
    assert loaded is not None and loaded.input_json == '{"a":1}'


def test_load_unknown_is_none(make_storage: Factory) -> None:
    assert run(make_storage().load_run("nope")) is None


def test_loaded_record_does_not_alias_the_stored_one(make_storage: Factory) -> None:
    storage = make_storage()
    run(storage.create_run(make_run()))
    loaded = run(storage.load_run("r1"))
    assert loaded is not None
    loaded.steps[0].status = StepStatus.FAILED
    loaded.data_json = '{"changed":true}'
    again = run(storage.load_run("r1"))
    assert again is not None
    assert again.steps[0].status is StepStatus.PENDING and again.data_json == "{}"


def test_save_writes_run_fields_and_only_the_named_steps(make_storage: Factory) -> None:
    storage = make_storage()
    record = make_run()
    run(storage.create_run(record))
    record.status = RunStatus.SUSPENDED
    record.waiting_for = "approval"
    record.data_json = '{"x":1}'
    record.steps[0].status = StepStatus.SUSPENDED
    record.steps[1].attempts = 99  # not named: must not be written
    save(storage, record, [0], None)
    loaded = run(make_storage().load_run("r1"))
    assert loaded is not None
    assert loaded.status is RunStatus.SUSPENDED and loaded.waiting_for == "approval"
    assert loaded.data_json == '{"x":1}'
    assert loaded.steps[0].status is StepStatus.SUSPENDED
    assert loaded.steps[1].attempts == 0


def test_save_with_grown_and_shrunk_definitions(make_storage: Factory) -> None:
    storage = make_storage()
    record = make_run()
    run(storage.create_run(record))
    record.steps.append(StepRecord("s3", "step"))
    record.shape.append(["s3", "step"])
    save(storage, record, [0, 1, 2], None)
    loaded = run(storage.load_run("r1"))
    assert loaded is not None and [s.name for s in loaded.steps] == ["s1", "s2", "s3"]
    record.steps = record.steps[:1]
    record.shape = record.shape[:1]
    save(storage, record, [0], None)
    loaded = run(storage.load_run("r1"))
    assert loaded is not None and [s.name for s in loaded.steps] == ["s1"]
    assert loaded.shape == [["s1", "step"]]


def test_save_by_a_non_holder_raises_and_writes_nothing(make_storage: Factory) -> None:
    storage = make_storage()
    record = make_run(lease=lease("holder"))
    run(storage.create_run(record))
    record.data_json = '{"stolen":true}'
    with pytest.raises(LeaseLostError):
        save(storage, record, [0], "intruder")
    assert isinstance(LeaseLostError("x"), StorageError)
    loaded = run(storage.load_run("r1"))
    assert loaded is not None and loaded.data_json == "{}"
    save(storage, record, [0], "holder")
    loaded = run(storage.load_run("r1"))
    assert loaded is not None and loaded.data_json == '{"stolen":true}'


def test_status_changes_after_many_saves_are_all_visible(make_storage: Factory) -> None:
    storage = make_storage()
    record = make_run()
    run(storage.create_run(record))
    for status in (
        RunStatus.RUNNING,
        RunStatus.SUSPENDED,
        RunStatus.RUNNING,
        RunStatus.RUNNING,
        RunStatus.COMPLETED,
    ):
        record.status = status
        save(storage, record, [], None)
        loaded = run(make_storage().load_run("r1"))
        assert loaded is not None and loaded.status is status


def test_a_second_view_sees_changes_made_by_the_first(make_storage: Factory) -> None:
    a, b = make_storage(), make_storage()
    record = make_run()
    run(a.create_run(record))
    loaded = run(b.load_run("r1"))
    assert loaded is not None
    loaded.status = RunStatus.FAILED
    save(b, loaded, [], None)
    record.status = RunStatus.RUNNING  # a's own idea; the save must still write the status
    save(a, record, [], None)
    final = run(b.load_run("r1"))
    assert final is not None and final.status is RunStatus.RUNNING


def test_list_filters_orders_and_pages(make_storage: Factory) -> None:
    storage = make_storage()
    for i in range(6):
        status = RunStatus.COMPLETED if i % 2 else RunStatus.FAILED
        run(
            storage.create_run(
                make_run(f"r{i}", name="a" if i < 4 else "b", created=1000.0 + i, status=status)
            )
        )
    ids = [r.id for r in run(storage.list_runs(limit=10))]
    assert ids == ["r5", "r4", "r3", "r2", "r1", "r0"]
    assert [r.id for r in run(storage.list_runs(name="a", limit=10))] == ["r3", "r2", "r1", "r0"]
    assert [r.id for r in run(storage.list_runs(status=[RunStatus.FAILED], limit=10))] == ["r4", "r2", "r0"]
    assert [r.id for r in run(storage.list_runs(name="a", status=[RunStatus.COMPLETED]))] == ["r3", "r1"]
    assert [r.id for r in run(storage.list_runs(limit=2, offset=1))] == ["r4", "r3"]
    assert run(storage.list_runs(name="zzz")) == []
    listed = run(storage.list_runs(limit=1))[0]
    assert [s.name for s in listed.steps] == ["s1", "s2"]


def test_lease_is_exclusive_until_it_expires(make_storage: Factory) -> None:
    storage = make_storage()
    run(storage.create_run(make_run()))
    assert run(storage.acquire_lease("r1", lease("a")))
    assert run(storage.acquire_lease("r1", lease("a")))  # re-entrant for its holder
    assert not run(storage.acquire_lease("r1", lease("b")))
    assert run(storage.renew_lease("r1", "a", time.time() - 1))  # now expired
    assert not run(storage.renew_lease("r1", "b", time.time() + 30))
    assert run(storage.acquire_lease("r1", lease("b")))
    assert not run(storage.renew_lease("r1", "a", time.time() + 30))
    loaded = run(storage.load_run("r1"))
    assert loaded is not None and loaded.lease is not None and loaded.lease.owner == "b"


def test_lease_can_be_taken_from_a_named_dead_holder(make_storage: Factory) -> None:
    storage = make_storage()
    run(storage.create_run(make_run(lease=lease("dead"))))
    assert not run(storage.acquire_lease("r1", lease("heir"), take_from="someone-else"))
    assert run(storage.acquire_lease("r1", lease("heir"), take_from="dead"))


def test_release_only_by_the_holder(make_storage: Factory) -> None:
    storage = make_storage()
    run(storage.create_run(make_run(lease=lease("a"))))
    run(storage.release_lease("r1", "b"))
    assert not run(storage.acquire_lease("r1", lease("b")))
    run(storage.release_lease("r1", "a"))
    loaded = run(storage.load_run("r1"))
    assert loaded is not None and loaded.lease is None
    assert run(storage.acquire_lease("r1", lease("b")))


def test_lease_on_unknown_run_is_refused(make_storage: Factory) -> None:
    storage = make_storage()
    assert not run(storage.acquire_lease("ghost", lease("a")))
    assert not run(storage.renew_lease("ghost", "a", time.time() + 5))


def test_unicode_and_large_payloads(make_storage: Factory) -> None:
    storage = make_storage()
    big = '{"text":"' + "é✓中" * 50_000 + '"}'
    run(storage.create_run(make_run("ü-ñ-☃", data_json=big)))
    loaded = run(storage.load_run("ü-ñ-☃"))
    assert loaded is not None and loaded.data_json == big


@pytest.mark.parametrize("status", [RunStatus.SUSPENDED, RunStatus.COMPLETED, RunStatus.FAILED])
def test_saving_a_run_that_stops_executing_releases_its_lease(
    make_storage: Factory, status: RunStatus
) -> None:
    storage = make_storage()
    record = make_run(lease=lease("holder"))
    run(storage.create_run(record))
    save(storage, record, [0], "holder")  # still running: keeps it
    loaded = run(storage.load_run("r1"))
    assert loaded is not None and loaded.lease is not None
    record.status = status
    save(storage, record, [0], "holder")
    loaded = run(storage.load_run("r1"))
    assert loaded is not None and loaded.lease is None
    assert run(storage.acquire_lease("r1", lease("next")))


def test_a_series_of_step_saves_by_the_holder_reads_back_the_latest(make_storage: Factory) -> None:
    storage = make_storage()
    record = make_run(lease=lease("holder"))
    run(storage.create_run(record))
    for i, status in enumerate((StepStatus.COMPLETED, StepStatus.COMPLETED)):
        record.steps[i].status = status
        record.steps[i].output_json = f'"out{i}"'
        record.data_json = f'{{"step":{i}}}'
        record.seq = 10 + i
        save(storage, record, [i], "holder")
        loaded = run(make_storage().load_run("r1"))
        assert loaded is not None
        assert loaded.data_json == f'{{"step":{i}}}' and loaded.seq == 10 + i
        assert loaded.steps[i].output_json == f'"out{i}"'
    record.status = RunStatus.COMPLETED
    record.data_json = '{"final":true}'
    save(storage, record, [], "holder")
    listed = run(make_storage().list_runs(name="wf"))[0]
    assert listed.status is RunStatus.COMPLETED and listed.data_json == '{"final":true}'


def test_claim_next_takes_the_oldest_waiting_run_once(make_storage: Factory) -> None:
    storage = make_storage()
    now = time.time()
    run(storage.create_run(make_run("done", created=now - 50, status=RunStatus.COMPLETED)))
    run(storage.create_run(make_run("p-new", created=now - 10, status=RunStatus.PENDING)))
    run(storage.create_run(make_run("p-old", created=now - 20, status=RunStatus.PENDING)))
    run(storage.create_run(make_run("held", created=now - 40, lease=lease("alive"))))
    run(storage.create_run(make_run("orphan", created=now - 30, lease=lease("dead", ttl=-5))))
    run(storage.create_run(make_run("other-wf", name="other", created=now - 60, status=RunStatus.PENDING)))
    claimed = []
    while (got := run(make_storage().claim_next(["wf"], lease("worker")))) is not None:
        assert got.lease is not None and got.lease.owner == "worker"
        assert [s.name for s in got.steps] == ["s1", "s2"]
        claimed.append(got.id)
    assert claimed == ["orphan", "p-old", "p-new"]
    assert run(storage.claim_next(["other"], lease("w2"))) is not None
    assert run(storage.claim_next([], lease("w2"))) is None


def test_claimed_runs_are_exclusive_across_views(make_storage: Factory) -> None:
    storage = make_storage()
    for i in range(5):
        run(storage.create_run(make_run(f"r{i}", created=1000.0 + i, status=RunStatus.PENDING)))
    views = [make_storage() for _ in range(3)]
    seen = []
    for k in range(5):
        got = run(views[k % 3].claim_next(["wf"], lease(f"w{k}")))
        assert got is not None
        seen.append(got.id)
    assert sorted(seen) == [f"r{i}" for i in range(5)]
    assert run(views[0].claim_next(["wf"], lease("late"))) is None


def test_list_by_id_prefix(make_storage: Factory) -> None:
    """The search of `flux dev --storage`: the start of the id, exactly, hostile characters too."""
    storage = make_storage()
    ids = ["ORD-1", "ORD-10", "ORD-2", "ord-3", "OR%D", "OR_X", "a\\b", "é-1", "é-2", "\U0010ffff1", "ORE"]
    for i, run_id in enumerate(ids):
        run(storage.create_run(make_run(run_id, name="a" if i % 2 else "b", created=1000.0 + i)))

    def found(prefix: str, name: str | None = None, status: list[RunStatus] | None = None) -> list[str]:
        return [r.id for r in run(storage.list_runs(id_prefix=prefix, name=name, status=status))]

    assert found("ORD-1") == ["ORD-10", "ORD-1"]
    assert found("ORD") == ["ORD-2", "ORD-10", "ORD-1"]  # not ord-3: case counts
    assert found("OR%") == ["OR%D"] and found("OR_") == ["OR_X"]  # wildcards are plain characters
    assert found("a\\") == ["a\\b"]
    assert found("é") == ["é-2", "é-1"]
    assert found("\U0010ffff") == ["\U0010ffff1"]
    assert found("ORD", name="a") == ["ORD-10"]
    assert found("ORD", status=[RunStatus.FAILED]) == []
    assert [r.id for r in run(storage.list_runs(id_prefix="ORD", limit=1, offset=1))] == ["ORD-10"]
    assert found("zzz") == [] and found("\x00") == [] and found("\ud800") == []
    assert len(found("")) == len(ids)
