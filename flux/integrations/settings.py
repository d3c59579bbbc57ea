"""`FluxSettings`: how an application builds its one engine, from code or from `FLUX_*`
environment variables.

| variable               | field              | example                          |
|------------------------|--------------------|----------------------------------|
| `FLUX_STORAGE`         | storage            | `sqlite:////var/lib/app/flux.db` |
| `FLUX_TRACE`           | trace_path         | `./.flux/trace.ndjson`           |
| `FLUX_TRACE_RESET`     | trace_reset        | `0` / `1`                        |
| `FLUX_DEFAULT_RETRIES` | default_retries    | `3`                              |
| `FLUX_DEFAULT_TIMEOUT` | default_timeout    | `30` (seconds; empty: none)      |
| `FLUX_RECOVER`         | recover_on_startup | `0` / `1`                        |
| `FLUX_REDACT`          | redact             | `password,card_number`           |
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from ..engine import FluxEngine
from ..errors import FluxError
from ..logger import FluxLogger
from ..trace import FluxTraceSink

__all__ = ["FluxSettings"]

_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off", ""})


@dataclass(frozen=True)
class FluxSettings:
    """The engine's configuration. `create_engine()` builds the engine it describes."""

    #: A storage URL: `memory://`, `sqlite:///relative.db`, `sqlite:////abs.db`, `postgresql://...`.
    storage: str = "memory://"
    #: Where the NDJSON trace goes (for `flux dev`); None writes no trace file.
    trace_path: str | None = None
    #: Empty the trace file when the engine starts. Off by default: several workers of one
    #: application append to one file, and a restart should not wipe the others' events.
    trace_reset: bool = False
    default_retries: int = 3
    default_timeout: float | None = None
    #: Finish the runs a dead process left running when the application starts.
    recover_on_startup: bool = True
    #: Recover in a background task instead of before the application takes requests (for
    #: runs whose steps take long: a start-up that waits for them may fail a health check).
    recover_in_background: bool = False
    #: Keys masked in the input, data and output of every trace event (see `flux.sinks`).
    redact: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not isinstance(self.storage, str) or not self.storage:
            raise FluxError(f"FluxSettings(storage={self.storage!r}): must be a storage URL")
        redact: Any = self.redact  # a bare string or a list are accepted as well
        object.__setattr__(self, "redact", (redact,) if isinstance(redact, str) else tuple(redact))

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **defaults: Any) -> FluxSettings:
        """Settings from `FLUX_*` variables (see the module's table); `defaults` (fields of
        this class) apply where a variable is not set."""
        env = os.environ if environ is None else environ
        values = dict(defaults)
        if "FLUX_STORAGE" in env:
            values["storage"] = env["FLUX_STORAGE"]
        if "FLUX_TRACE" in env:
            values["trace_path"] = env["FLUX_TRACE"] or None
        if "FLUX_TRACE_RESET" in env:
            values["trace_reset"] = _flag(env, "FLUX_TRACE_RESET")
        if "FLUX_DEFAULT_RETRIES" in env:
            values["default_retries"] = _number(env, "FLUX_DEFAULT_RETRIES", int)
        if "FLUX_DEFAULT_TIMEOUT" in env:
            values["default_timeout"] = (
                _number(env, "FLUX_DEFAULT_TIMEOUT", float) if env["FLUX_DEFAULT_TIMEOUT"].strip() else None
            )
        if "FLUX_RECOVER" in env:
            values["recover_on_startup"] = _flag(env, "FLUX_RECOVER")
        if "FLUX_REDACT" in env:
            values["redact"] = tuple(k.strip() for k in env["FLUX_REDACT"].split(",") if k.strip())
        return cls.create(**values)

    @classmethod
    def create(cls, **fields: Any) -> FluxSettings:
        """Like the constructor, with a `FluxError` naming the known fields for an unknown one."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(fields) - known)
        if unknown:
            names = ", ".join(sorted(known))
            raise FluxError(f"FluxSettings: unknown setting {unknown[0]!r} (known: {names})")
        return cls(**fields)

    def replace(self, **fields: Any) -> FluxSettings:
        return self.create(**{**{f.name: getattr(self, f.name) for f in dataclasses.fields(self)}, **fields})

    def create_engine(
        self,
        *,
        trace: FluxTraceSink | Iterable[FluxTraceSink] | None = None,
        logger: FluxLogger | None = None,
        on: Mapping[str, Callable[..., Any]] | None = None,
        **options: Any,
    ) -> FluxEngine:
        """The engine these settings describe. `trace` adds sinks (an OpenTelemetry sink, say)
        next to the trace file; `options` go to `FluxEngine` as they are."""
        sinks: list[FluxTraceSink] = []
        if self.trace_path:
            from ..trace import JsonFileTraceSink

            sinks.append(JsonFileTraceSink(self.trace_path, reset=self.trace_reset))
        if isinstance(trace, FluxTraceSink):
            sinks.append(trace)
        elif trace is not None:
            sinks.extend(trace)
        sink: FluxTraceSink | None = None
        if len(sinks) == 1 and not self.redact:
            sink = sinks[0]
        elif sinks:
            from ..sinks import CompositeTraceSink

            sink = CompositeTraceSink(*sinks, redact=self.redact)
        try:
            return FluxEngine(
                self.storage,
                default_retries=self.default_retries,
                default_timeout=self.default_timeout,
                logger=logger,
                trace=sink,
                on=on,
                **options,
            )
        except BaseException:
            if sink is not None:
                sink.close()
            raise


def _flag(env: Mapping[str, str], name: str) -> bool:
    value = env[name].strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise FluxError(f"{name}={env[name]!r}: use 1/0, true/false, yes/no or on/off")


def _number(env: Mapping[str, str], name: str, kind: type[int] | type[float]) -> Any:
    try:
        return kind(env[name].strip())
    except ValueError:
        raise FluxError(f"{name}={env[name]!r}: must be a number ({kind.__name__})") from None
