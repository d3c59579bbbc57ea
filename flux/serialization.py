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
import re
import sys
import uuid
from decimal import Decimal
from typing import Any

from . import fast_json
from .errors import SerializationError
from .value_check import MAX_DEPTH, find_problem

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
    """Encode `value`; on failure raise `SerializationError` naming the path and step.

    The encoder runs in C; the walk that names a problem runs only when it raised, or when
    a cheap look at the text says a check is needed: a key that an int, float, bool or None
    could have become (two keys may then collide), or non-ASCII text (a lone surrogate)."""
    fast = fast_json.encode(value) if fast_json.ENABLED else None
    if fast is not None and _QUOTED_TAG not in fast:
        return fast  # only plain JSON values with string keys: nothing to check (fast_json)
    try:
        text = _encoder.encode(value)
        # The tag key in the text is usually a value of ours; if a user's dict holds it, escape.
        if _QUOTED_TAG in text and _holds_tag(value):
            text = _encoder.encode(_escape(value))
    except (TypeError, ValueError, RecursionError) as exc:
        deep = isinstance(exc, RecursionError)
        found = find_problem(value, path, max_depth=MAX_DEPTH if deep else None)
        bad, why = found or (path, "nested too deep to encode" if deep else "not serialisable")
        raise _error(bad, why, step) from exc
    surrogate = not text.isascii() and _has_surrogate(text)
    if surrogate or ('":' in text and _KEYLIKE.search(text) and _has_duplicate_key(text)):
        found = find_problem(value, path)
        if found is not None:
            raise _error(found[0], found[1], step)
    return text


def _error(path: str, why: str, step: str | None) -> SerializationError:
    where = f" in step '{step}'" if step else ""
    return SerializationError(f"cannot serialise {path}{where}: {why}", path=path, step=step)


_QUOTED_TAG = f'"{TAG}"'
#: A key as an int, float, bool or None is written (with our separators): `{"1":`, `,"null":`.
_KEYLIKE = re.compile(r'[{,]"(?:-?[0-9][0-9.e+-]*|true|false|null)":')
_plain_encoder = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))


def _has_surrogate(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def _has_duplicate_key(text: str) -> bool:
    """True if an object in `text` repeats a key: decoding keeps one of them, so the text
    written again from the decoded value is shorter. Both passes run in C."""
    try:
        return len(_plain_encoder.encode(json.loads(text))) != len(text)
    except (ValueError, RecursionError):
        return True  # let the walk decide


def _holds_tag(value: Any) -> bool:
    stack = [value]
    while stack:
        v = stack.pop()
        if isinstance(v, dict):
            if TAG in v:
                return True
            stack.extend(v.values())
        elif isinstance(v, (list, tuple)):
            stack.extend(v)
    return False


def loads(text: str, *, path: str = "a stored value") -> Any:
    """Decode stored text; text this process cannot decode raises `SerializationError`."""
    try:
        return _decoder.decode(text)
    except RecursionError:
        raise SerializationError(
            f"cannot decode {path}: nested deeper than the decoder can take", path=path
        ) from None
    except json.JSONDecodeError as exc:
        raise SerializationError(f"cannot decode {path}: not valid JSON ({exc})", path=path) from None
    except ValueError as exc:  # an int past the digit limit, or a tagged value that is not one
        if "digits" in str(exc):
            why = "an integer with more digits than Python converts (sys.set_int_max_str_digits)"
        else:
            why = f"a stored value cannot be rebuilt ({exc})"
        raise SerializationError(f"cannot decode {path}: {why}", path=path) from None


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
    """Walk `value` to find the first part that cannot be stored: (path, reason)."""
    return find_problem(value, path, max_depth=MAX_DEPTH) or (path, "not serialisable")
