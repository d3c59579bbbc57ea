"""Compact storage: what a run keeps so that `retry_step` can restore earlier data does not
multiply with its steps. A run with 1 MB of `ctx.data` and 50 steps, each changing a little
of it, stores at most 3x its largest data plus its outputs (measured in bytes of the stored
columns), on SQLite and PostgreSQL; and `retry_step` still restores exactly."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from flux import FluxEngine, SQLiteStorage, Workflow, WorkflowContext, create_workflow
from flux.records import StepRecord
from flux.status import StepStatus
from flux.storage._rows import step_from_values, step_values

from ..services import postgres_url_or_skip

STEPS = 50
BLOB = "ü\x00\u2028x" * 85_000  # ~1 MB of JSON text, non-ASCII and escapes included
SEEN: dict[int, Any] = {}


def big_flow() -> Workflow[Any]:
    def fill(ctx: WorkflowContext[Any]) -> str:
        ctx.data["blob"] = BLOB
        ctx.data["n"] = 0
        return "filled"

    flow = create_workflow("compact").step("fill", fill)
    for i in range(1, STEPS):

        def step(ctx: WorkflowContext[Any], i: int = i) -> int:
            SEEN[i] = (ctx.data["n"], len(ctx.data["blob"]), ctx.data.get(f"k{i}"))
            ctx.data["n"] = i
            ctx.data[f"k{i}"] = f"v{i}" * (i % 3)
            if i % 7 == 0:
                ctx.data.pop(f"k{i - 1}", None)
            return i

        flow = flow.step(f"s{i}", step)
    return flow


def stored_bytes_sqlite(path: Path, run_id: str) -> tuple[int, int]:
    conn = sqlite3.connect(path)
    try:
        run_bytes = conn.execute(
            "SELECT length(CAST(data AS BLOB)) + length(CAST(input AS BLOB)) + length(shape) "
            "FROM flux_runs WHERE id=?",
            (run_id,),
        ).fetchone()[0]
        step_bytes, outputs = conn.execute(
            "SELECT sum(coalesce(length(CAST(data_before AS BLOB)), 0) + "
            "coalesce(length(CAST(run_data AS BLOB)), 0) + coalesce(length(output), 0)), "
            "sum(coalesce(length(output), 0)) FROM flux_steps WHERE run_id=?",
            (run_id,),
        ).fetchone()
        return run_bytes + step_bytes, outputs
    finally:
        conn.close()


def stored_bytes_postgres(url: str, run_id: str) -> tuple[int, int]:
    import psycopg

    with psycopg.connect(url) as conn:
        run_bytes = conn.execute(
            "SELECT octet_length(data) + octet_length(input) + octet_length(shape) "
            "FROM flux_runs WHERE id=%s",
            (run_id,),
        ).fetchone()
        steps = conn.execute(
            "SELECT sum(coalesce(octet_length(data_before), 0) + coalesce(octet_length(output), 0)), "
            "sum(coalesce(octet_length(output), 0)) FROM flux_steps WHERE run_id=%s",
            (run_id,),
        ).fetchone()
    assert run_bytes is not None and steps is not None
    return int(run_bytes[0]) + int(steps[0]), int(steps[1])


def check(engine: FluxEngine, measure: Any) -> None:
    flow = big_flow()
    result = engine.execute_sync(flow, {}, id="big")
    assert result.status == "completed", result.error
    largest = len(json.dumps(result.data, ensure_ascii=False).encode())
    total, outputs = measure("big")
    assert total <= 3 * largest + outputs, (total, largest, outputs)

    # retry_step restores exactly what the step saw when it first ran
    first = dict(SEEN)
    SEEN.clear()
    again = engine.retry_step_sync(flow, "big", "s30")
    assert again.status == "completed"
    assert SEEN == {i: first[i] for i in range(30, STEPS)}
    assert again.data == result.data
    total, outputs = measure("big")
    assert total <= 3 * largest + outputs, (total, largest, outputs)


def test_sqlite_stores_a_big_run_compactly(tmp_path: Path) -> None:
    path = tmp_path / "big.db"
    with FluxEngine(storage=SQLiteStorage(path)) as engine:
        check(engine, lambda run_id: stored_bytes_sqlite(path, run_id))


def test_postgres_stores_a_big_run_compactly(request: pytest.FixtureRequest) -> None:
    url = postgres_url_or_skip(request)
    from flux.storage.postgres import PostgresStorage

    with FluxEngine(storage=PostgresStorage(url)) as engine:
        check(engine, lambda run_id: stored_bytes_postgres(url, run_id))


def test_old_rows_with_full_data_still_load() -> None:
    """A row of Flux 0.1.0 keeps the whole data: it is read as it is."""
    full = '{"a":' + '"x"' * 0 + '"' + "y" * 5000 + '"}'
    row = step_values("r", 1, StepRecord("s", "step", StepStatus.COMPLETED, data_before=full))
    assert row[11] == full
    assert step_from_values(row).data_before == full


def test_a_compact_row_round_trips_through_its_base() -> None:
    base = '{"blob":"' + "ü" * 5000 + '","n":1}'
    prev = StepRecord("a", "step", StepStatus.COMPLETED, data_before=base)
    mine = base.replace('"n":1', '"n":2,"k":"\\u0000"')
    row = step_values("r", 1, StepRecord("b", "step", StepStatus.COMPLETED, data_before=mine), prev)
    assert len(row[11]) < 100
    from flux.storage._compact import decode

    assert decode(row[11], base) == mine


def run(coro: Any) -> Any:
    return asyncio.run(coro)
