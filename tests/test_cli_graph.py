"""`flux graph module:attr [--format mermaid|json]`, in a real process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
#: Clears the screen and retitles the terminal if printed as it is; then a C1 CSI and a
#: right-to-left override.
EVIL = "\x1b[2J\x1b]0;pwn\x07\x9b31m\u202e"

FLOWS = f"""
from flux import create_workflow, step

def noop(ctx): ...

child = create_workflow("invoice-flow").step("bill", noop)
flow = (
    create_workflow("checkout")
    .step("validate", noop)
    .parallel("reserve", step("stock", noop, compensate=noop), step("fraud", noop))
    .map("thumbnails", noop, items=lambda ctx: [], max_concurrency=3)
    .call("invoice", child)
    .commit("charge", noop)
)
evil = create_workflow({EVIL!r}).step({EVIL!r} + ' "x" --> [y]', noop)
not_a_flow = 42
"""


def _flux(*argv: str, cwd: Path) -> subprocess.CompletedProcess[bytes]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, "-m", "flux.cli", "graph", *argv], cwd=cwd, env=env, capture_output=True, timeout=60
    )


@pytest.fixture
def project(tmp_path: Path) -> Path:
    (tmp_path / "shop_flows.py").write_text(FLOWS, encoding="utf-8")
    return tmp_path


def test_mermaid_by_default(project: Path) -> None:
    from flux.cli import load_workflow  # the same definition, imported here

    sys.path.insert(0, str(project))
    try:
        expected = load_workflow("shop_flows:flow").graph()
    finally:
        sys.path.remove(str(project))
        sys.modules.pop("shop_flows", None)
    done = _flux("shop_flows:flow", cwd=project)
    assert done.returncode == 0, done.stderr
    assert done.stdout.decode() == expected
    assert done.stdout.startswith(b"flowchart TD\n")
    assert b'subgraph s1["reserve' in done.stdout and b'[["invoice<br>calls invoice-flow"]]' in done.stdout


def test_json_format(project: Path) -> None:
    done = _flux("shop_flows:flow", "--format", "json", cwd=project)
    assert done.returncode == 0, done.stderr
    data = json.loads(done.stdout)
    assert data["workflow"] == "checkout"
    steps = ("step", "commit", "parallel", "map", "call")
    assert [n["name"] for n in data["nodes"] if n["kind"] in steps] == [
        "validate", "reserve", "stock", "fraud", "thumbnails", "invoice", "charge",
    ]  # fmt: skip
    assert {g["name"]: g["kind"] for g in data["groups"]} == {"reserve": "parallel", "thumbnails": "map"}


@pytest.mark.parametrize("fmt", ["mermaid", "json"])
def test_hostile_names_print_no_terminal_escape(project: Path, fmt: str) -> None:
    done = _flux("shop_flows:evil", "--format", fmt, cwd=project)
    assert done.returncode == 0, done.stderr
    for byte in (b"\x1b", b"\x07", "\x9b".encode(), "\u202e".encode()):
        assert byte not in done.stdout, (byte, done.stdout)
    if fmt == "json":
        assert json.loads(done.stdout)["nodes"][0]["name"] == EVIL + ' "x" --> [y]'


@pytest.mark.parametrize(
    ("spec", "words"),
    [
        ("no_such_module:flow", "flux graph: error: 'no_such_module:flow': cannot import no_such_module"),
        ("shop_flows:missing", "flux graph: error: 'shop_flows:missing': shop_flows has no attribute"),
        ("shop_flows:not_a_flow", "flux graph: error: 'shop_flows:not_a_flow' is a int, not a workflow"),
        ("shop_flows", "flux graph: error: 'shop_flows': expected module:attribute"),
    ],
)
def test_what_cannot_be_loaded_exits_2_saying_why(project: Path, spec: str, words: str) -> None:
    done = _flux(spec, cwd=project)
    assert done.returncode == 2
    assert done.stdout == b""
    err = done.stderr.decode()
    assert err.startswith(words), err
    assert "Traceback" not in err


def test_an_unknown_format_is_a_usage_error(project: Path) -> None:
    done = _flux("shop_flows:flow", "--format", "dot", cwd=project)
    assert done.returncode == 2
    assert b"invalid choice: 'dot'" in done.stderr
