"""The conformance suite for schedules (SPEC §10), run against every backend."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from flux import SQLiteStorage
from flux.schedules import ScheduleRecord

from .conftest import Factory, run
from .test_conformance import make_run


def make_schedule(schedule_id: str = "nightly", **kw: object) -> ScheduleRecord:
    fields: dict[str, object] = {
        "id": schedule_id,
        "workflow": "report",
        "cron": "0 2 * * *",
        "every": None,
        "timezone": "Europe/Paris",
        "catch_up": "latest",
        "input_json": '{"kind":"daily"}',
        "next_due": 1_796_000_000,
        "created_at": 1_795_999_000.5,
    }
    fields.update(kw)
    return ScheduleRecord(**fields)  # type: ignore[arg-type]


def test_put_then_list_round_trips_every_field(make_storage: Factory) -> None:
    storage = make_storage()
    every = make_schedule("every-minute", cron=None, every=60, timezone="UTC", catch_up="all", last_slot=59)
    assert run(storage.put_schedule(make_schedule())) is None
    assert run(storage.put_schedule(every)) is None
    listed = run(make_storage().list_schedules())
    assert listed == [every, make_schedule()]  # by id


def test_put_an_existing_id_changes_nothing_and_returns_the_stored_one(make_storage: Factory) -> None:
    storage = make_storage()
    assert run(storage.put_schedule(make_schedule())) is None
    other = make_schedule(cron="0 3 * * *", input_json="{}")
    assert run(make_storage().put_schedule(other)) == make_schedule()
    assert run(storage.list_schedules()) == [make_schedule()]


def test_delete(make_storage: Factory) -> None:
    storage = make_storage()
    run(storage.put_schedule(make_schedule()))
    assert run(make_storage().delete_schedule("nightly")) is True
    assert run(storage.delete_schedule("nightly")) is False
    assert run(storage.list_schedules()) == []


def test_due_schedules_by_time_and_workflow(make_storage: Factory) -> None:
    storage = make_storage()
    run(storage.put_schedule(make_schedule("a", next_due=100)))
    run(storage.put_schedule(make_schedule("b", next_due=50)))
    run(storage.put_schedule(make_schedule("c", next_due=200)))
    run(storage.put_schedule(make_schedule("d", next_due=10, workflow="other")))
    due = run(make_storage().due_schedules(["report"], 100))
    assert [s.id for s in due] == ["b", "a"]  # oldest due first; `next_due == now` is due
    assert [s.id for s in run(storage.due_schedules(["report", "other"], 99.5))] == ["d", "b"]
    assert run(storage.due_schedules([], 1000)) == []
    assert run(storage.next_schedule_due(["report"])) == 50
    assert run(storage.next_schedule_due(["other"])) == 10
    assert run(storage.next_schedule_due(["nobody"])) is None
    assert run(storage.next_schedule_due([])) is None


def test_advance_is_a_compare_and_set(make_storage: Factory) -> None:
    storage = make_storage()
    run(storage.put_schedule(make_schedule(next_due=100)))
    assert run(make_storage().advance_schedule("nightly", 100, 200, 100)) is True
    assert run(storage.advance_schedule("nightly", 100, 300, 100)) is False  # another worker did it
    assert run(storage.advance_schedule("nightly", 200, 300, None)) is True  # keeps last_slot
    assert run(storage.advance_schedule("gone", 0, 1, 1)) is False
    (stored,) = run(storage.list_schedules())
    assert (stored.next_due, stored.last_slot) == (300, 100)


def test_huge_slots_and_hostile_ids_round_trip(make_storage: Factory) -> None:
    storage = make_storage()
    weird = "n\u202eightly \x1b[2J 夜"
    record = make_schedule(weird, next_due=253_402_300_000, last_slot=253_402_299_940, input_json='"\\u0000"')
    assert run(storage.put_schedule(record)) is None
    assert run(make_storage().list_schedules()) == [record]


def test_a_run_keeps_the_schedule_and_slot_that_started_it(make_storage: Factory) -> None:
    storage = make_storage()
    started = make_run("nightly@2026-12-02T01:00:00Z", schedule=("nightly", "2026-12-02T01:00:00Z"))
    assert run(storage.create_run(started))
    run(storage.create_run(make_run("plain")))
    loaded = run(make_storage().load_run("nightly@2026-12-02T01:00:00Z"))
    assert loaded is not None and loaded.schedule == ("nightly", "2026-12-02T01:00:00Z")
    plain = run(storage.load_run("plain"))
    assert plain is not None and plain.schedule is None
    listed = run(storage.list_runs())
    assert {r.id: r.schedule for r in listed} == {
        "nightly@2026-12-02T01:00:00Z": ("nightly", "2026-12-02T01:00:00Z"),
        "plain": None,
    }


def test_sqlite_finds_due_schedules_by_their_index(tmp_path: Path) -> None:
    run(SQLiteStorage(tmp_path / "flux.db").close())
    conn = sqlite3.connect(tmp_path / "flux.db")
    try:
        plan = conn.execute(
            "EXPLAIN QUERY PLAN SELECT id FROM flux_schedules WHERE next_due <= ? AND workflow IN (?) "
            "ORDER BY next_due, id",
            (1, "a"),
        ).fetchall()
    finally:
        conn.close()
    assert any("USING INDEX flux_schedules_due" in row[3] for row in plan), plan
