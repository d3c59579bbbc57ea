"""Group commit (issue 12): the saves of runs in flight at once share one transaction, and
each run's outcome stays its own: a lost lease or a refused row fails only that run's save."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from flux import FluxEngine, SQLiteStorage, StorageError, WorkflowContext, create_workflow
from flux.errors import LeaseLostError
from flux.records import RunRecord, StepRecord
from flux.status import StepStatus
from flux.storage._group import GroupCommit, Write

from ..services import postgres_url_or_skip
from .test_conformance import lease, make_run

Storage = Any  # SQLiteStorage or PostgresStorage: both keep their queue in `_group`


@pytest.fixture(params=["sqlite", "postgres"])
def make(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Callable[[], Storage]]:
    made: list[Storage] = []

    def factory() -> Storage:
        if request.param == "sqlite":
            storage: Storage = SQLiteStorage(tmp_path / "flux.db")
        else:
            from flux.storage.postgres import PostgresStorage

            storage = PostgresStorage(url)
        made.append(storage)
        return storage

    url = "" if request.param == "sqlite" else postgres_url_or_skip(request)
    yield factory
    for storage in made:
        asyncio.run(storage.close())


async def _in_one_batch(group: GroupCommit, saves: list[Any]) -> list[Any]:
    """Run `saves` while the writer is held busy, so that all of them form its next batch."""
    held, release = threading.Event(), threading.Event()

    def hold(conn: Any) -> None:
        held.set()
        release.wait()

    blocker_write = Write(hold, "holding the writer", single=True, alone=lambda: hold(None))
    blocker = asyncio.ensure_future(group.submit(blocker_write, inline=False))
    await asyncio.get_running_loop().run_in_executor(None, held.wait)
    tasks = [asyncio.ensure_future(s) for s in saves]
    # Each save reaches the queue within two turns of the loop (no time involved).
    while len(group._queue) < len(saves):  # noqa: ASYNC110
        await asyncio.sleep(0)
    batches = group.batches
    release.set()
    await blocker
    outcomes = await asyncio.gather(*tasks, return_exceptions=True)
    assert group.batches == batches + 2  # the blocker's, then one for all the saves
    return outcomes


def flow() -> Any:
    def step(ctx: WorkflowContext[Any]) -> int:
        return ctx.attempt

    built = create_workflow("group")
    for i in range(10):
        built = built.step(f"s{i}", step)
    return built


def _finish_step(run: RunRecord, data: str, attempts: int = 1) -> None:
    run.steps[0] = StepRecord("s1", "step", StepStatus.COMPLETED, attempts=attempts, output_json='"ok"')
    run.data_json = data
    run.rev += 1


def test_a_lost_lease_in_a_batch_fails_only_that_run(make: Callable[[], Storage]) -> None:
    storage = make()

    async def go() -> list[Any]:
        runs = [make_run(f"r{i}", lease=lease("me")) for i in range(3)]
        for r in runs:
            assert await storage.create_run(r)
        assert await storage.acquire_lease("r1", lease("thief"), take_from="me")
        for i, r in enumerate(runs):
            _finish_step(r, f'{{"n":{i}}}')
        return await _in_one_batch(storage._group, [storage.save_run(r, [0], "me") for r in runs])

    outcomes = asyncio.run(go())
    assert outcomes[0] is None and outcomes[2] is None
    assert isinstance(outcomes[1], LeaseLostError) and "r1" in str(outcomes[1])
    other = make()
    for i in (0, 2):
        loaded = asyncio.run(other.load_run(f"r{i}"))
        assert loaded is not None and loaded.data_json == f'{{"n":{i}}}'
        assert loaded.steps[0].status is StepStatus.COMPLETED
    lost = asyncio.run(other.load_run("r1"))
    assert lost is not None and lost.data_json == "{}" and lost.steps[0].status is StepStatus.PENDING
    assert lost.lease is not None and lost.lease.owner == "thief"


@pytest.mark.parametrize("owner", ["me", None])
def test_a_refused_row_in_a_batch_fails_only_that_run_and_stores_nothing_of_it(
    make: Callable[[], Storage], owner: str | None
) -> None:
    storage = make()

    async def go() -> list[Any]:
        runs = [make_run(f"r{i}", lease=lease("me") if owner else None) for i in range(3)]
        for r in runs:
            assert await storage.create_run(r)
        for i, r in enumerate(runs):
            # r1's step has a count no database integer holds: its row is refused after
            # its run row was written (a save of several statements is undone whole).
            _finish_step(r, f'{{"n":{i}}}', attempts=2**70 if i == 1 else 1)
        return await _in_one_batch(storage._group, [storage.save_run(r, [0], owner) for r in runs])

    outcomes = asyncio.run(go())
    assert outcomes[0] is None and outcomes[2] is None
    assert isinstance(outcomes[1], StorageError) and "run 'r1'" in str(outcomes[1])
    other = make()
    for i in (0, 2):
        loaded = asyncio.run(other.load_run(f"r{i}"))
        assert loaded is not None and loaded.data_json == f'{{"n":{i}}}'
    refused = asyncio.run(other.load_run("r1"))
    assert refused is not None and refused.data_json == "{}" and refused.rev == 0
    assert refused.steps[0].status is StepStatus.PENDING


def test_runs_in_flight_at_once_share_transactions(make: Callable[[], Storage]) -> None:
    storage = make()

    async def go() -> None:
        engine = FluxEngine(storage=storage)
        wf = flow()
        results = await asyncio.gather(*(engine.execute(wf, {}) for _ in range(32)))
        assert {r.status.value for r in results} == {"completed"}

    asyncio.run(go())
    group = storage._group
    # 32 runs × (1 create + 10 steps): far fewer commits than writes.
    assert group.writes >= 32 * 10
    assert group.batches * 4 <= group.writes


def test_a_run_alone_is_written_at_once_on_its_own_thread(make: Callable[[], Storage]) -> None:
    storage = make()

    async def go() -> None:
        engine = FluxEngine(storage=storage)
        for _ in range(3):
            assert (await engine.execute(flow(), {})).status.value == "completed"

    asyncio.run(go())
    # Every write its own commit, made on the caller's thread: no writer thread was needed.
    assert storage._group.batches == storage._group.writes >= 30
    assert storage._group._thread is None
