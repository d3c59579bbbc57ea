"""A database written by Flux 0.1.0 opens, is migrated in place, and its runs carry on.

The fixtures (tests/fixtures/, made by make_0_1_0.py with the 0.1.0 code) hold a completed,
a failed, a suspended, a pending and an orphaned run; the workflows below have the same
names and steps, with handlers that now succeed.
"""

from __future__ import annotations

import asyncio
import shutil
import sqlite3
from collections.abc import Callable
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest

from flux import FluxEngine, FluxSilentLogger, RunStatus, WorkflowContext, WorkflowStorage, create_workflow
from flux.status import StepStatus
from flux.storage.migrations import LATEST

from ..services import postgres_url_or_skip

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"


def flows(calls: list[str]) -> dict[str, Any]:
    def ok(ctx: WorkflowContext[Any]) -> str:
        calls.append(f"{ctx.id}:{ctx.step_name}")
        return f"{ctx.step_name}-again"

    return {
        "order": create_workflow("fixture-order").step("fetch", ok).commit("ship", ok),
        "flaky": create_workflow("fixture-flaky").step("prepare", ok).step("call-api", ok).step("finish", ok),
        "approval": create_workflow("fixture-approval").step("ask", ok).step("after", ok),
        "queued": create_workflow("fixture-queued").step("only", ok),
        "slow": create_workflow("fixture-slow").step("first", ok).step("hang", ok).step("last", ok),
    }


def check_the_old_runs_carry_on(open_storage: Callable[[], WorkflowStorage]) -> None:
    calls: list[str] = []
    f = flows(calls)

    async def scenario() -> None:
        storage = open_storage()
        stored = {r.id: r for r in await storage.list_runs(limit=10)}
        assert {k: v.status for k, v in stored.items()} == {
            "run-completed": RunStatus.COMPLETED,
            "run-failed": RunStatus.FAILED,
            "run-suspended": RunStatus.SUSPENDED,
            "run-pending": RunStatus.PENDING,
            "run-orphan": RunStatus.RUNNING,
        }
        for run in stored.values():  # the new fields read as "nothing recorded"
            assert run.cancel_reason is None
            assert all(s.crashes == 0 for s in run.steps)
        failed = stored["run-failed"]
        assert failed.error == "api down: 503 from payments" and failed.error_step == "call-api"
        assert failed.steps[1].status is StepStatus.FAILED
        assert stored["run-suspended"].waiting_for == "approval"
        orphan = stored["run-orphan"]
        assert orphan.lease is not None and orphan.lease.identity == ""

        engine = FluxEngine(storage=storage, logger=FluxSilentLogger())
        done = await engine.get("run-completed")
        assert done.status is RunStatus.COMPLETED
        assert done.outputs == {"fetch": "fetch-ok", "ship": "ship-ok"}
        assert done.data == {"fetch": "done", "ship": "done"}

        resumed = await engine.resume(f["flaky"], "run-failed")
        assert resumed.status is RunStatus.COMPLETED
        assert resumed.outputs["prepare"] == "prepare-ok"  # from 0.1.0, not run again

        signalled = await engine.signal(f["approval"], "run-suspended", "approval", {"yes": True})
        assert signalled.status is RunStatus.COMPLETED and signalled.outputs["ask"] == {"yes": True}

        [recovered] = await engine.recover([f["slow"]])
        assert recovered.id == "run-orphan" and recovered.status is RunStatus.COMPLETED
        assert recovered.outputs["first"] == "first-ok"

        assert await engine.work([f["queued"]], burst=True) == 1
        assert (await engine.get("run-pending")).status is RunStatus.COMPLETED
        await engine.close()

    asyncio.run(scenario())
    assert sorted(calls) == sorted(
        [
            "run-failed:call-api",
            "run-failed:finish",
            "run-suspended:after",
            "run-orphan:hang",
            "run-orphan:last",
            "run-pending:only",
        ]
    )


def old_sqlite(tmp_path: Path) -> Path:
    path = tmp_path / "old.db"
    shutil.copy(FIXTURES / "flux-0.1.0.db", path)
    return path


def sqlite_version(path: Path) -> int:
    with closing(sqlite3.connect(path)) as conn, conn:
        (value,) = conn.execute("SELECT value FROM flux_meta WHERE key='schema_version'").fetchone()
    conn.close()
    return int(value)


def test_a_sqlite_database_of_0_1_0_is_migrated_and_its_runs_carry_on(tmp_path: Path) -> None:
    from flux import SQLiteStorage

    path = old_sqlite(tmp_path)
    assert sqlite_version(path) == 1
    check_the_old_runs_carry_on(lambda: SQLiteStorage(path))
    assert sqlite_version(path) == LATEST


def load_postgres_0_1_0(url: str) -> None:
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute((FIXTURES / "postgres-0.1.0.sql").read_text(encoding="utf-8").encode())


def postgres_version(url: str) -> int:
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute("SELECT value FROM flux_meta WHERE key='schema_version'").fetchone()
    assert row is not None
    return int(row[0])


@pytest.mark.postgres
def test_a_postgres_schema_of_0_1_0_is_migrated_and_its_runs_carry_on(request: pytest.FixtureRequest) -> None:
    url = postgres_url_or_skip(request)
    load_postgres_0_1_0(url)
    assert postgres_version(url) == 1
    from flux.storage.postgres import PostgresStorage

    check_the_old_runs_carry_on(lambda: PostgresStorage(url))
    assert postgres_version(url) == LATEST
