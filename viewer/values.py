"""Values as a Python developer reads them: the engine's stored encoding
(``flux/serialization.py``'s ``{"__flux_type__": ...}`` forms) turned back into
``Decimal('99.80')``, ``datetime(2026, 12, 2, 9, 30, tzinfo=timezone.utc)``,
``TripRequest(traveler='Grace Hopper', ...)``. Pure: JSON in, text and trees out.

Nothing is imported or rebuilt: a class is shown by the name the trace gives it.
Strings are shown with ``repr``, so NUL, terminal escapes and lone surrogates come
out as ``'\\x00'``, ``'\\x1b'``, ``'\\ud800'``; the templates escape the rest.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

TAG = "__flux_type__"

#: Children shown per list or dict; the rest is counted.
MAX_CHILDREN = 200
#: Nesting shown; deeper values are shown as one line.
MAX_DEPTH = 12
#: Characters of a one-line repr before it is cut.
MAX_INLINE = 120
#: Bytes shown of a bytes value.
MAX_BYTES = 48
#: Characters of the text a copy button copies.
MAX_COPY = 200_000


@dataclass
class Node:
    """One value of a tree: a leaf (``text`` only) or a container whose ``children``
    are (key shown, node) pairs between ``open`` and ``close``."""

    text: str
    kind: str = "leaf"
    open: str = ""
    close: str = ""
    children: list[tuple[str, Node]] = field(default_factory=list)
    #: Children not shown (beyond ``MAX_CHILDREN``).
    more: int = 0

    @property
    def leaf(self) -> bool:
        return self.kind == "leaf"


def _int_repr(value: int) -> str:
    try:
        return repr(value)
    except ValueError:  # more digits than Python converts
        return f"<int of about {int(value.bit_length() * 0.30103) + 1} digits>"


def _class_name(path: Any) -> str:
    text = str(path) if path is not None else ""
    qualname = text.rpartition(":")[2] or text
    name = qualname.rpartition(".")[2] or "object"
    return name if name.isidentifier() else repr(name)


def _datetime(raw: Any, date_only: bool) -> str:
    try:
        if date_only:
            return repr(dt.date.fromisoformat(str(raw))).removeprefix("datetime.")
        moment = dt.datetime.fromisoformat(str(raw))
    except (TypeError, ValueError):
        what = "date" if date_only else "datetime"
        return f"{what}.fromisoformat({str(raw)!r})"
    text = repr(moment).removeprefix("datetime.")
    return text.replace("datetime.timezone.utc", "timezone.utc").replace("datetime.timezone(", "timezone(")


def _bytes(raw: Any) -> str:
    try:
        data = base64.b64decode(str(raw), validate=True)
    except (binascii.Error, ValueError):
        return f"bytes(base64={str(raw)!r})"
    if len(data) <= MAX_BYTES:
        return repr(data)
    return f"{data[:MAX_BYTES]!r}… ({len(data):,} bytes)"


def _tagged(value: dict[str, Any]) -> tuple[str, Any] | str | None:
    """A tagged value as a leaf's text, or ``(class name, fields)`` for a dataclass or
    model, or the plain dict of a tagged dict as ``("", dict)``; None if not tagged."""
    tag = value.get(TAG)
    if not isinstance(tag, str):
        return None
    raw = value.get("value")
    if tag == "decimal":
        return f"Decimal({str(raw)!r})"
    if tag == "uuid":
        return f"UUID({str(raw)!r})"
    if tag == "datetime":
        return _datetime(raw, date_only=False)
    if tag == "date":
        return _datetime(raw, date_only=True)
    if tag == "bytes":
        return _bytes(raw)
    if tag in ("dataclass", "pydantic"):
        return _class_name(value.get("class")), raw
    if tag == "dict" and isinstance(value.get("items"), list):
        pairs = {}
        for item in value["items"]:
            if isinstance(item, list) and len(item) == 2:
                pairs[str(item[0])] = item[1]
        return "", pairs
    return None


def tree(value: Any, depth: int = 0) -> Node:
    """``value`` (a decoded trace value) as a tree of Python reprs."""
    if isinstance(value, dict):
        tagged = _tagged(value)
        if isinstance(tagged, str):
            return Node(tagged)
        if tagged is not None:
            name, fields = tagged
            if name:
                if not isinstance(fields, dict):
                    return Node(f"{name}({py_repr(fields)})")
                return _container(name + "(", ")", fields, depth, "=", short(value))
            value = fields
        return _container("{", "}", value, depth, ": ", short(value))
    if isinstance(value, list):
        return _container("[", "]", value, depth, "", short(value))
    return Node(_scalar(value))


def _container(open_: str, close: str, items: Any, depth: int, keyed: str, summary: str) -> Node:
    node = Node(summary, kind="container", open=open_, close=close)
    if depth >= MAX_DEPTH:
        node.kind = "leaf"
        return node
    pairs: list[tuple[str, Any]]
    if isinstance(items, dict):
        if keyed == "=":
            pairs = [(f"{k}=" if str(k).isidentifier() else f"{str(k)!r}=", v) for k, v in items.items()]
        else:
            pairs = [(f"{_key(k)}: ", v) for k, v in items.items()]
    else:
        pairs = [("", v) for v in items]
    node.more = max(0, len(pairs) - MAX_CHILDREN)
    node.children = [(key, tree(v, depth + 1)) for key, v in pairs[:MAX_CHILDREN]]
    if not node.children:
        node.kind = "leaf"
        node.text = open_ + close
    return node


def _key(key: Any) -> str:
    return repr(key) if isinstance(key, str) else _scalar(key)


def _scalar(value: Any) -> str:
    if value is None or isinstance(value, bool):
        return repr(value)
    if isinstance(value, int):
        return _int_repr(value)
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, str):
        return repr(value)
    return repr(str(value))


def _pieces(value: Any, depth: int = 0) -> Iterator[str]:
    """``value`` as one line of Python, in pieces (so that a summary stops early)."""
    if depth > MAX_DEPTH * 4:
        yield "…"
        return
    if isinstance(value, dict):
        tagged = _tagged(value)
        if isinstance(tagged, str):
            yield tagged
            return
        if tagged is not None:
            name, fields = tagged
            if name:
                yield name + "("
                if isinstance(fields, dict):
                    for i, (k, v) in enumerate(fields.items()):
                        yield (", " if i else "") + (f"{k}=" if str(k).isidentifier() else f"{str(k)!r}=")
                        yield from _pieces(v, depth + 1)
                else:
                    yield from _pieces(fields, depth + 1)
                yield ")"
                return
            value = fields
        yield "{"
        for i, (k, v) in enumerate(value.items()):
            yield (", " if i else "") + _key(k) + ": "
            yield from _pieces(v, depth + 1)
        yield "}"
    elif isinstance(value, list):
        yield "["
        for i, v in enumerate(value):
            if i:
                yield ", "
            yield from _pieces(v, depth + 1)
        yield "]"
    else:
        yield _scalar(value)


def py_repr(value: Any) -> str:
    """``value`` as one line of Python: what a copy button copies."""
    return "".join(_pieces(value))


def short(value: Any, limit: int = MAX_INLINE) -> str:
    """The start of ``py_repr(value)``, cut with an ellipsis past ``limit`` characters."""
    out: list[str] = []
    size = 0
    for piece in _pieces(value):
        out.append(piece)
        size += len(piece)
        if size > limit:
            return "".join(out)[: limit - 1] + "…"
    return "".join(out)


def copy_text(value: Any) -> str:
    """What a value's copy button copies: its one-line Python, cut at ``MAX_COPY``."""
    text = py_repr(value)
    return text if len(text) <= MAX_COPY else text[:MAX_COPY] + "…"
