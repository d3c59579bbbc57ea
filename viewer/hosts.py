"""Which ``Host`` headers ``flux dev`` answers: a guard against DNS rebinding.

A web page the user visits can point a name it controls at this machine and
then read the dashboard through the browser, unless the server refuses a Host
that is not its own. So whatever address it binds, it answers only to that
address, loopback, the machine's own names and addresses when it binds more
than loopback, and the names the user allows with ``--allow-host``.
"""

from __future__ import annotations

import contextlib
import ipaddress
import itertools
import socket
from collections.abc import Iterable
from pathlib import Path

from starlette.responses import PlainTextResponse
from starlette.types import ASGIApp, Receive, Scope, Send

LOOPBACK = frozenset({"localhost", "127.0.0.1", "::1"})
WILDCARDS = frozenset({"", "0.0.0.0", "::"})


def normal(host: str) -> str:
    """``[::1]`` -> ``::1``, ``Example.COM.`` -> ``example.com``."""
    host = host.strip().lower().rstrip(".")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    return host


def host_of(header: str) -> str:
    """The host of a ``Host`` header, its port dropped: ``[::1]:4280`` -> ``::1``."""
    header = header.strip()
    if header.startswith("["):
        end = header.find("]")
        return normal(header[: end + 1]) if end > 0 else ""
    if header.count(":") == 1:
        header = header.split(":", 1)[0]
    elif header.count(":") > 1:
        return ""  # an IPv6 address must be bracketed in a Host header
    return normal(header)


def is_loopback(host: str) -> bool:
    host = normal(host)
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def machine_names() -> set[str]:
    """This machine's names and addresses, as far as the standard library can tell."""
    names: set[str] = set()
    with _quiet():
        hostname = socket.gethostname()
        names |= {hostname, f"{hostname}.local"}
    with _quiet():
        names.add(socket.getfqdn())
    for name in list(names):
        with _quiet():
            for info in socket.getaddrinfo(name, None):
                names.add(str(info[4][0]))
    # The addresses the machine would send from (no packet is sent: a UDP
    # socket's connect only picks a route), then every local address Linux lists.
    for family, probe in ((socket.AF_INET, "192.0.2.1"), (socket.AF_INET6, "2001:db8::1")):
        with _quiet(), socket.socket(family, socket.SOCK_DGRAM) as s:
            s.connect((probe, 9))
            names.add(str(s.getsockname()[0]))
    names |= _linux_addresses()
    return {normal(n) for n in names if n}


def _linux_addresses() -> set[str]:
    out: set[str] = set()
    with _quiet():
        lines = Path("/proc/net/fib_trie").read_text().splitlines()
        for before, line in itertools.pairwise(lines):
            if "/32 host LOCAL" in line:
                out.add(before.strip().lstrip("|-+` ").strip())
    with _quiet():
        for line in Path("/proc/net/if_inet6").read_text().splitlines():
            raw = line.split()[0]
            out.add(str(ipaddress.ip_address(int(raw, 16))))
    return {a for a in out if _is_address(a)}


def _is_address(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def _quiet() -> contextlib.suppress:
    """Suppresses what a look-up of the machine's own names may raise."""
    return contextlib.suppress(OSError, ValueError, UnicodeError)


def allowed_hosts(bind: str, extra: Iterable[str] = (), names: set[str] | None = None) -> frozenset[str]:
    """The hosts a server bound to ``bind`` answers: see the module's docstring.

    ``names`` (the machine's) is looked up when ``bind`` is more than loopback.
    """
    allowed = set(LOOPBACK) | {normal(bind)}
    if not is_loopback(bind):
        allowed |= machine_names() if names is None else {normal(n) for n in names}
    return frozenset(allowed - WILDCARDS | {normal(h) for h in extra if normal(h)})


def host_allowed(host: str, allowed: frozenset[str]) -> bool:
    if not host:
        return False
    if "*" in allowed or host in allowed:
        return True
    return any(a.startswith("*.") and host.endswith(a[1:]) for a in allowed)


class HostCheck:
    """Refuses, with 400, a request whose Host is not in ``allowed``."""

    def __init__(self, app: ASGIApp, allowed: frozenset[str]) -> None:
        self.app = app
        self.allowed = allowed

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        header = ""
        for key, value in scope.get("headers", []):
            if key == b"host":
                header = value.decode("latin-1")
                break
        host = host_of(header)
        if host_allowed(host, self.allowed):
            await self.app(scope, receive, send)
            return
        # Not echoed: the header is the caller's, and a refusal needs no detail.
        text = (
            "flux dev: this Host is not one this server answers to (a guard against DNS "
            "rebinding). To open the dashboard under another name, start it with "
            "--allow-host NAME.\n"
        )
        await PlainTextResponse(text, status_code=400)(scope, receive, send)
