"""Which Host headers the dashboard answers, whatever address it binds (DNS rebinding)."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from tests.viewer.conftest import TestClient
from viewer import server as server_module
from viewer.hosts import allowed_hosts, host_of, machine_names
from viewer.server import create_app

MACHINE = {"devbox", "devbox.lan", "10.1.2.3", "fd00::5"}


def status(trace: Path, hosts: frozenset[str], host_header: str) -> int:
    with TestClient(create_app(trace, hosts=hosts), base_url="http://127.0.0.1") as client:
        return int(client.get("/", headers={"host": host_header}).status_code)


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("127.0.0.1:4280", 200),
        ("localhost:4280", 200),
        ("[::1]:4280", 200),
        ("devbox:4280", 200),
        ("DEVBOX.lan.:4280", 200),
        ("10.1.2.3:4280", 200),
        ("[fd00::5]:4280", 200),
        ("dash.example.com", 200),
        ("a.team.example", 200),
        ("evil.example", 400),
        ("evil.example:4280", 400),
        ("10.1.2.4:4280", 400),
        ("team.example", 400),
        ("0.0.0.0:4280", 400),
        ("", 400),
        ("fd00::5", 400),
    ],
)
def test_a_server_on_every_address_still_checks_the_host(trace: Path, header: str, expected: int) -> None:
    hosts = allowed_hosts("0.0.0.0", ["dash.example.com", "*.team.example"], names=MACHINE)
    assert status(trace, hosts, header) == expected


def test_a_server_on_another_loopback_address_accepts_its_own_url(trace: Path) -> None:
    hosts = allowed_hosts("127.0.0.2")
    assert status(trace, hosts, "127.0.0.2:4280") == 200
    assert status(trace, hosts, "devbox:4280") == 400


def test_the_refusal_says_how_to_allow_a_name(trace: Path) -> None:
    with TestClient(create_app(trace), base_url="http://evil.example") as client:
        response = client.get("/")
    assert response.status_code == 400 and "--allow-host" in response.text
    assert "evil.example" not in response.text
    assert "content-security-policy" in response.headers


def test_the_machine_names_include_its_hostname_and_loopback_stays_loopback() -> None:
    names = machine_names()
    assert socket.gethostname().lower() in names
    assert allowed_hosts("127.0.0.1") == frozenset({"localhost", "127.0.0.1", "::1"})
    assert "*" not in allowed_hosts("0.0.0.0", names=MACHINE)
    assert allowed_hosts("::", ["*"], names=MACHINE) >= {"*"}


def test_host_headers_are_read_as_browsers_send_them() -> None:
    assert host_of("[::1]:80") == "::1" and host_of("[::1]") == "::1"
    assert host_of("Example.COM.:80") == "example.com" and host_of("x") == "x"
    assert host_of("::1") == "" and host_of("[::1") == ""


def test_run_on_every_address_answers_only_its_own_names(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    built: list[frozenset[str]] = []
    real = server_module.create_app

    def spy(trace: Path, hosts: frozenset[str]) -> object:
        built.append(hosts)
        return real(trace, hosts=hosts)

    class Server(server_module._Server):
        async def startup(self, sockets: list[socket.socket] | None = None) -> None:
            await super().startup(sockets)
            self.should_exit = True

    monkeypatch.setattr(server_module, "create_app", spy)
    monkeypatch.setattr(server_module, "_Server", Server)
    assert server_module.run(tmp_path / "t", host="0.0.0.0", port=0, allow_hosts=["dash.example"]) == 0
    (hosts,) = built
    assert "*" not in hosts and "evil.example" not in hosts
    assert {"dash.example", "127.0.0.1", socket.gethostname().lower()} <= hosts
