"""Shared fixtures for the integration tests: fast retries and the `flux` logger's records."""

from __future__ import annotations

import logging
import warnings
from collections.abc import Iterator

import pytest
from starlette.exceptions import StarletteDeprecationWarning

from flux import Backoff

with warnings.catch_warnings():
    # Starlette 1.x warns at import when its test client finds httpx rather than httpx2;
    # that concerns the test client's transport, not the code under test.
    warnings.filterwarnings("ignore", category=StarletteDeprecationWarning, message=".*httpx2.*")
    from starlette.testclient import TestClient

__all__ = ["FAST", "Records", "TestClient"]

#: Retries with no wait, so that retry tests take no time.
FAST = Backoff(initial=0, jitter=0)


class Records(logging.Handler):
    """Keeps every record of the `flux` logger."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def messages(self, level: int = logging.DEBUG) -> list[str]:
        return [r.getMessage() for r in self.records if r.levelno >= level]


@pytest.fixture
def flux_log() -> Iterator[Records]:
    """Records of the `flux` logger, caught by a handler on that logger itself (so that they
    are caught even where a `FluxConsoleLogger` has stopped them from propagating)."""
    logger = logging.getLogger("flux")
    saved = (list(logger.handlers), logger.level, logger.propagate)
    handler = Records()
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    yield handler
    logger.handlers[:] = saved[0]
    logger.setLevel(saved[1])
    logger.propagate = saved[2]
