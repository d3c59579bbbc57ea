"""Shared fixtures for the engine tests: engines over MemoryStorage and SQLiteStorage."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import flux
from flux import Backoff, FluxEngine, FluxSilentLogger, MemoryStorage

#: Retries with no wait, so that retry tests take no time.
FAST = Backoff(initial=0, jitter=0)

EngineFactory = Callable[..., FluxEngine]


def _factory(kind: str, tmp_path: Path) -> tuple[EngineFactory, list[FluxEngine]]:
    memory = MemoryStorage()
    engines: list[FluxEngine] = []

    def make(**kwargs: Any) -> FluxEngine:
        if "storage" not in kwargs:
            # Each engine gets its own connection to one file, as a second process would.
            kwargs["storage"] = memory if kind == "memory" else flux.SQLiteStorage(tmp_path / "flux.db")
        kwargs.setdefault("default_backoff", FAST)
        kwargs.setdefault("logger", FluxSilentLogger())
        engine = FluxEngine(**kwargs)
        engines.append(engine)
        return engine

    return make, engines


@pytest.fixture(params=["memory", "sqlite"])
def make_engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[EngineFactory]:
    """Build engines on one storage (the same MemoryStorage, or one SQLite file)."""
    make, engines = _factory(request.param, tmp_path)
    yield make
    for engine in engines:
        engine.close_sync()


@pytest.fixture
def engine(make_engine: EngineFactory) -> FluxEngine:
    return make_engine()


@pytest.fixture
def memory_engine(tmp_path: Path) -> Iterator[FluxEngine]:
    """An engine on MemoryStorage only, for behaviour that does not depend on storage."""
    make, engines = _factory("memory", tmp_path)
    yield make()
    for engine in engines:
        engine.close_sync()


@pytest.fixture(autouse=True)
def _restore_flux_logger() -> Iterator[None]:
    """FluxConsoleLogger configures the shared `flux` logger; undo it after each test."""
    logger = logging.getLogger("flux")
    saved = (list(logger.handlers), logger.level, logger.propagate)
    yield
    logger.handlers[:] = saved[0]
    logger.setLevel(saved[1])
    logger.propagate = saved[2]
