"""What only the PostgreSQL backend has: connection loss, schema checks, durability modes."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from flux import FluxEngine, FluxSilentLogger, RunStatus, StorageError, WorkflowContext, create_workflow

from ..services import postgres_url_or_skip


@pytest.fixture
def pg(request: pytest.FixtureRequest) -> str:
    return postgres_url_or_skip(request)


def test_a_connection_dropped_while_idle_mid_run_is_replaced_and_the_run_goes_on(pg: str) -> None:
    """The server ends the engine's idle connection while a step runs (a restart, an admin, a
    proxy's idle timeout): the next save reconnects instead of failing the run. (Before schema
    2 this was a StorageError that left the run for `recover`; a connection lost while a write
    is in flight still is: see test_postgres_reconnect.py.)"""
    from flux.storage.postgres import PostgresStorage

    from .test_postgres_reconnect import drop_idle_connections

    calls: list[str] = []
    storage = PostgresStorage(pg)

    def cut_the_line(ctx: WorkflowContext[Any]) -> str:
        calls.append(ctx.step_name)
        if ctx.step_name == "second":
            drop_idle_connections(storage)
        return ctx.step_name

    flow = create_workflow("cut").step("first", cut_the_line).step("second", cut_the_line)
    flow = flow.step("third", cut_the_line)

    async def scenario() -> None:
        engine = FluxEngine(storage=storage, logger=FluxSilentLogger())
        result = await engine.execute(flow, {}, id="r-1")
        assert result.status is RunStatus.COMPLETED
        await engine.close()

    asyncio.run(scenario())
    assert calls == ["first", "second", "third"]


def test_an_unreachable_server_is_a_storage_error() -> None:
    from flux.storage.postgres import PostgresStorage

    with pytest.raises(StorageError, match=r"PostgreSQL postgresql://nobody@127\.0\.0\.1:1/"):
        PostgresStorage("postgresql://nobody:secret@127.0.0.1:1/none", connect_timeout=2)


def test_the_password_never_appears_in_errors() -> None:
    from flux.storage.postgres import PostgresStorage

    with pytest.raises(StorageError) as err:
        PostgresStorage("postgresql://nobody:hunter2@127.0.0.1:1/none", connect_timeout=2)
    assert "hunter2" not in str(err.value)


def test_a_schema_from_a_newer_flux_is_refused(pg: str) -> None:
    import psycopg

    from flux.storage.postgres import SCHEMA_VERSION, PostgresStorage

    asyncio.run(PostgresStorage(pg).close())
    with psycopg.connect(pg, autocommit=True) as conn:
        conn.execute("UPDATE flux_meta SET value=%s WHERE key='schema_version'", (str(SCHEMA_VERSION + 1),))
    with pytest.raises(StorageError, match="newer"):
        PostgresStorage(pg)


def test_foreign_flux_tables_are_refused(pg: str) -> None:
    import psycopg

    from flux.storage.postgres import PostgresStorage

    with psycopg.connect(pg, autocommit=True) as conn:
        conn.execute("CREATE TABLE flux_runs (x int)")
    with pytest.raises(StorageError, match="not a Flux schema"):
        PostgresStorage(pg)
    with psycopg.connect(pg, autocommit=True) as conn:
        assert conn.execute(
            "SELECT count(*) FROM information_schema.columns "
            "WHERE table_name='flux_runs' AND table_schema=current_schema()"
        ).fetchone() == (1,)


@pytest.mark.parametrize(("durability", "setting"), [("full", "on"), ("normal", "off")])
def test_durability_sets_synchronous_commit(pg: str, durability: str, setting: str) -> None:
    from flux import open_storage
    from flux.storage.postgres import PostgresStorage

    storage = open_storage(f"{pg}&durability={durability}")
    assert isinstance(storage, PostgresStorage) and storage.durability == durability
    conn = storage._connect()
    assert conn.execute("SHOW synchronous_commit").fetchone() == (setting,)
    conn.close()
    asyncio.run(storage.close())
