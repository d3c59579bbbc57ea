"""Storages: where runs are kept. `open_storage` picks one from a URL."""

from __future__ import annotations

from ..errors import StorageError
from .base import WorkflowStorage
from .memory import MemoryStorage

__all__ = ["MemoryStorage", "WorkflowStorage", "open_storage"]


def _options(rest: str) -> tuple[str, dict[str, str]]:
    """Split Flux's own `?durability=...` off a URL, leaving the driver's parameters."""
    base, sep, query = rest.partition("?")
    if not sep:
        return rest, {}
    ours, theirs = {}, []
    for part in query.split("&"):
        key, _, value = part.partition("=")
        if key == "durability":
            ours[key] = value
        elif part:
            theirs.append(part)
    return base + ("?" + "&".join(theirs) if theirs else ""), ours


def open_storage(url: str, *, create: bool = True) -> WorkflowStorage:
    """`memory://`, `sqlite:///relative.db`, `sqlite:////abs/path.db`, `postgresql://...`.

    `?durability=normal` or `?durability=full` picks the SQLite or PostgreSQL durability mode.

    With `create=False` a SQLite file that does not exist is an error instead of a new database.
    """
    if not isinstance(url, str):
        raise StorageError(f"a storage URL must be a string, got {url!r}")
    scheme, sep, rest = url.partition("://")
    if not sep:
        raise StorageError(
            f"storage URL {url!r} has no scheme: use memory://, sqlite:///path.db or postgresql://..."
        )
    scheme = scheme.lower()
    rest, options = _options(rest)
    durability = options.get("durability")
    if scheme == "memory":
        return MemoryStorage()
    if scheme == "sqlite":
        from .sqlite import SQLiteStorage

        if "?" in rest:
            raise StorageError(
                f"storage URL {url!r}: the only option of sqlite:// is ?durability=normal|full"
            )
        path = rest[1:] if rest.startswith("/") else rest
        if not path:
            raise StorageError(f"storage URL {url!r} names no database file")
        return SQLiteStorage(path, durability=durability or "normal", create=create)
    if scheme in ("postgres", "postgresql"):
        from .postgres import PostgresStorage

        return PostgresStorage(f"{scheme}://{rest}", durability=durability or "full")
    raise StorageError(
        f"storage URL {url!r}: unknown scheme '{scheme}' (use memory://, sqlite:///path.db or postgresql://...)"
    )
