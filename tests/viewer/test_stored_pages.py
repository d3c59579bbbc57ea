"""`flux dev --storage`: the runs list, a run and the stuck view read from a real storage
(SQLite file, PostgreSQL schema), joined with the trace; hostile values escaped."""

from __future__ import annotations

import asyncio
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from starlette.exceptions import StarletteDeprecationWarning

from flux import Flux, FluxEngine, FluxSilentLogger, JsonFileTraceSink, create_workflow
from flux.records import Lease, RunRecord
from flux.status import RunStatus
from flux.storage import open_storage
from tests.services import postgres_url_or_skip
from viewer.server import create_app

with warnings.catch_warnings():
    warnings.filterwarnings("ignore", category=StarletteDeprecationWarning, message=".*httpx2.*")
    from starlette.testclient import TestClient

EVIL = "<script>alert(1)</script>"


def _boom(ctx: Any) -> None:
    raise ValueError(f"bad {EVIL}")


ok_flow = create_workflow("ok-flow").step("one", lambda ctx: {"html": EVIL}).step("two", lambda ctx: 2)
bad_flow = create_workflow(f"bad-{EVIL}").step("fails", _boom, retries=1)
wait_flow = create_workflow("wait-flow").step("approval", lambda ctx: Flux.wait("approval"))


async def _fill(url: str, trace: Path) -> None:
    engine = FluxEngine(storage=url, trace=JsonFileTraceSink(trace), logger=FluxSilentLogger())
    try:
        for i in range(3):
            await engine.execute(ok_flow, {"n": i, "evil": EVIL}, id=f"OK-{i}")
        await engine.execute(bad_flow, {"evil": EVIL}, id=f"BAD-{EVIL}")
        await engine.execute(wait_flow, {}, id="WAIT-1")
    finally:
        await engine.close()


@pytest.fixture(params=["sqlite", "postgres"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'runs.db'}"
    return postgres_url_or_skip(request)


class Dashboard:
    def __init__(self, client: TestClient, storage: Any, trace: Path) -> None:
        self.client, self.storage, self.trace = client, storage, trace

    def text(self, path: str, status: int = 200) -> str:
        response = self.client.get(path)
        assert response.status_code == status, response.text
        return str(response.text)


@pytest.fixture
def dash(url: str, tmp_path: Path) -> Iterator[Dashboard]:
    trace = tmp_path / "trace.ndjson"
    asyncio.run(_fill(url, trace))
    storage = open_storage(url, create=False)
    flows = {f.name: f for f in (ok_flow, bad_flow, wait_flow)}
    app = create_app([trace], storage=storage, workflows=flows, stuck_after=3600.0)
    try:
        with TestClient(app, base_url="http://127.0.0.1") as client:
            yield Dashboard(client, storage, trace)
    finally:
        asyncio.run(storage.close())


def test_runs_page_lists_the_stored_runs_newest_first_escaped(dash: Dashboard) -> None:
    html = dash.text("/")
    assert EVIL not in html and "&lt;script&gt;" in html
    order = [html.index(f'data-run-id="{i}"') for i in ("WAIT-1", "OK-2", "OK-1", "OK-0")]
    assert order == sorted(order)
    assert 'href="/stuck"' in html
    assert 'data-status="suspended"' in html and 'data-status="failed"' in html


def test_filter_search_and_pages(dash: Dashboard) -> None:
    html = dash.text("/fragments/runs?status=completed")
    assert "OK-0" in html and "WAIT-1" not in html and "BAD-" not in html
    html = dash.text("/fragments/runs?workflow=wait-flow")
    assert "WAIT-1" in html and "OK-0" not in html
    html = dash.text("/fragments/runs?q=OK-")
    assert "OK-0" in html and "OK-2" in html and "WAIT-1" not in html
    assert "No run matches" in dash.text("/fragments/runs?q=ok-")  # the start of the id, exactly
    assert "No run matches" in dash.text("/fragments/runs?status=nonsense")
    first = dash.text("/fragments/runs?per_page=25")
    assert 'rel="next"' not in first
    # hostile filter values come back escaped
    assert EVIL not in dash.text(f"/fragments/runs?q={EVIL}&workflow={EVIL}")


def test_more_runs_than_a_page_say_older(dash: Dashboard) -> None:
    now = time.time()

    async def more() -> None:
        for i in range(30):
            record = RunRecord(
                f"P-{i:02}", "paged", RunStatus.PENDING, "{}", created_at=now + i, updated_at=now
            )
            await dash.storage.create_run(record)

    asyncio.run(more())
    first = dash.text("/fragments/runs?per_page=25&workflow=paged")
    assert 'rel="next"' in first and "P-29" in first and "P-04" not in first
    second = dash.text("/fragments/runs?per_page=25&workflow=paged&page=2")
    assert 'rel="prev"' in second and 'rel="next"' not in second
    assert "P-04" in second and "P-00" in second and "P-05" not in second
    assert "No run on this page" in dash.text("/fragments/runs?per_page=25&workflow=paged&page=99")
    assert "P-1" in dash.text("/fragments/runs?q=P-1")


def test_run_page_from_storage_joined_with_the_trace(dash: Dashboard) -> None:
    html = dash.text("/runs/OK-1")
    assert 'id="stored-status" data-status="completed"' in html
    assert 'id="timeline"' in html  # the trace holds it: its timeline is on the page
    assert EVIL not in html and "&lt;script&gt;" in html
    bad = dash.text("/runs/" + "BAD-%3Cscript%3Ealert(1)%3C%2Fscript%3E")
    assert EVIL not in bad and "ValueError" in bad and 'id="stored-error"' in bad
    waiting = dash.text("/runs/WAIT-1")
    assert "signal <code>approval</code>" in waiting
    live = dash.text("/runs/WAIT-1/live")
    assert 'id="stored-run" hx-swap-oob="innerHTML"' in live and 'id="timeline" hx-swap-oob' in live
    assert "not in the trace" in dash.text("/runs/NOPE", status=404)


def test_storage_is_the_truth_when_the_trace_lags(dash: Dashboard, url: str) -> None:
    """Signalled by another engine that writes no trace: the page says completed."""

    async def approve() -> None:
        engine = FluxEngine(storage=url, logger=FluxSilentLogger())
        try:
            await engine.signal(wait_flow, "WAIT-1", "approval", {"ok": True})
        finally:
            await engine.close()

    asyncio.run(approve())
    html = dash.text("/runs/WAIT-1")
    assert 'id="stored-status" data-status="completed"' in html


def test_stuck_view_lists_dead_expired_and_long_suspended_runs(dash: Dashboard) -> None:
    now = time.time()

    async def plant() -> None:
        expired = Lease("elsewhere:1:x", "elsewhere", 1, now - 60, "")
        await dash.storage.create_run(
            RunRecord(
                f"EXP-{EVIL}",
                "ok-flow",
                RunStatus.RUNNING,
                "{}",
                created_at=now,
                updated_at=now,
                lease=expired,
            )
        )
        await dash.storage.create_run(
            RunRecord(
                "OLD-1",
                "wait-flow",
                RunStatus.SUSPENDED,
                "{}",
                waiting_for="approval",
                created_at=now - 7200,
                updated_at=now - 7200,
            )
        )
        live = Lease("elsewhere:2:y", "elsewhere", 2, now + 600, "")
        await dash.storage.create_run(
            RunRecord(
                "FINE-1", "ok-flow", RunStatus.RUNNING, "{}", created_at=now, updated_at=now, lease=live
            )
        )

    asyncio.run(plant())
    html = dash.text("/stuck")
    assert EVIL not in html
    assert 'data-reason="lease_expired"' in html and 'data-reason="suspended_long"' in html
    assert "OLD-1" in html and "FINE-1" not in html and "WAIT-1" not in html  # WAIT-1: suspended 1 s
    assert 'data-action="recover"' in html and 'data-action="signal"' in html
    assert "OLD-1" in dash.text("/fragments/stuck")
    assert 'id="stuck-note"' in dash.text("/runs/OLD-1")


def test_events_say_missed_when_the_storage_moved(dash: Dashboard) -> None:
    with dash.client.stream("GET", "/events?since=-5") as response:
        for line in response.iter_lines():
            if line.startswith("data:"):
                assert line == "data: missed"
                break


def test_several_traces_each_run_from_the_one_that_holds_it(url: str, tmp_path: Path) -> None:
    first, second = tmp_path / "a.ndjson", tmp_path / "b.ndjson"
    asyncio.run(_fill(url, first))

    async def more() -> None:
        engine = FluxEngine(storage=url, trace=JsonFileTraceSink(second), logger=FluxSilentLogger())
        try:
            await engine.execute(ok_flow, {"n": 9}, id="OTHER-1")
        finally:
            await engine.close()

    asyncio.run(more())
    storage = open_storage(url, create=False)
    try:
        app = create_app([first, second, tmp_path / "absent.ndjson"], storage=storage)
        with TestClient(app, base_url="http://127.0.0.1") as client:
            other = client.get("/runs/OTHER-1").text
            assert str(second) in other and 'id="timeline"' in other
            mine = client.get("/runs/OK-1").text
            assert str(first) in mine and 'id="timeline"' in mine
            step = client.get("/runs/OTHER-1/step?step=one")
            assert step.status_code == 200 and "one" in step.text
    finally:
        asyncio.run(storage.close())


def test_without_a_trace_the_page_says_where_the_timeline_comes_from(url: str, tmp_path: Path) -> None:
    asyncio.run(_fill(url, tmp_path / "unused.ndjson"))
    storage = open_storage(url, create=False)
    try:
        with TestClient(create_app(None, storage=storage), base_url="http://127.0.0.1") as client:
            html = client.get("/runs/OK-1").text
            assert 'id="no-trace"' in html and 'data-status="completed"' in html
            assert client.get("/runs/NOPE").status_code == 404
            assert client.get("/runs/NOPE/timeline").status_code == 200  # a fragment: says missing
    finally:
        asyncio.run(storage.close())


def test_without_storage_exactly_one_trace(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="exactly one trace"):
        create_app([tmp_path / "a", tmp_path / "b"])
