"""Shared fixtures for the integration tests: fast retries and the `flux` logger's records."""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import subprocess
import sys
import uuid
import warnings
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from starlette.exceptions import StarletteDeprecationWarning

from flux import Backoff

with warnings.catch_warnings():
    # Starlette 1.x warns at import when its test client finds httpx rather than httpx2;
    # that concerns the test client's transport, not the code under test.
    warnings.filterwarnings("ignore", category=StarletteDeprecationWarning, message=".*httpx2.*")
    from starlette.testclient import TestClient

__all__ = [
    "FAST",
    "SERVERLESS",
    "Records",
    "TestClient",
    "close_engine",
    "load_example",
    "run_demo",
    "trace_events",
]

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


# ---------------------------------------------------------------- the serverless examples

SERVERLESS = Path(__file__).resolve().parents[2] / "examples" / "serverless"


@pytest.fixture
def serverless(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Storage and trace of the serverless examples in tmp_path (through FLUX_STORAGE and
    FLUX_TRACE, as a deployment sets them), their folder importable, their services reset.
    Returns the trace path."""
    monkeypatch.setenv("FLUX_STORAGE", f"sqlite:///{tmp_path / 'flux.db'}")
    monkeypatch.setenv("FLUX_TRACE", str(tmp_path / "trace.ndjson"))
    monkeypatch.syspath_prepend(str(SERVERLESS))
    import order_workflow

    order_workflow.reset_services()
    return tmp_path / "trace.ndjson"


def load_example(name: str) -> ModuleType:
    """A fresh import of examples/serverless/<name>.py (a new container: no engine yet)."""
    spec = importlib.util.spec_from_file_location(
        f"serverless_{name}_{uuid.uuid4().hex}", SERVERLESS / f"{name}.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def close_engine(module: ModuleType) -> None:
    engine = getattr(module, "_engine", None)
    if engine is not None:
        engine.close_sync()
        setattr(module, "_engine", None)  # noqa: B010 - a module attribute mypy cannot see


def trace_events(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def run_demo(name: str, tmp_path: Path) -> str:
    """Run `python examples/serverless/<name>.py` as the README says; return its output."""
    env = {
        **os.environ,
        "FLUX_STORAGE": f"sqlite:///{tmp_path / 'demo.db'}",
        "FLUX_TRACE": str(tmp_path / "demo.ndjson"),
    }
    done = subprocess.run(
        [sys.executable, str(SERVERLESS / f"{name}.py")],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    events = trace_events(tmp_path / "demo.ndjson")
    assert events and events[-1]["type"] == "workflow:complete"
    return done.stdout
