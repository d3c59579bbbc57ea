"""Fixtures for the viewer tests: a trace path in a temp folder and a client on it."""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import pytest
from starlette.exceptions import StarletteDeprecationWarning

with warnings.catch_warnings():
    # Starlette 1.x warns at import when the test client finds httpx rather
    # than httpx2. It concerns the test client's transport, not the viewer.
    warnings.filterwarnings("ignore", category=StarletteDeprecationWarning, message=".*httpx2.*")
    from starlette.testclient import TestClient

from tests.viewer.factory import ndjson
from viewer.server import create_app


class Viewer:
    """A trace file and a TestClient on the app that reads it."""

    def __init__(self, trace: Path, client: TestClient) -> None:
        self.trace = trace
        self.client = client

    def write(self, events: Iterable[dict[str, Any]]) -> None:
        self.trace.parent.mkdir(parents=True, exist_ok=True)
        self.trace.write_bytes(ndjson(events))

    def append(self, data: bytes | Iterable[dict[str, Any]]) -> None:
        self.trace.parent.mkdir(parents=True, exist_ok=True)
        with open(self.trace, "ab") as f:
            f.write(data if isinstance(data, bytes) else ndjson(data))

    def get(self, url: str, **kwargs: Any) -> Any:
        response = self.client.get(url, **kwargs)
        assert response.status_code in (200, 404), response.text
        return response

    def text(self, url: str) -> str:
        response = self.client.get(url)
        assert response.status_code == 200, response.text
        return str(response.text)


@pytest.fixture
def trace(tmp_path: Path) -> Path:
    return tmp_path / ".flux" / "trace.ndjson"


@pytest.fixture
def viewer(trace: Path) -> Iterator[Viewer]:
    with TestClient(create_app(trace), base_url="http://127.0.0.1") as client:
        yield Viewer(trace, client)
