"""Every storage backend, for the conformance suite: a user's own backend is correct when
`make_storage` can build it here and every test in this folder passes."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from flux import MemoryStorage, SQLiteStorage, WorkflowStorage

from ..services import postgres_url_or_skip

Factory = Callable[[], WorkflowStorage]


@pytest.fixture(params=["memory", "sqlite", "postgres"])
def make_storage(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Factory]:
    """A factory of storages that all see the same data (a second one is a second process's view)."""
    made: list[WorkflowStorage] = []
    kind = request.param
    if kind == "memory":
        shared = MemoryStorage()

        def factory() -> WorkflowStorage:
            return shared

    elif kind == "sqlite":

        def factory() -> WorkflowStorage:
            storage = SQLiteStorage(tmp_path / "flux.db")
            made.append(storage)
            return storage

    else:
        url = postgres_url_or_skip(request)
        from flux.storage.postgres import PostgresStorage

        def factory() -> WorkflowStorage:
            storage = PostgresStorage(url)
            made.append(storage)
            return storage

    yield factory
    for storage in made:
        asyncio.run(storage.close())


def run(coro: Any) -> Any:
    return asyncio.run(coro)
