"""Which run a run page's address names, read from the address as sent.

A child run's id holds a "/" (``"<parent id>/<call>"``, SPEC §11) and is sent
percent-encoded, as one segment (``templating.run_url``). The router matches the decoded
path, in which ``/runs/P%2Flive`` (the page of run ``P/live``) reads as ``/runs/P/live``,
the live fragment of run ``P``. The raw path still tells them apart. Pure."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import unquote

PREFIX = "/runs/"
#: The fragments of a run's page, as the routes name them (``viewer.server``).
FRAGMENTS = frozenset({"header", "timeline", "step", "live", "graph", "graph.json"})  # graph: the graph tab


def run_of(scope: Mapping[str, Any], routed_id: str) -> tuple[str, bool]:
    """The run id the address names, and whether it asks for a fragment of its page
    (False: the page itself). ``routed_id`` is the router's reading, used when the
    raw path is not there."""
    raw = scope.get("raw_path")
    root = scope.get("root_path") or ""
    if not isinstance(raw, bytes):
        return routed_id, routed_id != _decoded_rest(scope)
    path = raw.decode("latin-1").split("?", 1)[0]
    if root and path.startswith(root):
        path = path[len(root) :]
    if not path.startswith(PREFIX):
        return routed_id, True
    rest = path[len(PREFIX) :]
    head, sep, last = rest.rpartition("/")
    if sep and last in FRAGMENTS:
        return unquote(head), True
    return unquote(rest), False


def _decoded_rest(scope: Mapping[str, Any]) -> str:
    path = str(scope.get("path", ""))
    return path[len(PREFIX) :] if path.startswith(PREFIX) else path
