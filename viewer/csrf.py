"""What makes a POST to the dashboard the user's own: a per-session CSRF token and an
Origin check (SPEC §12).

A session is a random id in an HttpOnly, SameSite=Strict cookie, set on the first
request that lacks it. Its token is an HMAC of the id under a secret that lives as long
as the process: a page from another site can neither read the token (the Host check of
``viewer.hosts`` keeps DNS rebinding out) nor send the cookie (SameSite=Strict), and a
token from before a restart of ``flux dev`` is stale. The pure part, ``refusal``, says
why a POST is refused; the middleware only hands out the cookie and the token.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Mapping
from http.cookies import SimpleCookie
from urllib.parse import urlsplit

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .hosts import host_allowed, host_of

__all__ = ["COOKIE", "FIELD", "SessionCSRF", "refusal", "token_for"]

#: The session cookie's name.
COOKIE = "flux_session"
#: The form field that carries the token.
FIELD = "csrf"


def token_for(secret: bytes, session: str) -> str:
    return hmac.new(secret, session.encode(), hashlib.sha256).hexdigest()


def _session_of(headers: Mapping[str, str]) -> str:
    jar: SimpleCookie = SimpleCookie()
    try:
        jar.load(headers.get("cookie", ""))
    except Exception:  # a malformed Cookie header is no session
        return ""
    morsel = jar.get(COOKIE)
    return morsel.value if morsel is not None else ""


def _origin_of(headers: Mapping[str, str]) -> str | None:
    """``scheme://host[:port]`` of the Origin header, or of the Referer when there is
    no Origin; None when neither is there."""
    origin = headers.get("origin")
    if origin is not None:
        return origin.strip()
    referer = headers.get("referer")
    if referer is None:
        return None
    parts = urlsplit(referer.strip())
    return f"{parts.scheme}://{parts.netloc}" if parts.scheme and parts.netloc else "null"


def refusal(
    headers: Mapping[str, str],
    form_token: str | None,
    *,
    secret: bytes,
    allowed: frozenset[str],
    scheme: str = "http",
) -> str | None:
    """Why a POST with these headers (lower-case names) and this form token is refused,
    or None when it is the user's own."""
    origin = _origin_of(headers)
    if origin is None:
        return (
            "the request has neither an Origin nor a Referer header: it cannot be told from a cross-site one"
        )
    own = f"{scheme}://{headers.get('host', '')}".lower()
    parts = urlsplit(origin.lower())
    if origin.lower() != own or not host_allowed(host_of(parts.netloc), allowed):
        return f"cross-origin request refused: Origin {origin[:200]!r} is not this dashboard ({own})"
    session = _session_of(headers)
    if not session:
        return "no session cookie: reload the page and try again"
    if not form_token:
        return f"the form carries no CSRF token (field '{FIELD}'): reload the page and try again"
    if not hmac.compare_digest(form_token.encode(), token_for(secret, session).encode()):
        return (
            "the CSRF token is stale or wrong (flux dev was restarted, or the form is old): reload the page"
        )
    return None


class SessionCSRF:
    """Gives every browser a session cookie, and every request its CSRF token as
    ``request.state.csrf`` (for the forms the pages render)."""

    def __init__(self, app: ASGIApp, secret: bytes | None = None) -> None:
        self.app = app
        #: Lives as long as the process: a restart makes every earlier token stale.
        self.secret = secret if secret is not None else secrets.token_bytes(32)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope.get("headers", [])}
        session = _session_of(headers)
        fresh = not session or len(session) > 100
        if fresh:
            session = secrets.token_urlsafe(32)
        state = scope.setdefault("state", {})
        state["csrf"] = token_for(self.secret, session)
        state["csrf_secret"] = self.secret

        async def send_with_cookie(message: Message) -> None:
            if fresh and message["type"] == "http.response.start":
                cookie = f"{COOKIE}={session}; Path=/; HttpOnly; SameSite=Strict"
                message["headers"] = [*message.get("headers", []), (b"set-cookie", cookie.encode())]
            await send(message)

        await self.app(scope, receive, send_with_cookie)
