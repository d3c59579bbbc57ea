"""Storages: where runs are kept. `open_storage` picks one from a URL."""

from __future__ import annotations

from ..errors import StorageError
from .base import WorkflowStorage
from .memory import MemoryStorage

__all__ = ["MemoryStorage", "WorkflowStorage", "open_storage"]


def open_storage(url: str, *, create: bool = True) -> WorkflowStorage:
    """`memory://`, `sqlite:///relative.db`, `sqlite:////abs/path.db`, `postgresql://...`.

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
    if scheme == "memory":
        return MemoryStorage()
    if scheme == "sqlite":
        from .sqlite import SQLiteStorage

        path = rest[1:] if rest.startswith("/") else rest
        if not path:
            raise StorageError(f"storage URL {url!r} names no database file")
        return SQLiteStorage(path, create=create)
    if scheme in ("postgres", "postgresql"):
        from .postgres import PostgresStorage

        return PostgresStorage(url)
    raise StorageError(
        f"storage URL {url!r}: unknown scheme '{scheme}' (use memory://, sqlite:///path.db or postgresql://...)"
    )
