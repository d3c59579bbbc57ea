"""One line of a trace: parsed into an event, or the reason it is malformed; and the
number and text readings that every reader of events shares.

Pure, like ``viewer.trace``: anything on the machine may write the trace, so nothing
here raises on what a line holds (a torn line, an integer of 5,000 digits or past
float range, a nesting too deep).
"""

from __future__ import annotations

import importlib
import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

#: How many malformed lines are remembered with their line number; beyond that
#: they are only counted, so a file of garbage cannot exhaust memory.
MALFORMED_KEPT = 100
#: How much of a malformed line is kept to show where it went wrong.
SNIPPET = 120
#: The shortest JSON text of an integer past float range (``2**1024`` has 309 digits):
#: a shorter line cannot hold one, so the index's hot loop looks no further.
HUGE_INT_DIGITS = 309
_FLOAT_MAX = 2**1024

# The C scanner behind json.loads, called directly: it skips loads' type
# checks and whitespace handling, which is a quarter of the time per line.
scan: Callable[[str, int], tuple[Any, int]] = json.JSONDecoder().scan_once  # type: ignore[attr-defined]

#: orjson's parser when the ``viewer`` extra brought it: two to three times as
#: fast as ``scan`` on trace lines (bench/viewer.py). The index's hot loop uses
#: it; a line it refuses (NaN, a lone surrogate, an integer past float range)
#: goes to ``parse_line``, which decides, so both parsers skip the same lines.
fast_loads: Callable[[str], Any] | None
try:
    fast_loads = importlib.import_module("orjson").loads
except ImportError:  # pragma: no cover - depends on the install
    fast_loads = None


@dataclass(frozen=True)
class Malformed:
    """A line that was skipped: its 1-based number, why, and how it begins."""

    line: int
    reason: str
    text: str = ""


def parse_line(text: str) -> dict[str, Any] | str:
    """Parse one line into an event dict, or return why it is malformed."""
    try:
        obj, end = scan(text, 0)
        if end != len(text) and text[end:].strip():
            return f"unexpected data after the JSON object at column {end + 1}"
    except (StopIteration, ValueError, RecursionError):
        # ValueError: JSONDecodeError, and an integer past Python's int-to-text limit.
        # scan_once is strict about leading whitespace and terse in its
        # errors; json.loads gives the message a person can act on.
        try:
            obj = json.loads(text)
        except json.JSONDecodeError as exc:
            return f"invalid JSON: {exc.msg} at column {exc.colno}"
        except RecursionError:
            return "invalid JSON: nested too deep"
        except ValueError:
            return "invalid JSON: an integer too long to read (over 4,300 digits)"
    if type(obj) is not dict:
        return "not a JSON object"
    wid = obj.get("workflowId")
    if type(wid) is not str:
        if type(wid) is int:
            obj["workflowId"] = str(wid)
        else:
            return "no workflowId"
    if type(obj.get("type")) is not str:
        return "no type"
    bad = unrepresentable(obj)
    if bad is not None:
        return bad
    return obj


def unrepresentable(ev: dict[str, Any]) -> str | None:
    """Why a field of ``ev`` holds a number no float holds (an integer past float
    range, ``NaN``, ``Infinity``, ``1e999``), or None. Such a line is skipped and
    counted: every reader of a field would otherwise need its own guard."""
    for key, value in ev.items():
        if type(value) is int:
            if not -_FLOAT_MAX < value < _FLOAT_MAX:
                return f"{key}: an integer out of range"
        elif type(value) is float and not math.isfinite(value):
            return f"{key}: not a finite number"
    return None


def text_or_none(value: Any) -> str | None:
    if value is None:
        return None
    return value if type(value) is str else json.dumps(value)


def number_or_none(value: Any) -> float | None:
    """A finite number as a float; None for anything else, an int past float range included."""
    if type(value) is float:
        return value if math.isfinite(value) else None
    if type(value) is int:
        try:
            return float(value)
        except OverflowError:
            return None
    return None
