"""An installed wheel, not the source tree, serves the dashboard and runs the demo."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def get(url: str) -> tuple[int, str]:
    with urllib.request.urlopen(url, timeout=10) as response:
        return response.status, response.read().decode()


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    pytest.importorskip("hatchling", reason="building the wheel needs hatchling (the test extra has it)")
    out = tmp_path_factory.mktemp("wheel")
    build = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(out)]
    subprocess.run([*build, str(ROOT)], check=True, capture_output=True, timeout=300)
    [built] = out.glob("gravito_flux-*.whl")
    return built


def test_the_wheel_carries_viewer_templates_static_and_examples(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    for required in ("flux/__init__.py", "flux/py.typed", "viewer/server.py", "viewer/templates/runs.html",
                     "viewer/static/app.css", "viewer/static/vendor/htmx.min.js",
                     "viewer/examples/order_fulfillment.py"):  # fmt: skip
        assert required in names, required
    assert not any(n.startswith(("tests/", "bench/")) for n in names)


def test_the_installed_wheel_serves_the_dashboard(wheel: Path, tmp_path: Path) -> None:
    site = tmp_path / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(site), str(wheel)],
        check=True, capture_output=True, timeout=300,
    )  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(site)}  # ahead of the editable install of the checkout
    probe = "import viewer, flux; print(viewer.__file__, flux.__file__)"
    where = subprocess.run(
        [sys.executable, "-c", probe], cwd=tmp_path, env=env, capture_output=True, text=True, check=True
    ).stdout
    assert str(ROOT) not in where and str(site) in where
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "flux.cli", "dev", "--demo", "--port", str(port), "--trace",
         str(tmp_path / "trace.ndjson")],
        cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        for line in proc.stdout:  # the demo runs first, then the server says where it is
            if "serving http://127.0.0.1" in line:
                break
        else:
            pytest.fail("flux dev exited without serving")
        deadline = time.monotonic() + 30
        while True:
            try:
                status, page = get(f"http://127.0.0.1:{port}/")
                break
            except OSError:
                assert time.monotonic() < deadline and proc.poll() is None
                time.sleep(0.05)
        assert status == 200 and "travel-booking" in page and "order-fulfillment" in page
        assert get(f"http://127.0.0.1:{port}/static/vendor/htmx.min.js")[0] == 200
        assert get(f"http://127.0.0.1:{port}/static/app.css")[0] == 200
    finally:
        proc.terminate()
        proc.communicate(timeout=30)
