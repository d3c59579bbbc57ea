"""Where a value cannot be stored, and why: the slow walk behind `SerializationError`.

`serialization.dumps` encodes in C and calls this only when the encoder raised or a cheap
look at its text says a check is needed (a key that an int, float, bool or None could have
become; a non-ASCII text that may hold a lone surrogate). The walk is iterative, so data
nested 100,000 deep is named, not a `RecursionError`; a deep path is shortened.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import math
import re
import uuid
from decimal import Decimal
from typing import Any

#: How deep a walk that follows a `RecursionError` looks before naming the depth itself.
MAX_DEPTH = 500

_LEAVES = (dt.date, Decimal, uuid.UUID, bytes, bytearray, memoryview)  # datetime is a date
_SURROGATE = re.compile("[\ud800-\udfff]")
#: An int of fewer bits has fewer digits than the smallest limit Python allows (640).
_SMALL_INT_BITS = 2_000
_EXIT = object()  # marks the end of a container's children on the walk's stack

Link = tuple[Any, str]  # (parent link or None, path segment)


def render(link: Link | None) -> str:
    """The path of `link`, with the middle of a very deep one left out."""
    segments: list[str] = []
    while link is not None:
        link, segment = link
        segments.append(segment)
    segments.reverse()
    if len(segments) <= 16:
        return "".join(segments)
    hidden = len(segments) - 14
    return f"{''.join(segments[:8])}<{hidden:,} more levels>{''.join(segments[-6:])}"


def key_segment(key: Any) -> str:
    """`.name` for a plain key; `['\\x1b']` (escaped) for one that is not printable."""
    if isinstance(key, str) and not key.isprintable():
        return f"[{key!r}]"
    return f".{key}"


def find_problem(value: Any, path: str, *, max_depth: int | None = None) -> tuple[str, str] | None:
    """The first part of `value` (depth first, in order) that cannot be stored, as
    (path, reason), or None. With `max_depth`, nesting deeper than that is a problem."""
    ancestors: set[int] = set()
    stack: list[tuple[Any, Link | None, str, int]] = [(value, None, path, 0)]
    while stack:
        v, parent, segment, depth = stack.pop()
        if v is _EXIT:
            ancestors.discard(depth)
            continue
        link: Link = (parent, segment)
        if v is None or isinstance(v, bool):
            continue
        if isinstance(v, str):
            why = _string_problem(v, "string")
        elif isinstance(v, int):
            why = _int_problem(v, "integer")
        elif isinstance(v, float):
            why = None if math.isfinite(v) else f"{v!r} is not a finite number"
        elif isinstance(v, (dict, list, tuple)) or _is_dataclass(v):
            if id(v) in ancestors:
                return render(link), "circular reference"
            if max_depth is not None and depth >= max_depth:
                return render(link), f"nested more than {max_depth} levels deep"
            ancestors.add(id(v))
            stack.append((_EXIT, None, "", id(v)))
            if isinstance(v, dict):
                why = _keys_problem(v)
                if why is None:
                    items = [(item, link, key_segment(k), depth + 1) for k, item in v.items()]
                    stack.extend(reversed(items))
            elif isinstance(v, (list, tuple)):
                why = None
                stack.extend(reversed([(item, link, f"[{i}]", depth + 1) for i, item in enumerate(v)]))
            else:  # a dataclass: its fields, under the same path
                why = None
                fields = {f.name: getattr(v, f.name) for f in dataclasses.fields(v)}
                stack.append((fields, parent, segment, depth + 1))
        elif isinstance(v, _LEAVES):
            continue
        elif callable(getattr(v, "model_dump", None)) and hasattr(type(v), "model_validate"):
            stack.append((v.model_dump(mode="python"), parent, segment, depth + 1))
            continue
        else:
            why = (
                f"{type(v).__name__} is not serialisable (use JSON types, bytes, "
                "datetime, date, Decimal, UUID, a dataclass or a pydantic model)"
            )
        if why is not None:
            return render(link), why
    return None


def _is_dataclass(v: Any) -> bool:
    return dataclasses.is_dataclass(v) and not isinstance(v, type)


def _string_problem(s: str, what: str) -> str | None:
    if s.isascii():
        return None
    found = _SURROGATE.search(s)
    if found is None:
        return None
    return f"{what} holds a lone surrogate {found.group()!r} at {found.start()}: it is not valid Unicode"


def _int_problem(n: int, what: str) -> str | None:
    if n.bit_length() <= _SMALL_INT_BITS:
        return None
    try:
        int.__repr__(n)
    except ValueError:
        digits = int(n.bit_length() * math.log10(2)) + 1
        return (
            f"{what} of about {digits:,} digits: more than Python converts to and from text "
            "(sys.set_int_max_str_digits)"
        )
    return None


def _keys_problem(d: dict[Any, Any]) -> str | None:
    """A key that cannot be stored, or two keys that become the same JSON text."""
    texts: dict[str, Any] = {}
    for k in d:
        if isinstance(k, str):
            why = _string_problem(k, f"key {k!r}")
            text = k
        elif k is None or isinstance(k, bool):
            why, text = None, {None: "null", True: "true", False: "false"}[k]
        elif isinstance(k, int):
            why = _int_problem(k, "key: an integer")
            text = "" if why else int.__repr__(k)
        elif isinstance(k, float):
            why = None if math.isfinite(k) else f"key {k!r} is not a finite number"
            text = "" if why else float.__repr__(k)
        else:
            why, text = f"key {k!r} of type {type(k).__name__} is not a string", ""
        if why is not None:
            return why
        if text in texts:
            first = texts[text]
            return f"keys {first!r} and {k!r} collide: both are stored as the JSON key {text!r}"
        texts[text] = k
    return None
