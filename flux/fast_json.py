"""The `fast` extra: orjson encodes the values it is sure to write as the standard library
does, byte for byte (`pip install 'gravito-flux[fast]'`; without orjson nothing changes).

A value takes this path only if it holds nothing but exact dicts, lists, tuples, strings,
ints, bools, None and floats that `repr` writes without an exponent below 1 (orjson writes
`1e-05` as `0.00001`); NaN and infinities, big ints, lone surrogates, tagged types (datetime,
Decimal, UUID, bytes, dataclasses, pydantic models), enums, subclasses and anything else go
to the standard library path, which encodes or refuses them as it always has. orjson itself
refuses lone surrogates, ints beyond 64 bits and nesting deeper than it supports; those too
fall back. Key order, escapes (`\\u0000`, `\\u001f`), non-ASCII text and float digits are
the same in both (tests/engine/test_fast_extra.py compares them over hostile values).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

_dumps: Callable[[Any], bytes] | None
try:
    from orjson import dumps as _dumps
except ImportError:  # the extra is not installed
    _dumps = None

AVAILABLE = _dumps is not None
#: Whether `serialization.dumps` and the trace sink try this path first (tests and
#: bench/engine.py turn it off to compare).
ENABLED = AVAILABLE
_SCALARS = frozenset({str, int, bool, type(None)})
_CONTAINERS = frozenset({dict, list, tuple})
_MAX_DEPTH = 200  # orjson's own limit is 255; deeper values (and cycles) take the other path


def _plain(value: Any) -> bool:
    """True if `value` holds only what orjson writes exactly as `json` does."""
    stack = [(value, 0)]
    scalars, containers = _SCALARS, _CONTAINERS
    while stack:
        v, depth = stack.pop()
        t = type(v)
        if t in scalars:
            continue
        if t is float:
            if not math.isfinite(v) or (v != 0.0 and abs(v) < 1e-4):
                return False
            continue
        if t not in containers or depth >= _MAX_DEPTH:
            return False
        depth += 1
        for x in v.values() if t is dict else v:
            stack.append((x, depth))
    return True


def encode(value: Any) -> str | None:
    """The JSON text of `value` as `json` (compact, `ensure_ascii=False`) writes it, or None
    if this path cannot be sure of it (the caller then encodes with the standard library)."""
    if _dumps is None or (type(value) not in _SCALARS and not _plain(value)):
        return None
    try:
        return _dumps(value).decode()
    except (TypeError, ValueError):  # orjson.JSONEncodeError: surrogates, big ints, depth, keys
        return None
