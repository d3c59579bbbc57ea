"""Checks a workflow's input against the type given to `.input(T)`.

TypedDicts and dataclasses are checked field by field against their annotations (the
common annotations: scalars, containers, `Optional`/unions, `Literal`, nested TypedDicts
and dataclasses; anything more exotic is accepted as is). Pydantic models validate
themselves. The first wrong field is named in the `InputValidationError`.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import types
import typing
import uuid
from collections.abc import Mapping
from decimal import Decimal
from typing import Any, Literal, Union

from .errors import InputValidationError

_SCALARS: tuple[type, ...] = (str, bytes, dt.datetime, dt.date, Decimal, uuid.UUID)


def is_typeddict(tp: Any) -> bool:
    return isinstance(tp, type) and issubclass(tp, dict) and hasattr(tp, "__total__")


def is_pydantic_model(tp: Any) -> bool:
    return isinstance(tp, type) and hasattr(tp, "model_validate") and hasattr(tp, "model_fields")


def check_input_type(tp: Any) -> str | None:
    """Why `tp` cannot be an input type, or None if it can."""
    if is_typeddict(tp) or is_pydantic_model(tp):
        return None
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        return None
    return f"{tp!r} is not a TypedDict, a dataclass or a pydantic model"


def validate_input(tp: Any, value: Any, workflow: str) -> Any:
    """Return the input as the workflow will see it, or raise `InputValidationError`."""
    if is_pydantic_model(tp):
        return _validate_pydantic(tp, value, workflow)
    problem = _check(value, tp, "input")
    if problem is not None:
        field, why = problem
        raise InputValidationError(f"workflow '{workflow}': invalid input at {field}: {why}", field=field)
    return _convert(value, tp)


def _validate_pydantic(tp: Any, value: Any, workflow: str) -> Any:
    if isinstance(value, tp):
        return value
    try:
        return tp.model_validate(value)
    except Exception as exc:
        errors = getattr(exc, "errors", None)
        if not callable(errors):
            raise
        first = errors()[0]
        field = "input" + "".join(
            f"[{part}]" if isinstance(part, int) else f".{part}" for part in first.get("loc", ())
        )
        raise InputValidationError(
            f"workflow '{workflow}': invalid input at {field}: {first.get('msg')}",
            field=field,
        ) from None


def _convert(value: Any, tp: Any) -> Any:
    """Build the dataclasses that a checked `value` holds as mappings, at any depth."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin is typing.Annotated:
        return _convert(value, args[0])
    if origin is Union or (hasattr(types, "UnionType") and isinstance(tp, types.UnionType)):
        for arg in args:
            if _check(value, arg, "") is None:
                return _convert(value, arg)
        return value
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        if not isinstance(value, Mapping):
            return value
        hints = typing.get_type_hints(tp)
        return tp(**{k: _convert(v, hints.get(k, Any)) for k, v in value.items()})
    if is_typeddict(tp) and isinstance(value, Mapping):
        hints = typing.get_type_hints(tp)
        return {k: _convert(v, hints.get(k, Any)) for k, v in value.items()}
    if origin in (list, set, frozenset) and args and isinstance(value, (list, tuple, set, frozenset)):
        return origin(_convert(v, args[0]) for v in value)
    if origin is tuple and args and isinstance(value, (list, tuple)):
        if args[-1] is Ellipsis:
            return tuple(_convert(v, args[0]) for v in value)
        return tuple(_convert(v, t) for v, t in zip(value, args, strict=False))
    if origin in (dict, Mapping, typing.Mapping) and len(args) == 2 and isinstance(value, Mapping):
        return {k: _convert(v, args[1]) for k, v in value.items()}
    return value


def _describe(value: Any) -> str:
    return f"got {type(value).__name__} {value!r:.60}"


def _check(value: Any, tp: Any, path: str) -> tuple[str, str] | None:
    if tp is Any or tp is object:
        return None
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin is typing.Annotated:
        return _check(value, args[0], path)
    if origin is Union or (hasattr(types, "UnionType") and isinstance(tp, types.UnionType)):
        if any(_check(value, arg, path) is None for arg in args):
            return None
        names = " | ".join(getattr(a, "__name__", repr(a)) for a in args)
        return (path, f"expected {names}, {_describe(value)}")
    if origin is Literal:
        return None if value in args else (path, f"expected one of {args!r}, {_describe(value)}")
    if tp is None or tp is type(None):
        return None if value is None else (path, f"expected None, {_describe(value)}")
    if is_typeddict(tp):
        return _check_typeddict(value, tp, path)
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        return _check_dataclass(value, tp, path)
    if origin in (list, set, frozenset, tuple) or tp in (list, set, frozenset, tuple):
        return _check_sequence(value, origin or tp, args, path)
    if origin in (dict, Mapping) or tp in (dict,) or origin is typing.Mapping:
        if not isinstance(value, Mapping):
            return (path, f"expected a mapping, {_describe(value)}")
        if len(args) == 2:
            for k, v in value.items():
                found = _check(v, args[1], f"{path}.{k}")
                if found:
                    return found
        return None
    return _check_scalar(value, tp, path)


def _check_scalar(value: Any, tp: Any, path: str) -> tuple[str, str] | None:
    if tp is bool:
        ok = isinstance(value, bool)
    elif tp is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif tp is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    elif tp in _SCALARS:
        ok = isinstance(value, tp)
    else:
        return None  # an annotation we do not check
    return None if ok else (path, f"expected {tp.__name__}, {_describe(value)}")


def _check_sequence(value: Any, kind: Any, args: tuple[Any, ...], path: str) -> tuple[str, str] | None:
    allowed = (list, tuple) if kind in (list, tuple) else (list, tuple, set, frozenset)
    if not isinstance(value, allowed):
        return (path, f"expected {kind.__name__}, {_describe(value)}")
    if kind is tuple and args and args[-1] is not Ellipsis:
        if len(value) != len(args):
            return (path, f"expected {len(args)} items, got {len(value)}")
        pairs = list(zip(value, args, strict=True))
    else:
        item_type = args[0] if args else Any
        pairs = [(item, item_type) for item in value]
    for i, (item, item_type) in enumerate(pairs):
        found = _check(item, item_type, f"{path}[{i}]")
        if found:
            return found
    return None


def _check_typeddict(value: Any, tp: Any, path: str) -> tuple[str, str] | None:
    if not isinstance(value, Mapping):
        return (path, f"expected a mapping ({tp.__name__}), {_describe(value)}")
    hints = typing.get_type_hints(tp)
    for key in sorted(tp.__required_keys__):
        if key not in value:
            return (f"{path}.{key}", "required field is missing")
    for key, item in value.items():
        if key not in hints:
            return (f"{path}.{key}", f"unknown field for {tp.__name__}")
        found = _check(item, hints[key], f"{path}.{key}")
        if found:
            return found
    return None


def _check_dataclass(value: Any, tp: Any, path: str) -> tuple[str, str] | None:
    if isinstance(value, tp):
        return None
    if not isinstance(value, Mapping):
        return (path, f"expected {tp.__name__} or a mapping, {_describe(value)}")
    hints = typing.get_type_hints(tp)
    fields = {f.name: f for f in dataclasses.fields(tp)}
    for key in value:
        if key not in fields:
            return (f"{path}.{key}", f"unknown field for {tp.__name__}")
    for name, f in fields.items():
        if name not in value:
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                return (f"{path}.{name}", "required field is missing")
            continue
        found = _check(value[name], hints.get(name, Any), f"{path}.{name}")
        if found:
            return found
    return None
