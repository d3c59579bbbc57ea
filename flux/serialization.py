"""JSON with a few tagged types, so that input, data and outputs survive storage.

JSON types pass through as they are. `bytes`, `datetime`, `date`, `Decimal` and `UUID`
become `{"__flux_type__": <tag>, "value": <str>}`; dataclasses and pydantic models carry
their import path so that they are rebuilt on load. Nothing is ever unpickled, and
decoding imports nothing: a class is rebuilt only from a module the process has already
imported (the workflow's own), and only if it is a dataclass or a pydantic model. A user's
dict that happens to hold the tag key is stored as a list of pairs, so it reads back as it was.
"""

from __future__ import annotations

import base64
import dataclasses
import datetime as dt
import json
import math
import sys
import uuid
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from .errors import SerializationError

TAG = "__flux_type__"


def _default(value: Any) -> Any:
    if isinstance(value, dt.datetime):
        return {TAG: "datetime", "value": value.isoformat()}
    if isinstance(value, dt.date):
        return {TAG: "date", "value": value.isoformat()}
    if isinstance(value, Decimal):
        return {TAG: "decimal", "value": str(value)}
    if isinstance(value, uuid.UUID):
        return {TAG: "uuid", "value": str(value)}
    if isinstance(value, (bytes, bytearray, memoryview)):
        return {TAG: "bytes", "value": base64.b64encode(bytes(value)).decode("ascii")}
    cls = type(value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        fields = {f.name: getattr(value, f.name) for f in dataclasses.fields(value)}
        return {TAG: "dataclass", "class": _class_path(cls), "value": _escape(fields)}
    dump = getattr(value, "model_dump", None)
    if dump is not None and hasattr(cls, "model_validate"):
        return {TAG: "pydantic", "class": _class_path(cls), "value": _escape(dump(mode="python"))}
    raise TypeError(cls.__name__)


def _class_path(cls: type) -> str:
    return f"{cls.__module__}:{cls.__qualname__}"


_encoder = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False, default=_default)


def _escape(value: Any) -> Any:
    """`value` with every dict that holds the tag key turned into a tagged list of pairs."""
    if isinstance(value, dict):
        items = {k: _escape(v) for k, v in value.items()}
        if TAG in value:
            return {TAG: "dict", "items": [[k, v] for k, v in items.items()]}
        return items
    if isinstance(value, (list, tuple)):
        return [_escape(v) for v in value]
    return value


def dumps(value: Any, *, path: str, step: str | None = None) -> str:
    """Encode `value`; on failure raise `SerializationError` naming the path and step."""
    try:
        text = _encoder.encode(value)
        # The tag key in the text is usually a value of ours; if a user's dict holds it, escape.
        return _encoder.encode(_escape(value)) if _QUOTED_TAG in text and _holds_tag(value) else text
    except (TypeError, ValueError, RecursionError) as exc:
        bad, why = find_unserialisable(value, path)
        where = f" in step '{step}'" if step else ""
        raise SerializationError(f"cannot serialise {bad}{where}: {why}", path=bad, step=step) from exc


_QUOTED_TAG = f'"{TAG}"'


def _holds_tag(value: Any) -> bool:
    if isinstance(value, dict):
        return TAG in value or any(_holds_tag(v) for v in value.values())
    if isinstance(value, (list, tuple)):
        return any(_holds_tag(v) for v in value)
    return False


def loads(text: str) -> Any:
    return _decoder.decode(text)


def _object_hook(obj: dict[str, Any]) -> Any:
    tag = obj.get(TAG)
    if tag is None:
        return obj
    raw: Any = obj.get("value")
    if tag == "datetime":
        return dt.datetime.fromisoformat(raw)
    if tag == "date":
        return dt.date.fromisoformat(raw)
    if tag == "decimal":
        return Decimal(raw)
    if tag == "uuid":
        return uuid.UUID(raw)
    if tag == "bytes":
        return base64.b64decode(raw)
    if tag in ("dataclass", "pydantic"):
        return _rebuild(tag, str(obj.get("class", "")), raw)
    if tag == "dict":
        return {k: v for k, v in obj.get("items", ())}
    return obj


def _rebuild(tag: str, path: str, fields: Any) -> Any:
    """Rebuild a dataclass or model; if its class is gone, keep the plain dict."""
    module_name, _, qualname = path.partition(":")
    target: Any = sys.modules.get(module_name)
    if target is None:
        return fields
    try:
        for part in qualname.split("."):
            target = getattr(target, part)
    except AttributeError:
        return fields
    if tag == "dataclass" and dataclasses.is_dataclass(target) and isinstance(target, type):
        return target(**fields)
    if tag == "pydantic" and isinstance(target, type) and hasattr(target, "model_validate"):
        return target.model_validate(fields)
    return fields


_decoder = json.JSONDecoder(object_hook=_object_hook)  # one decoder: json.loads builds one per call


def loads_plain(text: str) -> Any:
    """Decode without rebuilding tagged values: the JSON as stored (for trace events)."""
    return json.loads(text)


def to_jsonable(value: Any) -> Any:
    """A plain JSON structure of `value` (for trace events), tags included."""
    return json.loads(_encoder.encode(value))


def find_unserialisable(value: Any, path: str) -> tuple[str, str]:
    """Walk `value` to find the first part JSON cannot hold: (path, reason)."""
    seen: set[int] = set()

    def walk(v: Any, p: str) -> tuple[str, str] | None:
        if v is None or isinstance(v, (str, bool, int)):
            return None
        if isinstance(v, float):
            return None if math.isfinite(v) else (p, f"{v!r} is not a finite number")
        if isinstance(v, (Mapping, list, tuple)):
            if id(v) in seen:
                return (p, "circular reference")
            seen.add(id(v))
            if isinstance(v, Mapping):
                for k, item in v.items():
                    if not isinstance(k, (str, int, float, bool)) and k is not None:
                        return (p, f"key {k!r} of type {type(k).__name__} is not a string")
                    found = walk(item, f"{p}.{k}")
                    if found:
                        return found
            else:
                for i, item in enumerate(v):
                    found = walk(item, f"{p}[{i}]")
                    if found:
                        return found
            seen.discard(id(v))
            return None
        try:
            encoded = _default(v)
        except TypeError:
            return (
                p,
                f"{type(v).__name__} is not serialisable (use JSON types, bytes, "
                "datetime, date, Decimal, UUID, a dataclass or a pydantic model)",
            )
        if isinstance(v, (dt.date, Decimal, uuid.UUID, bytes, bytearray, memoryview)):
            return None
        return walk(encoded["value"], p)

    return walk(value, path) or (path, "not serialisable")
