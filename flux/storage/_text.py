"""Free text (error messages and types, signal names, cancel reasons) as the SQL storages
keep it, so that no string a handler produces can make a save fail.

PostgreSQL text rejects the NUL character, and neither database can take a lone surrogate
(`"\\ud800"`, which UTF-8 cannot encode). Such a string is stored escaped: the marker
U+FDD0 (a Unicode noncharacter, never in real text) then the string as the body of a JSON
string literal in ASCII (`\\u0000`, `\\ud800`, `\\\\`, `\\"`). A string that itself begins
with the marker is escaped too, so every string loads back exactly as it was saved, lone
surrogates included. Anything else is stored as it is. JSON payload columns (input, data,
outputs) are not touched: serialisation already writes them as valid JSON text.
"""

from __future__ import annotations

import json

MARK = "\ufdd0"


def _storable(text: str) -> bool:
    if text.isascii():
        return "\x00" not in text
    if "\x00" in text or text.startswith(MARK):
        return False
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def to_column(text: str | None) -> str | None:
    """The value to write for `text`."""
    if text is None or _storable(text):
        return text
    return MARK + json.dumps(text)[1:-1]


def from_column(value: str | None) -> str | None:
    """The text that `to_column` wrote as `value`."""
    if value is None or not value.startswith(MARK):
        return value
    loaded: str = json.loads('"' + value[len(MARK) :] + '"')
    return loaded
