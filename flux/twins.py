"""The engine's blocking `_sync` methods, made from its coroutine methods by one mechanism.

`execute_sync = twin(execute)` gives a method with `execute`'s signature that runs the
coroutine on the engine's own loop thread (`flux.loop_thread`) and blocks until it ends,
from any number of threads at once. Inside a running event loop it refuses, naming the
coroutine to await instead.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
from collections.abc import Callable, Coroutine
from typing import Any, Concatenate, Generic, ParamSpec, TypeVar

from .errors import FluxError

P = ParamSpec("P")
T = TypeVar("T")


class Twinned:
    """What an object with twins provides: its loop thread and whether it is closed."""

    _closed: bool

    def _run_on_loop(self, make: Callable[[], Coroutine[Any, Any, T]]) -> T:  # pragma: no cover
        raise NotImplementedError


class twin(Generic[P, T]):
    """A blocking twin of the coroutine method `method`."""

    def __init__(self, method: Callable[Concatenate[Any, P], Coroutine[Any, Any, T]]) -> None:
        self.method = method
        self.name = f"{method.__name__}_sync"
        functools.update_wrapper(self, method)  # type: ignore[arg-type]

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    def __get__(self, obj: Any, owner: type | None = None) -> Callable[P, T]:
        if obj is None:
            return self  # type: ignore[return-value]
        method, name = self.method, self.name

        @functools.wraps(method)
        def blocking(*args: P.args, **kwargs: P.kwargs) -> T:
            try:
                asyncio.get_running_loop()
            except RuntimeError:
                pass
            else:
                raise FluxError(
                    f"FluxEngine.{name}() was called inside a running event loop; "
                    f"use `await engine.{method.__name__}(...)` there"
                )
            if obj._closed and method.__name__ != "close":
                raise FluxError("this FluxEngine is closed")
            return obj._run_on_loop(lambda: method(obj, *args, **kwargs))  # type: ignore[no-any-return]

        blocking.__name__ = name
        blocking.__qualname__ = f"{type(obj).__name__}.{name}"
        del blocking.__wrapped__
        blocking.__dict__["__signature__"] = self.signature
        return blocking

    @functools.cached_property
    def signature(self) -> inspect.Signature:
        """The coroutine method's signature without `self`: what the bound twin takes."""
        full = inspect.signature(self.method)
        return full.replace(parameters=list(full.parameters.values())[1:])
