"""What a step changed in ``ctx.data``: a small structural diff of two JSON values."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

#: Nested dicts deeper than this are compared as whole values: a diff of a
#: pathological trace must stay cheap.
MAX_DEPTH = 8


@dataclass(frozen=True)
class Change:
    """One changed path: ``kind`` is ``added``, ``removed`` or ``changed``."""

    path: str
    kind: str
    old: Any = None
    new: Any = None


def diff(old: Any, new: Any) -> list[Change]:
    """The changes from ``old`` to ``new``, dict keys recursed into, in key order."""
    changes: list[Change] = []
    _diff(old, new, "data", changes, 0)
    return changes


def _diff(old: Any, new: Any, path: str, out: list[Change], depth: int) -> None:
    if isinstance(old, dict) and isinstance(new, dict) and depth < MAX_DEPTH:
        for key, value in new.items():
            sub = _join(path, key)
            if key not in old:
                out.append(Change(sub, "added", new=value))
            else:
                _diff(old[key], value, sub, out, depth + 1)
        for key, value in old.items():
            if key not in new:
                out.append(Change(_join(path, key), "removed", old=value))
    elif old != new or type(old) is not type(new):
        out.append(Change(path, "changed", old=old, new=new))


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if key.isidentifier() else f"{path}[{key!r}]"
