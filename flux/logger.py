"""Loggers over the standard `logging` module (logger name `flux`)."""

from __future__ import annotations

import logging
import sys
from typing import Any, Protocol


class FluxLogger(Protocol):
    def debug(self, message: str, **extra: Any) -> None: ...
    def info(self, message: str, **extra: Any) -> None: ...
    def warn(self, message: str, **extra: Any) -> None: ...
    def error(self, message: str, **extra: Any) -> None: ...


class StdlibLogger:
    """Logs to `logging.getLogger(name)` with the run id and step in `extra`.

    Adds no handler: the application's logging configuration decides where lines go.
    """

    def __init__(self, name: str = "flux") -> None:
        self.logger = logging.getLogger(name)

    def _log(self, level: int, message: str, extra: dict[str, Any]) -> None:
        if self.logger.isEnabledFor(level):
            fields = {f"flux_{k}": v for k, v in extra.items()}
            where = "/".join(str(extra[k]) for k in ("workflow", "run", "step") if extra.get(k))
            self.logger.log(level, f"{where}: {message}" if where else message, extra=fields)

    def debug(self, message: str, **extra: Any) -> None:
        self._log(logging.DEBUG, message, extra)

    def info(self, message: str, **extra: Any) -> None:
        self._log(logging.INFO, message, extra)

    def warn(self, message: str, **extra: Any) -> None:
        self._log(logging.WARNING, message, extra)

    def error(self, message: str, **extra: Any) -> None:
        self._log(logging.ERROR, message, extra)


class _ConsoleFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        stamp = self.formatTime(record, "%H:%M:%S")
        text = f"{stamp} [flux] {record.levelname:<7} {record.getMessage()}"
        if record.exc_info:
            text += "\n" + self.formatException(record.exc_info)
        return text


class FluxConsoleLogger(StdlibLogger):
    """Readable lines on stderr: `12:00:01 [flux] INFO    order/ORD-1/payment: completed`."""

    def __init__(self, level: int = logging.INFO, stream: Any = None) -> None:
        super().__init__("flux")
        # Its own logger object (named "flux", not registered globally), so that two console
        # loggers never share a stream and the application's "flux" logger stays as it is.
        self.logger = logging.Logger("flux", level)
        handler = logging.StreamHandler(stream or sys.stderr)
        handler.setFormatter(_ConsoleFormatter())
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
