"""Conformance: retention (`prune`). A storage removes the runs in the given states whose
last change (`updated_at`) is older than a cut-off, their steps with them, in bounded
batches, and says how many it removed; nothing else changes. SQL storages find them by an
index, not a scan."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from flux import WorkflowStorage
from flux.records import StepRecord
from flux.status import RunStatus, StepStatus

from .conftest import Factory, run
from .test_conformance import make_run

T0 = 1_700_000_000.0
FINISHED = (
    RunStatus.COMPLETED, RunStatus.FAILED, RunStatus.ROLLED_BACK, RunStatus.ROLLBACK_FAILED,
    RunStatus.CANCELLED,
)  # fmt: skip


def stored(storage: WorkflowStorage, run_id: str, status: RunStatus, updated: float) -> None:
    record = make_run(run_id, created=updated - 10, status=status, updated_at=updated)
    record.steps[0] = StepRecord("s1", "step", StepStatus.COMPLETED, attempts=1, started_at=updated - 5,
                                 completed_at=updated - 4, output_json='"x"', data_before="{}")  # fmt: skip
    assert run(storage.create_run(record))


def ids(storage: WorkflowStorage) -> set[str]:
    return {r.id for r in run(storage.list_runs(limit=10_000))}


def test_prune_removes_old_runs_in_the_named_states_and_their_steps(make_storage: Factory) -> None:
    storage = make_storage()
    for status in RunStatus:
        stored(storage, f"old-{status.value}", status, T0)
        stored(storage, f"new-{status.value}", status, T0 + 100)
    assert run(storage.prune(T0 + 50, FINISHED)) == len(FINISHED)
    left = ids(storage)
    for status in RunStatus:
        assert f"new-{status.value}" in left
        assert (f"old-{status.value}" in left) is (status not in FINISHED)
    for status in FINISHED:
        assert run(make_storage().load_run(f"old-{status.value}")) is None
    kept = run(storage.load_run("old-running"))
    assert kept is not None and kept.steps[0].output_json == '"x"'


def test_prune_takes_only_the_states_it_is_given(make_storage: Factory) -> None:
    storage = make_storage()
    stored(storage, "p", RunStatus.PENDING, T0)
    stored(storage, "s", RunStatus.SUSPENDED, T0)
    stored(storage, "c", RunStatus.COMPLETED, T0)
    assert run(storage.prune(T0 + 1, [RunStatus.SUSPENDED])) == 1
    assert ids(storage) == {"p", "c"}
    assert run(storage.prune(T0 + 1, [])) == 0
    assert ids(storage) == {"p", "c"}


def test_the_cut_off_is_exclusive(make_storage: Factory) -> None:
    storage = make_storage()
    stored(storage, "edge", RunStatus.COMPLETED, T0)
    assert run(storage.prune(T0, FINISHED)) == 0
    assert run(storage.prune(T0 + 0.001, FINISHED)) == 1


def test_prune_works_in_batches_and_counts_them_all(make_storage: Factory) -> None:
    storage = make_storage()
    for i in range(23):
        stored(storage, f"r{i:02}", RunStatus.COMPLETED, T0 + i)
    stored(storage, "live", RunStatus.RUNNING, T0)
    assert run(storage.prune(T0 + 20, FINISHED, batch=4)) == 20
    assert ids(storage) == {"r20", "r21", "r22", "live"}
    assert run(storage.prune(T0 + 1000, FINISHED, batch=4)) == 3


def test_a_pruned_id_can_be_used_again(make_storage: Factory) -> None:
    storage = make_storage()
    stored(storage, "again", RunStatus.COMPLETED, T0)
    assert run(storage.prune(T0 + 1, FINISHED)) == 1
    stored(storage, "again", RunStatus.FAILED, T0 + 5)
    got = run(storage.load_run("again"))
    assert got is not None and got.status is RunStatus.FAILED


def test_sqlite_prunes_by_its_index(tmp_path: Path) -> None:
    from flux import SQLiteStorage
    from flux.storage.sqlite import _PRUNE_PICK

    storage = SQLiteStorage(tmp_path / "plan.db")
    run(storage.close())
    conn = sqlite3.connect(tmp_path / "plan.db")
    try:
        sql = _PRUNE_PICK.format(marks="?, ?")
        plan = conn.execute("EXPLAIN QUERY PLAN " + sql, ("completed", "failed", T0, 500)).fetchall()
        text = " ".join(str(row[-1]) for row in plan)
        assert "flux_runs_age" in text, text
        assert "SCAN flux_runs" not in text.replace("USING INDEX", "").replace("USING COVERING INDEX", "")
    finally:
        conn.close()


def test_postgres_prunes_by_its_index(request: pytest.FixtureRequest) -> None:
    from ..services import postgres_url_or_skip

    url = postgres_url_or_skip(request)
    import psycopg

    from flux.storage.postgres import _PRUNE, PostgresStorage

    storage = PostgresStorage(url)
    for i in range(2000):
        stored(storage, f"r{i}", RunStatus.RUNNING if i % 2 else RunStatus.COMPLETED, T0 + i)
    try:
        with psycopg.connect(url) as conn:
            conn.execute("ANALYZE flux_runs")
            text = " ".join(
                r[0] for r in conn.execute("EXPLAIN " + _PRUNE, (["completed"], T0 + 10, 500)).fetchall()
            )
            conn.rollback()
        assert "flux_runs_age" in text, text
        assert "Seq Scan on flux_runs" not in text, text
    finally:
        run(storage.close())
