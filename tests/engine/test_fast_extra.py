"""The `fast` extra: with orjson installed, stored values and trace lines are byte for byte
what the standard library path writes, and what it refuses is refused the same way."""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
import json
import random
import re
import sqlite3
import uuid
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from flux import FluxEngine, JsonFileTraceSink, SerializationError, SQLiteStorage, create_workflow, fast_json
from flux import serialization as ser

pytestmark = pytest.mark.skipif(
    not fast_json.AVAILABLE, reason="orjson is not installed (pip install 'gravito-flux[fast]')"
)


class Color(enum.Enum):
    RED = 1


class Word(str, enum.Enum):
    A = "a"


@dataclasses.dataclass
class Point:
    x: float
    y: str


HOSTILE_STRINGS = [
    "", "\x00", "".join(map(chr, range(0x20))), "\x7f", "\u2028\u2029", "é漢字🎉", "\ud800", "a\udfffb",
    '"\\/', "\x1b[31mred\x1b[0m", "__flux_type__", "0.00001", "null", "NaN",
]  # fmt: skip
FLOATS = [
    0.0, -0.0, 0.1, 1.5, 1e-4, 9.99e-5, 1e-5, 5e-324, 2.2250738585072014e-308, 1e15, 1e16, 1e21,
    1.7976931348623157e308, 0.30000000000000004, 123456.789, 12345678901234567.0, -1e-7,
    float("nan"), float("inf"), float("-inf"),
]  # fmt: skip
INTS = [0, -1, 2**63 - 1, -(2**63), 2**63, -(2**63) - 1, 2**64, 10**400, True, False]


def values() -> list[Any]:
    rng = random.Random(12)
    out: list[Any] = [*HOSTILE_STRINGS, *FLOATS, *INTS, None, [], {}, ()]
    out += [{s: s} for s in HOSTILE_STRINGS]
    out += [{"b": 1, "a": 2, "é": [3, {"z": None, "y": 1.25}]}, (1, "x", 2.5)]
    out += [{1: "int key"}, {None: 1}, {"1": 1, 1: 2}, {True: 1}, {(1, 2): 3}]
    out += [Color.RED, Word.A, uuid.UUID(int=7), Decimal("1.10"), dt.date(2026, 1, 2), b"\x00\xff"]
    out += [dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.timezone.utc), Point(1e-9, "\x00")]
    out += [{"__flux_type__": "x", "value": 1}, {"deep": [[[[[[1]]]]]]}, object(), {1, 2}]
    nested: Any = 0
    for _ in range(300):
        nested = [nested]
    out.append(nested)
    cyclic: list[Any] = []
    cyclic.append(cyclic)
    out.append(cyclic)
    for _ in range(300):  # random mixtures of all of the above
        pool = [*HOSTILE_STRINGS, *FLOATS[:17], *INTS[:4], None, rng.random() * 10 ** rng.randint(-9, 20)]
        out.append(
            {rng.choice(HOSTILE_STRINGS[:6]) + str(i): rng.choice(pool) for i in range(rng.randint(0, 8))}
        )
        out.append([rng.choice(pool) for _ in range(rng.randint(0, 8))])
    return out


TRACE_ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), default=str)
_TIMES = re.compile(r'"(timestamp|duration|startedAt|completedAt|durationMs)":("[^"]*"|[0-9.e+-]+)')


def stdlib(value: Any) -> str:
    saved = fast_json.ENABLED
    fast_json.ENABLED = False
    try:
        return ser.dumps(value, path="data", step="s")
    finally:
        fast_json.ENABLED = saved


def outcome(fn: Any, value: Any) -> tuple[str, str]:
    try:
        return ("ok", fn(value))
    except SerializationError as exc:
        return ("refused", str(exc))


def test_orjson_writes_what_the_standard_library_writes_and_refuses_the_same() -> None:
    fast_taken = 0
    for value in values():
        expected = outcome(stdlib, value)
        got = outcome(lambda v: ser.dumps(v, path="data", step="s"), value)
        assert got == expected, repr(value)[:200]
        fast = fast_json.encode(value)
        if fast is not None:  # what the trace sink writes (its own encoder: NaN allowed, default=str)
            assert fast == TRACE_ENCODER.encode(value), repr(value)[:200]
        if fast is not None and ser._QUOTED_TAG not in fast:  # as `dumps` takes it
            fast_taken += 1
            assert expected == ("ok", fast), repr(value)[:200]
    assert fast_taken > 300  # the fast path is really taken for plain values


def test_stored_rows_and_trace_lines_are_the_same_with_and_without_orjson(tmp_path: Path) -> None:
    def step(ctx: Any) -> Any:
        ctx.data.update(
            {"s": HOSTILE_STRINGS[5], "f": [0.1, 1e16, -0.0, 12345678901234567.0, 1e-05], "n": 2**63 - 1}
        )
        return {"\x00k": "\u2028", "z": 1, "a": [None, True]}

    flow = create_workflow("fast").step("a", step).step("b", lambda ctx: ctx.outputs["a"])
    dumps: list[tuple[list[Any], list[str]]] = []
    for fast in (True, False):
        saved = fast_json.ENABLED
        fast_json.ENABLED = fast
        try:
            db, trace = tmp_path / f"{fast}.db", tmp_path / f"{fast}.ndjson"
            with FluxEngine(storage=SQLiteStorage(db), trace=JsonFileTraceSink(trace, reset=True)) as engine:
                assert engine.execute_sync(flow, {"in": "é\x00"}, id="same").status == "completed"
        finally:
            fast_json.ENABLED = saved
        conn = sqlite3.connect(db)
        try:
            rows = [conn.execute("SELECT input, data FROM flux_runs").fetchall()]
            rows += [
                conn.execute(
                    "SELECT idx, output, data_before, run_data FROM flux_steps ORDER BY idx"
                ).fetchall()
            ]
        finally:
            conn.close()
        # times differ between the two runs; every other byte of every line must not
        lines = _TIMES.sub(r'"\1":0', trace.read_text(encoding="utf-8")).split("\n")
        dumps.append((rows, lines))
    assert dumps[0] == dumps[1]
