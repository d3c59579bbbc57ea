"""The built wheel: one name in site-packages, the dashboard inside `flux`, typed, and serving."""

from __future__ import annotations

import email.parser
import os
import shutil
import socket
import subprocess
import sys
import sysconfig
import time
import urllib.request
import zipfile
from pathlib import Path

import pytest

import flux

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
    pytest.importorskip("hatchling", reason="building the wheel needs hatchling (the test group has it)")
    out = tmp_path_factory.mktemp("wheel")
    build = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(out)]
    subprocess.run([*build, str(ROOT)], check=True, capture_output=True, timeout=300)
    [built] = out.glob("gravito_flux-*.whl")
    return built


@pytest.fixture(scope="module")
def site(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A virtual environment (no pip of its own) with only the wheel installed in it."""
    env = tmp_path_factory.mktemp("venv")
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(env)], check=True, timeout=120)
    purelib = Path(sysconfig.get_path("purelib", vars={"base": str(env), "platbase": str(env)}))
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(purelib), str(wheel)],
        check=True, capture_output=True, timeout=300,
    )  # fmt: skip
    return purelib


def test_the_wheel_puts_only_flux_at_the_top_of_site_packages(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    tops = {name.split("/")[0] for name in names}
    assert tops == {"flux", f"gravito_flux-{flux.__version__}.dist-info"}
    for required in ("flux/__init__.py", "flux/py.typed", "flux/_dev/server.py",
                     "flux/_dev/templates/runs.html", "flux/_dev/static/app.css",
                     "flux/_dev/static/vendor/htmx.min.js",
                     "flux/_dev/examples/order_fulfillment.py",
                     f"gravito_flux-{flux.__version__}.dist-info/licenses/LICENSE"):  # fmt: skip
        assert required in names, required


def test_the_metadata_publishes_user_extras_and_no_dev_tools(wheel: Path) -> None:
    archive = zipfile.ZipFile(wheel)
    text = archive.read(f"gravito_flux-{flux.__version__}.dist-info/METADATA").decode()
    meta = email.parser.Parser().parsestr(text)
    assert meta["Version"] == flux.__version__  # written once, in flux/__init__.py
    extras = {"viewer", "postgres", "kafka", "otel", "fastapi", "fast", "all"}
    assert set(meta.get_all("Provides-Extra") or []) == extras
    requires = " ".join(meta.get_all("Requires-Dist") or [])
    for tool in ("ruff", "mypy", "pyright", "hatchling", "playwright", "pytest"):
        assert tool not in requires, tool
    assert "pillow" in requires  # the demo's image example
    assert meta["License-Expression"] == "MIT" and meta.get_all("Project-URL")
    assert "Development Status :: 3 - Alpha" in (meta.get_all("Classifier") or [])


def test_the_installed_package_is_typed(site: Path, tmp_path: Path) -> None:
    mypy = shutil.which("mypy", path=str(Path(sys.executable).parent)) or shutil.which("mypy")
    if mypy is None:
        pytest.skip("needs mypy (the lint group has it)")
    python = next(p for p in (site.parents[2] / "bin" / "python", site.parents[1] / "Scripts" / "python.exe")
                  if p.exists())  # fmt: skip
    (tmp_path / "uses_flux.py").write_text(
        "from flux import create_workflow\n"
        "flow = create_workflow('typed').step('one', lambda ctx: 1)\n"
        "count: int = flow\n"
    )
    done = subprocess.run(
        [mypy, "--strict", "--no-incremental", "--python-executable", str(python), "uses_flux.py"],
        cwd=tmp_path, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert "py.typed" not in done.stdout, done.stdout
    assert 'Incompatible types in assignment (expression has type "Workflow[' in done.stdout, done.stdout


def test_the_installed_wheel_serves_the_demo(site: Path, tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(site)}  # ahead of the editable install of the checkout
    probe = "import flux, flux._dev.server as s; print(flux.__file__, s.__file__)"
    where = subprocess.run(
        [sys.executable, "-c", probe], cwd=tmp_path, env=env, capture_output=True, text=True, check=True
    ).stdout
    assert str(ROOT) not in where and str(site) in where
    mine = tmp_path / ".flux" / "trace.ndjson"
    mine.parent.mkdir()
    mine.write_text('{"type":"workflow:start","workflowId":"mine","workflowName":"mine","timestamp":1}\n')
    before = mine.read_bytes()
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "flux.cli", "dev", "--demo", "--port", str(port)],
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
        assert "image-processing" in page  # Pillow comes with the viewer extra
        assert get(f"http://127.0.0.1:{port}/static/vendor/htmx.min.js")[0] == 200
        assert get(f"http://127.0.0.1:{port}/static/app.css")[0] == 200
    finally:
        proc.terminate()
        proc.communicate(timeout=30)
    assert mine.read_bytes() == before  # the demo ran on files of its own
    assert (tmp_path / ".flux" / "demo" / "trace.ndjson").stat().st_size > 0
