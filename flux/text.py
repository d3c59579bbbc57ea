"""Stored strings made safe to print on a terminal.

A run id, an error or a value is whatever a handler or a caller put there. Printed as it
is, `"\\x1b[2J\\x1b]0;pwn\\x07"` clears the screen and retitles the terminal, and a
right-to-left override makes a line read differently from what it holds. These helpers
show such characters as visible escapes (`\\x1b`, `\\u202e`) instead. `storable` is for
text on its way to storage, where only a lone surrogate does harm (UTF-8 cannot hold it).
"""

from __future__ import annotations

import re

#: Beyond C0: DEL, C1 controls, bidi marks, embeddings, overrides and isolates, the Unicode
#: line and paragraph separators, and lone surrogates (which cannot even be encoded).
_REST = r"\x7f-\x9f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069\ud800-\udfff"
_ANY = re.compile(rf"[\x00-\x1f{_REST}]")
_BUT_LINES = re.compile(rf"[\x00-\x08\x0b-\x1f{_REST}]")  # keeps \t and \n
#: JSON text from `json.dumps` has its C0 controls escaped already.
_JSON = re.compile(f"[{_REST}]")
_NAMED = {"\t": "\\t", "\n": "\\n", "\r": "\\r"}


def _escape(match: re.Match[str]) -> str:
    char = match.group()
    code = ord(char)
    return _NAMED.get(char) or (f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}")


def _json_escape(match: re.Match[str]) -> str:
    return f"\\u{ord(match.group()):04x}"


def printable(text: str, *, multiline: bool = False) -> str:
    """`text` with every control, bidi and unprintable character shown as an escape;
    with `multiline`, newlines and tabs stay as they are."""
    return (_BUT_LINES if multiline else _ANY).sub(_escape, text)


def printable_json(text: str) -> str:
    """JSON text with the same characters written as JSON escapes (`\\u009b`): still
    valid JSON that decodes to the same strings."""
    return _JSON.sub(_json_escape, text)


def storable(text: str) -> str:
    """`text` with each lone surrogate written as `\\ud800`, so that UTF-8 can hold it (an
    exception message may carry one: SQLite and PostgreSQL refuse to store it)."""
    if text.isascii():
        return text
    return _SURROGATES.sub(_escape, text)


_SURROGATES = re.compile(r"[\ud800-\udfff]")
