"""flux.logger: the `flux` logger, the console logger and the silent one."""

from __future__ import annotations

import io
import logging
from collections.abc import Callable
from typing import Any

import pytest

from flux import (
    FatalError,
    FluxConsoleLogger,
    FluxEngine,
    FluxLogger,
    FluxSilentLogger,
    WorkflowContext,
    create_workflow,
)

EngineFactory = Callable[..., FluxEngine]


def _flaky_flow() -> Any:
    def flaky(ctx: WorkflowContext[Any]) -> str:
        if ctx.attempt == 1:
            raise ConnectionError("blip")
        return "ok"

    def declined(ctx: WorkflowContext[Any]) -> None:
        raise FatalError("card declined")

    return create_workflow("order").step("payment", flaky, retries=1).step("charge", declined)


def test_the_engine_logs_through_the_flux_logger_with_run_and_step(
    memory_engine: FluxEngine, caplog: pytest.LogCaptureFixture
) -> None:
    engine = FluxEngine(default_backoff=memory_engine.default_backoff)
    with caplog.at_level(logging.DEBUG, logger="flux"), engine:
        engine.execute_sync(_flaky_flow(), id="ORD-1")
    records = [r for r in caplog.records if r.name == "flux"]
    retry = next(r for r in records if "blip" in r.getMessage())
    assert retry.levelno == logging.WARNING
    fields = retry.__dict__
    assert (fields["flux_run"], fields["flux_step"], fields["flux_workflow"]) == (
        "ORD-1",
        "payment",
        "order",
    )
    assert "order/ORD-1/payment" in retry.getMessage()
    failure = next(r for r in records if "card declined" in r.getMessage())
    assert failure.levelno == logging.ERROR
    assert (failure.__dict__["flux_run"], failure.__dict__["flux_step"]) == ("ORD-1", "charge")


def test_the_engine_adds_no_handler_to_the_flux_logger() -> None:
    logger = logging.getLogger("flux")
    before = list(logger.handlers)
    with FluxEngine() as engine:
        engine.execute_sync(create_workflow("w").step("a", lambda ctx: 1))
    assert logger.handlers == before


def test_the_console_logger_names_workflow_run_and_step(memory_engine: FluxEngine) -> None:
    stream = io.StringIO()
    engine = FluxEngine(
        logger=FluxConsoleLogger(stream=stream), default_backoff=memory_engine.default_backoff
    )
    with engine:
        engine.execute_sync(_flaky_flow(), id="ORD-2")
    text = stream.getvalue()
    assert "[flux]" in text
    assert "order/ORD-2/payment" in text and "blip" in text
    assert "order/ORD-2/charge" in text and "card declined" in text
    assert all(line.split(" ")[0].count(":") == 2 for line in text.splitlines())  # HH:MM:SS first


def test_the_console_logger_level_filters_lines() -> None:
    stream = io.StringIO()
    logger = FluxConsoleLogger(level=logging.ERROR, stream=stream)
    logger.info("hidden", workflow="w", run="r")
    logger.warn("hidden too", workflow="w", run="r")
    logger.error("shown", workflow="w", run="r", step="s")
    assert stream.getvalue().count("\n") == 1
    assert "w/r/s: shown" in stream.getvalue()


def test_each_console_logger_writes_to_its_own_stream() -> None:
    first, second = io.StringIO(), io.StringIO()
    FluxConsoleLogger(stream=first).info("one", workflow="w")
    FluxConsoleLogger(stream=second).info("two", workflow="w")
    assert "one" in first.getvalue() and "two" not in first.getvalue()
    assert "two" in second.getvalue()


def test_the_silent_logger_prints_nothing(
    memory_engine: FluxEngine, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    engine = FluxEngine(logger=FluxSilentLogger(), default_backoff=memory_engine.default_backoff)
    with caplog.at_level(logging.DEBUG), engine:
        engine.execute_sync(_flaky_flow())
    assert [r for r in caplog.records if r.name.startswith("flux")] == []
    assert capsys.readouterr() == ("", "")


def test_a_custom_logger_receives_the_fields() -> None:
    lines: list[tuple[str, str, dict[str, Any]]] = []

    class Recorder:
        def debug(self, message: str, **extra: Any) -> None:
            lines.append(("debug", message, extra))

        def info(self, message: str, **extra: Any) -> None:
            lines.append(("info", message, extra))

        def warn(self, message: str, **extra: Any) -> None:
            lines.append(("warn", message, extra))

        def error(self, message: str, **extra: Any) -> None:
            lines.append(("error", message, extra))

    recorder: FluxLogger = Recorder()
    with FluxEngine(logger=recorder) as engine:
        engine.execute_sync(create_workflow("w").step("a", lambda ctx: 1), id="C-1")
    assert ("info", "completed", {"workflow": "w", "run": "C-1"}) in lines


#: Clears the screen and retitles the terminal if printed as it is; then a C1 CSI and a
#: right-to-left override.
EVIL = "\x1b[2J\x1b]0;pwn\x07\x9b31m\u202e"


def test_the_console_logger_prints_no_terminal_escape_from_a_run(memory_engine: FluxEngine) -> None:
    stream = io.StringIO()

    def bad(ctx: WorkflowContext[Any]) -> None:
        raise RuntimeError(f"boom {EVIL}\nsecond line")

    flow = create_workflow("evil").step("bad", bad, retries=1)
    engine = FluxEngine(
        logger=FluxConsoleLogger(stream=stream), default_backoff=memory_engine.default_backoff
    )
    with engine:
        assert engine.execute_sync(flow, id=f"run-{EVIL}").status == "failed"
    text = stream.getvalue()
    for char in ("\x1b", "\x07", "\x9b", "\u202e"):
        assert char not in text
    assert "evil/run-\\x1b[2J\\x1b]0;pwn\\x07\\x9b31m\\u202e/bad" in text
    assert "second line" in text


def test_the_console_formatter_shows_control_characters_as_escapes() -> None:
    record = logging.LogRecord("flux", logging.ERROR, __file__, 1, "a %s b\tc\rd", (EVIL,), None)
    line = logging.Formatter.format(logging.Formatter(), record)  # what a plain formatter would print
    assert "\x1b" in line
    from flux import FluxConsoleFormatter

    text = FluxConsoleFormatter().format(record)
    assert "a \\x1b[2J\\x1b]0;pwn\\x07\\x9b31m\\u202e b\tc\\rd" in text
