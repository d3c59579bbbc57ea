"""Hostile traces render inert; only our static files are served; nothing is written."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from urllib.parse import unquote

import pytest

from tests.viewer.conftest import TestClient, Viewer
from tests.viewer.factory import RunWriter, ndjson, saga_run
from viewer.server import create_app, is_loopback

SCRIPT = "<script>alert(1)</script>"
IMG = "<img src=x onerror=alert(1)>"
ESCAPED_SCRIPT = "&lt;script&gt;alert(1)&lt;/script&gt;"
ESCAPED_IMG = "&lt;img src=x onerror=alert(1)&gt;"


def hostile_run() -> list[dict[str, object]]:
    w = RunWriter(SCRIPT, IMG, steps=((SCRIPT, False), (IMG, True)))
    return [
        w.start({IMG: SCRIPT}),
        w.step_start(SCRIPT),
        w.retry(SCRIPT, 1, SCRIPT, IMG),
        w.step_start(SCRIPT, attempt=2),
        w.complete(SCRIPT, {"html": IMG}, {SCRIPT: IMG}),
        w.step_start(IMG),
        w.suspend(IMG, SCRIPT),
        w.signal(IMG, SCRIPT, IMG),
        w.step_error(IMG, IMG, SCRIPT),
        w.rollback_start(),
        w.compensate_error(SCRIPT, SCRIPT, final=True),
        w.rollback_complete("rollback_failed"),
        w.fail(SCRIPT, IMG, status="rollback_failed", data={IMG: SCRIPT}),
    ]


def assert_inert(text: str) -> None:
    assert SCRIPT not in text and IMG not in text
    assert "<script>alert" not in text and "<img src=x" not in text
    assert ESCAPED_SCRIPT in text or ESCAPED_IMG in text


@pytest.mark.parametrize(
    "url",
    [
        "/",
        "/fragments/runs",
        "/?q=<script>",
        "/runs/%3Cscript%3Ealert(1)%3C%2Fscript%3E",
        "/runs/%3Cscript%3Ealert(1)%3C%2Fscript%3E/header",
        "/runs/%3Cscript%3Ealert(1)%3C%2Fscript%3E/timeline",
        "/runs/%3Cscript%3Ealert(1)%3C%2Fscript%3E/timeline?upto=7&live=0",
        "/runs/%3Cscript%3Ealert(1)%3C%2Fscript%3E/step?step=%3Cscript%3Ealert(1)%3C%2Fscript%3E",
        "/runs/%3Cscript%3Ealert(1)%3C%2Fscript%3E/step?step=%3Cimg%20src%3Dx%20onerror%3Dalert(1)%3E",
    ],
)
def test_hostile_strings_in_every_field_render_inert(viewer: Viewer, url: str) -> None:
    viewer.write(hostile_run())
    assert_inert(viewer.text(url))


def test_both_hostile_forms_are_escaped_on_the_run_page(viewer: Viewer) -> None:
    viewer.write(hostile_run())
    page = viewer.text("/runs/%3Cscript%3Ealert(1)%3C%2Fscript%3E")
    assert ESCAPED_SCRIPT in page and ESCAPED_IMG in page


def test_hostile_malformed_lines_and_unknown_runs_render_inert(viewer: Viewer) -> None:
    viewer.append(f"{SCRIPT}\n{{{IMG}\n".encode())
    assert_inert(viewer.text("/"))
    missing = viewer.get("/runs/%3Cimg%20src%3Dx%20onerror%3Dalert(1)%3E")
    assert missing.status_code == 404
    assert_inert(missing.text)


@pytest.mark.parametrize(
    "path",
    [
        "/static/../pyproject.toml",
        "/static/%2e%2e/pyproject.toml",
        "/static/%2E%2E/pyproject.toml",
        "/static/..%2fpyproject.toml",
        "/static/%2e%2e%2fpyproject.toml",
        "/static/..%5cpyproject.toml",
        "/static/vendor/../../pyproject.toml",
        "/static/%2e%2e/%2e%2e/etc/passwd",
        "/static//etc/passwd",
        "/static/%252e%252e/pyproject.toml",
    ],
)
def test_static_files_never_leave_the_static_folder(trace: Path, path: str) -> None:
    # Straight to the ASGI app, decoded as uvicorn decodes it: an HTTP client
    # would normalise the dots away before they reached the server.
    status, body = asgi_get(create_app(trace), path)
    assert status == 404, (path, status)
    assert b"build-system" not in body and b"root:" not in body


def asgi_get(app: object, raw_path: str) -> tuple[int, bytes]:
    scope = {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": unquote(raw_path),
        "raw_path": raw_path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(b"host", b"127.0.0.1")],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 4280),
    }
    messages: list[dict[str, object]] = []

    async def receive() -> dict[str, object]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, object]) -> None:
        messages.append(message)

    asyncio.run(app(scope, receive, send))  # type: ignore[operator]
    status = int(messages[0]["status"])  # type: ignore[call-overload]
    body = b"".join(bytes(m.get("body", b"")) for m in messages[1:])  # type: ignore[arg-type]
    return status, body


def test_our_static_files_are_served(viewer: Viewer) -> None:
    for path in ("/static/app.css", "/static/app.js", "/static/vendor/htmx.min.js"):
        assert viewer.get(path).status_code == 200
    assert viewer.get("/static/vendor/htmx-ext-sse.min.js").status_code == 200


def test_responses_carry_a_strict_content_security_policy(viewer: Viewer) -> None:
    headers = viewer.get("/").headers
    assert "script-src 'self'" in headers["content-security-policy"]
    assert "unsafe-eval" not in headers["content-security-policy"]
    assert headers["x-content-type-options"] == "nosniff"


def test_requests_for_another_host_name_are_refused(trace: Path) -> None:
    # DNS rebinding: a web page whose name resolves to 127.0.0.1 must not read the trace.
    with TestClient(create_app(trace), base_url="http://evil.example") as client:
        assert client.get("/").status_code == 400
    with TestClient(create_app(trace), base_url="http://localhost:4280") as client:
        assert client.get("/").status_code == 200
    with TestClient(create_app(trace), base_url="http://[::1]:4280") as client:
        assert client.get("/").status_code == 200


def test_loopback_detection() -> None:
    assert all(is_loopback(h) for h in ("127.0.0.1", "localhost", "::1", "[::1]", "127.1.2.3"))
    assert not any(is_loopback(h) for h in ("0.0.0.0", "::", "192.168.1.2", "example.com"))


def test_the_viewer_writes_nothing(tmp_path: Path) -> None:
    folder = tmp_path / "flux"
    folder.mkdir()
    trace = folder / "trace.ndjson"
    with TestClient(create_app(trace), base_url="http://127.0.0.1") as client:
        client.get("/")
        trace.write_bytes(b"")
        with open(trace, "ab") as f:
            f.write(ndjson(saga_run("R")) + b"half")
        before = {p: (p.stat().st_size, p.stat().st_mtime_ns) for p in folder.iterdir()}
        for url in ("/", "/runs/R", "/runs/R/timeline?upto=3&live=0", "/runs/R/step?step=fetch"):
            assert client.get(url).status_code == 200
        after = {p: (p.stat().st_size, p.stat().st_mtime_ns) for p in folder.iterdir()}
    assert before == after
    assert sorted(os.listdir(folder)) == ["trace.ndjson"]


def test_a_500_carries_the_security_headers(trace: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*args: object) -> None:
        raise RuntimeError("a bug")

    monkeypatch.setattr("viewer.pages._runs_context", broken)
    app = create_app(trace)
    with TestClient(app, base_url="http://127.0.0.1", raise_server_exceptions=False) as client:
        response = client.get("/")
    assert response.status_code == 500
    assert "script-src 'self'" in response.headers["content-security-policy"]
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["x-frame-options"] == "DENY"
