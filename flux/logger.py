"""Loggers over the standard `logging` module (logger name `flux`)."""

from __future__ import annotations

import logging
import sys
import traceback
from typing import Any, Protocol

from .text import printable


class FluxLogger(Protocol):
    """What the engine logs through. `extra` holds `workflow`, `run` and `step` where they
    apply, and `exc` (an exception) for a failure whose traceback is worth keeping."""

    def debug(self, message: str, **extra: Any) -> None: ...
    def info(self, message: str, **extra: Any) -> None: ...
    def warn(self, message: str, **extra: Any) -> None: ...
    def error(self, message: str, **extra: Any) -> None: ...


class StdlibLogger:
    """Logs to `logging.getLogger(name)` with `flux_workflow`, `flux_run` and `flux_step` in
    every record (None where they do not apply), and `workflow/run/step:` in the message.

    Adds no handler: the application's logging configuration decides where lines go.
    """

    def __init__(self, name: str = "flux") -> None:
        self.logger = logging.getLogger(name)

    def _log(self, level: int, message: str, extra: dict[str, Any]) -> None:
        if self.logger.isEnabledFor(level):
            exc = extra.pop("exc", None)
            fields = {"flux_workflow": None, "flux_run": None, "flux_step": None}
            fields.update({f"flux_{k}": v for k, v in extra.items()})
            where = "/".join(str(extra[k]) for k in ("workflow", "run", "step") if extra.get(k))
            text = f"{where}: {message}" if where else message
            exc_info = (type(exc), exc, exc.__traceback__) if isinstance(exc, BaseException) else None
            self.logger.log(level, text, extra=fields, exc_info=exc_info)

    def debug(self, message: str, **extra: Any) -> None:
        self._log(logging.DEBUG, message, extra)

    def info(self, message: str, **extra: Any) -> None:
        self._log(logging.INFO, message, extra)

    def warn(self, message: str, **extra: Any) -> None:
        self._log(logging.WARNING, message, extra)

    def error(self, message: str, **extra: Any) -> None:
        self._log(logging.ERROR, message, extra)


class FluxConsoleFormatter(logging.Formatter):
    """`12:00:01 [flux] WARNING order/ORD-1/payment: attempt 1 failed: ...`, for a logging
    configuration of your own (`dictConfig`: `{"()": "flux.FluxConsoleFormatter"}`)."""

    def format(self, record: logging.LogRecord) -> str:
        stamp = self.formatTime(record, "%H:%M:%S")
        # Run ids and errors are whatever handlers put there: a terminal escape in them is
        # shown as `\x1b`, never sent to the terminal.
        text = f"{stamp} [flux] {record.levelname:<7} {printable(record.getMessage(), multiline=True)}"
        if record.exc_info and record.exc_info[2] is not None:
            # One line of where it was raised: the console stays readable; the record keeps
            # the whole traceback for the application's own handlers.
            frame = traceback.extract_tb(record.exc_info[2])[-1]
            text += "\n    " + printable(f"raised at {frame.filename}:{frame.lineno} in {frame.name}")
        return text


class FluxConsoleLogger(StdlibLogger):
    """Readable lines on stderr: `12:00:01 [flux] INFO    order/ORD-1/payment: completed`."""

    def __init__(self, level: int = logging.INFO, stream: Any = None) -> None:
        super().__init__("flux")
        # Its own logger object (named "flux", not registered globally), so that two console
        # loggers never share a stream and the application's "flux" logger stays as it is.
        self.logger = logging.Logger("flux", level)
        handler = logging.StreamHandler(stream or sys.stderr)
        handler.setFormatter(FluxConsoleFormatter())
        self.logger.addHandler(handler)


class FluxSilentLogger:
    """Logs nothing."""

    def debug(self, message: str, **extra: Any) -> None:
        return None

    def info(self, message: str, **extra: Any) -> None:
        return None

    def warn(self, message: str, **extra: Any) -> None:
        return None

    def error(self, message: str, **extra: Any) -> None:
        return None
