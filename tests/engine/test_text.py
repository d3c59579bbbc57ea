"""flux.text: stored strings shown safely on a terminal, and made storable."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from flux import FluxEngine, FluxSilentLogger, SQLiteStorage, WorkflowContext, create_workflow
from flux.text import printable, printable_json, storable


@pytest.mark.parametrize(
    ("raw", "shown"),
    [
        ("\x1b[2J\x1b]0;pwn\x07", "\\x1b[2J\\x1b]0;pwn\\x07"),
        ("a\x00b\x7fc", "a\\x00b\\x7fc"),
        ("csi \x9b31m", "csi \\x9b31m"),
        ("\u202eevil\u202c", "\\u202eevil\\u202c"),
        ("\u2066iso\u2069 \u200f", "\\u2066iso\\u2069 \\u200f"),
        ("line\u2028sep", "line\\u2028sep"),
        ("lone \ud800", "lone \\ud800"),
        ("one\ntwo\tthree\rfour", "one\\ntwo\\tthree\\rfour"),
        ("plain é ✓ 中文 \U0001f600", "plain é ✓ 中文 \U0001f600"),
    ],
)
def test_printable_shows_control_and_bidi_characters_as_escapes(raw: str, shown: str) -> None:
    assert printable(raw) == shown


def test_multi_line_text_keeps_newlines_and_tabs_only() -> None:
    assert printable("a\n\tb\rc\x1b", multiline=True) == "a\n\tb\\rc\\x1b"


def test_printable_json_stays_json_with_the_same_strings() -> None:
    value = {"k\u202e": "\x1b[2J \x9b \u2066 \ud800 é"}
    text = json.dumps(value, ensure_ascii=False)
    safe = printable_json(text)
    assert json.loads(safe) == value
    for char in ("\x1b", "\x9b", "\u202e", "\u2066", "\ud800"):
        assert char not in safe
    assert "é" in safe


def test_storable_escapes_only_lone_surrogates() -> None:
    assert storable("ok \x1b é") == "ok \x1b é"
    assert storable("bad \ud800 \udfff") == "bad \\ud800 \\udfff"
    storable("bad \ud83d").encode("utf-8")


def test_an_error_message_with_a_lone_surrogate_is_stored(tmp_path: Path) -> None:
    # The storages store such a text escaped at their boundary and read it back exactly.
    def bad(ctx: WorkflowContext[Any]) -> None:
        raise RuntimeError("broken \ud800 text")

    flow = create_workflow("surrogate").step("bad", bad, retries=0)
    with FluxEngine(storage=SQLiteStorage(tmp_path / "flux.db"), logger=FluxSilentLogger()) as engine:
        result = engine.execute_sync(flow, id="s-1")
        assert result.status == "failed" and result.error == "broken \ud800 text"
        assert engine.get_sync("s-1").error == result.error
