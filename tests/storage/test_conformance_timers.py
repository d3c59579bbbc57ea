"""Conformance: due runs (SPEC §10). A suspended run with a wake time or a deadline is
claimed by a worker when that moment comes on the engine's clock (`now`), not before, by one
claimer only, and no longer once it has been signalled; SQL storages find it by an index."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from flux import WorkflowStorage
from flux.records import RunRecord
from flux.status import RunStatus, StepStatus

from .conftest import Factory, run
from .test_conformance import lease, make_run, save

T0 = 2_000_000_000.0  # an engine clock far from the real one: wake times are compared with it


def sleeping(
    storage: WorkflowStorage, run_id: str, wake: float | None, *, name: str = "wf",
    deadline: float | None = None, timer: str = "sleep", signal: str | None = None,
) -> RunRecord:  # fmt: skip
    """A run stored as the engine stores a sleep (or a wait with a timeout): suspended."""
    record = make_run(run_id, name, created=T0 - 100, lease=lease("maker"), deadline=deadline)
    assert run(storage.create_run(record))
    record.status = RunStatus.SUSPENDED
    record.steps[0].status = StepStatus.SUSPENDED
    record.steps[0].waiting_for = signal
    record.waiting_for = signal
    record.wake_at, record.timer = wake, timer if wake is not None else None
    save(storage, record, [0], "maker")
    return record


def test_a_sleeping_run_round_trips_its_wake_time_timer_and_deadline(make_storage: Factory) -> None:
    storage = make_storage()
    sleeping(storage, "r1", T0 + 60, deadline=T0 + 600, timer='default:{"a": "\\u0000"}')
    loaded = run(make_storage().load_run("r1"))
    assert loaded is not None
    assert (loaded.status, loaded.wake_at, loaded.deadline) == (RunStatus.SUSPENDED, T0 + 60, T0 + 600)
    assert loaded.timer == 'default:{"a": "\\u0000"}'
    assert loaded.lease is None  # a suspended run is held by nobody
    assert run(storage.next_due(["wf"])) == T0 + 60


def test_a_due_run_is_not_claimed_before_its_wake_time(make_storage: Factory) -> None:
    storage = make_storage()
    sleeping(storage, "r1", T0 + 60)
    assert run(storage.claim_next(["wf"], lease("w"), now=T0 + 59.999)) is None
    claimed = run(make_storage().claim_next(["wf"], lease("w"), now=T0 + 60))
    assert claimed is not None and claimed.id == "r1"
    assert claimed.status is RunStatus.SUSPENDED and claimed.wake_at == T0 + 60
    assert claimed.lease is not None and claimed.lease.owner == "w"


def test_one_claimer_wins_a_due_run(make_storage: Factory) -> None:
    storage = make_storage()
    sleeping(storage, "r1", T0)
    views = [make_storage() for _ in range(3)]
    got = [run(v.claim_next(["wf"], lease(f"w{i}"), now=T0 + 1)) for i, v in enumerate(views)]
    assert [g.id for g in got if g is not None] == ["r1"]


def test_due_runs_come_earliest_first_and_only_of_the_named_workflows(make_storage: Factory) -> None:
    storage = make_storage()
    sleeping(storage, "late", T0 + 30)
    sleeping(storage, "early", T0 + 10)
    sleeping(storage, "other", T0 + 1, name="other-wf")
    assert run(storage.next_due(["wf"])) == T0 + 10
    assert run(storage.next_due(["other-wf", "wf"])) == T0 + 1
    assert run(storage.next_due(["nobody"])) is None
    order = [run(storage.claim_next(["wf"], lease(f"w{i}"), now=T0 + 99)) for i in range(3)]
    assert [o.id if o else None for o in order] == ["early", "late", None]


def test_a_signalled_run_is_no_longer_due(make_storage: Factory) -> None:
    storage = make_storage()
    record = sleeping(storage, "r1", T0 + 60, timer="timeout", signal="go")
    assert run(storage.acquire_lease("r1", lease("signaller")))
    # while the signaller holds it, no worker takes it even when due
    assert run(make_storage().claim_next(["wf"], lease("w"), now=T0 + 61)) is None
    record.status = RunStatus.RUNNING
    record.steps[0].status = StepStatus.COMPLETED
    record.waiting_for = record.steps[0].waiting_for = None
    record.wake_at = record.timer = None
    save(storage, record, [0], "signaller")
    record.status = RunStatus.COMPLETED
    save(storage, record, [], "signaller")
    assert run(storage.next_due(["wf"])) is None
    assert run(make_storage().claim_next(["wf"], lease("w"), now=T0 + 9999)) is None


def test_a_run_waiting_for_a_signal_alone_is_due_at_its_deadline(make_storage: Factory) -> None:
    storage = make_storage()
    sleeping(storage, "plain", None, signal="go")  # no timeout, no deadline: never due
    sleeping(storage, "bounded", None, signal="go", deadline=T0 + 5)
    assert run(storage.next_due(["wf"])) == T0 + 5
    assert run(storage.claim_next(["wf"], lease("w"), now=T0 + 4)) is None
    got = run(storage.claim_next(["wf"], lease("w"), now=T0 + 5))
    assert got is not None and got.id == "bounded"
    assert run(storage.claim_next(["wf"], lease("w2"), now=T0 + 1e6)) is None


def test_a_claimed_due_run_given_back_is_due_again(make_storage: Factory) -> None:
    storage = make_storage()
    sleeping(storage, "r1", T0)
    assert run(storage.claim_next(["wf"], lease("w"), now=T0)) is not None
    run(storage.release_lease("r1", "w"))
    again = run(make_storage().claim_next(["wf"], lease("w2"), now=T0))
    assert again is not None and again.id == "r1"


def test_sqlite_finds_due_runs_by_its_index(tmp_path: Path) -> None:
    from flux import SQLiteStorage
    from flux.storage.sqlite import _DUE, _NEXT_DUE

    storage = SQLiteStorage(tmp_path / "plan.db")
    run(storage.close())
    conn = sqlite3.connect(tmp_path / "plan.db")
    try:
        for sql, params in ((_DUE, (T0, "wf", T0)), (_NEXT_DUE, ("wf",))):
            plan = conn.execute("EXPLAIN QUERY PLAN " + sql.format(marks="?"), params).fetchall()
            text = " ".join(str(row[-1]) for row in plan)
            assert "flux_runs_due" in text, text
            assert "SCAN flux_runs" not in text.replace("USING INDEX", "")
    finally:
        conn.close()


def test_postgres_finds_due_runs_by_its_index(request: pytest.FixtureRequest) -> None:
    """Even on a table never analysed, with every run of the workflow due at once."""
    from ..services import postgres_url_or_skip

    url = postgres_url_or_skip(request)
    import psycopg

    from flux.storage.postgres import _BY_DUE_INDEX, _CLAIM_DUE, _NEXT_DUE, PostgresStorage

    storage = PostgresStorage(url)
    for i in range(2000):
        sleeping(storage, f"r{i}", T0 + i)
    give = ("o", "h", 1, T0 + 30, None)
    try:
        with psycopg.connect(url) as conn:
            plans = []
            for sql, params in ((_NEXT_DUE, (["wf"],)), (_CLAIM_DUE, (T0 + 1e6, ["wf"], *give))):
                conn.execute(_BY_DUE_INDEX)  # as claim_next and next_due do, in their transaction
                plans.append(" ".join(r[0] for r in conn.execute("EXPLAIN " + sql, params).fetchall()))
                conn.rollback()
        for text in plans:
            assert "flux_runs_due" in text and "Sort" not in text, text
    finally:
        run(storage.close())
