"""The blocking entry point that ``flux dev`` calls, run in-process on a free port."""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from viewer import server as server_module
from viewer.__main__ import main


class Recorder:
    """Captures the server that ``run`` builds, to stop it once it listens."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.opened: list[str] = []
        self.instances: list[server_module._Server] = []
        recorder = self

        class Server(server_module._Server):
            def __init__(self, *args: object, **kwargs: object) -> None:
                super().__init__(*args, **kwargs)  # type: ignore[arg-type]
                recorder.instances.append(self)

            async def startup(self, sockets: list[socket.socket] | None = None) -> None:
                await super().startup(sockets)
                self.should_exit = True  # serve nothing: starting and stopping is the test

        monkeypatch.setattr(server_module, "_Server", Server)
        monkeypatch.setattr(server_module.webbrowser, "open", self.opened.append)


def test_run_serves_on_loopback_prints_the_url_and_opens_the_browser(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    recorder = Recorder(monkeypatch)
    assert server_module.run(tmp_path / "trace.ndjson", port=0, open_browser=True) == 0
    out, err = capsys.readouterr()
    assert out.startswith("flux dev: serving http://127.0.0.1:")
    assert recorder.opened == [out.split("serving ")[1].strip()]
    assert "WARNING" not in err
    assert not (tmp_path / "trace.ndjson").exists()


def test_any_other_host_gets_a_loud_warning(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    Recorder(monkeypatch)
    assert server_module.run(tmp_path / "trace.ndjson", host="0.0.0.0", port=0) == 0
    err = capsys.readouterr().err
    assert "WARNING: flux dev is listening on 0.0.0.0" in err and "no authentication" in err


def test_a_port_in_use_is_an_error_exit(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        code: list[int] = []
        thread = threading.Thread(target=lambda: code.append(server_module.run(tmp_path / "t", port=port)))
        thread.start()
        thread.join(timeout=60)
    assert code and code[0] != 0


def test_main_mirrors_the_flux_dev_flags(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[object, ...]] = []

    def fake_run(
        trace: Path, host: str, port: int, demo: bool, open_browser: bool, allow_hosts: list[str]
    ) -> int:
        calls.append((trace, host, port, demo, open_browser, allow_hosts))
        return 0

    monkeypatch.setattr("viewer.__main__.run", fake_run)
    argv = ["--trace", "x.ndjson", "--port", "0", "--host", "::1", "--demo", "--open"]
    assert main([*argv, "--allow-host", "a.example", "--allow-host", "b"]) == 0
    assert calls == [(Path("x.ndjson"), "::1", 0, True, True, ["a.example", "b"])]
    main([])
    assert calls[-1] == (Path(".flux/trace.ndjson"), "127.0.0.1", 4280, False, False, [])


def test_python_m_viewer_has_help() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "viewer", "--help"], capture_output=True, text=True, check=True
    )
    assert "--trace" in done.stdout and "--demo" in done.stdout
