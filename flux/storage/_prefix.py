"""Searching runs by the start of their id, as each SQL storage does it by an index."""

from __future__ import annotations

#: The largest code point: a prefix ending in it has no successor of the same length.
_TOP = 0x10FFFF


def prefix_successor(prefix: str) -> str | None:
    """The smallest string greater than every string that starts with `prefix`, in code
    point order (SQLite's BINARY collation), or None if there is none: the open upper end
    of the range `prefix <= id < successor` that the primary key's index serves."""
    chars = list(prefix)
    while chars:
        last = ord(chars.pop())
        # The successor skips the surrogates, which no stored id holds.
        nxt = last + 1 if last + 1 != 0xD800 else 0xE000
        if nxt <= _TOP:
            return "".join(chars) + chr(nxt)
    return None


def like_prefix(prefix: str) -> str:
    """A LIKE pattern (escape character backslash) matching the strings that start with `prefix`."""
    escaped = prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return escaped + "%"


def searchable(prefix: str) -> bool:
    """Whether a stored id can start with `prefix`: ids hold neither NUL nor lone surrogates,
    which the databases would refuse as a parameter."""
    if "\x00" in prefix:
        return False
    try:
        prefix.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True
