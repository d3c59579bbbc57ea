"""flux.sinks: several trace sinks at once, and redaction of sensitive keys."""

from __future__ import annotations

import copy
import json
import logging
from pathlib import Path
from typing import Any

import pytest

from flux import (
    FluxEngine,
    FluxError,
    FluxSilentLogger,
    JsonFileTraceSink,
    MemoryTraceSink,
    TraceEvent,
    WorkflowContext,
    create_workflow,
)
from flux.sinks import REDACTED, CompositeTraceSink, RedactingTraceSink

from .conftest import FAST, Records


def _signup(ctx: WorkflowContext[Any]) -> dict[str, Any]:
    ctx.data["user"] = {"email": ctx.input["email"], "Password": ctx.input["password"]}
    ctx.data["cards"] = [{"number": "4242", "CVC": "123"}]
    return {"token": "t-1", "profile": {"api_key": "k-1", "name": "Ada"}}


signup = create_workflow("signup").step("create", _signup)
SIGNUP_INPUT = {"email": "ada@example.com", "password": "hunter2", "nested": [{"PASSWORD": "x"}]}


class Broken:
    def __init__(self) -> None:
        self.calls = 0

    def emit(self, event: TraceEvent) -> None:
        self.calls += 1
        raise OSError("disk full")

    def close(self) -> None:
        raise OSError("cannot close")


def _engine(trace: Any) -> FluxEngine:
    return FluxEngine(trace=trace, logger=FluxSilentLogger(), default_backoff=FAST)


def test_every_sink_receives_every_event_as_its_own_copy() -> None:
    first, second = MemoryTraceSink(), MemoryTraceSink()
    with _engine(CompositeTraceSink(first, second)) as engine:
        engine.execute_sync(signup, SIGNUP_INPUT, id="U-1")
    assert [e["type"] for e in first.events] == [
        "workflow:start",
        "step:start",
        "step:complete",
        "workflow:complete",
    ]
    assert first.events == second.events
    assert all(a is not b for a, b in zip(first.events, second.events, strict=True))
    first.events[0]["workflowId"] = "changed by the first sink"
    assert second.events[0]["workflowId"] == "U-1"


def test_redacted_keys_are_masked_at_any_depth_in_input_data_and_output() -> None:
    memory = MemoryTraceSink()
    sink = CompositeTraceSink(memory, redact=("password", "cvc", "api_key"))
    with _engine(sink) as engine:
        engine.execute_sync(signup, SIGNUP_INPUT, id="U-2")
    by_type = {e["type"]: e for e in memory.events}
    assert by_type["workflow:start"]["input"] == {
        "email": "ada@example.com",
        "password": REDACTED,
        "nested": [{"PASSWORD": REDACTED}],
    }
    complete = by_type["step:complete"]
    assert complete["data"] == {
        "user": {"email": "ada@example.com", "Password": REDACTED},
        "cards": [{"number": "4242", "CVC": REDACTED}],
    }
    assert complete["output"] == {"token": "t-1", "profile": {"api_key": REDACTED, "name": "Ada"}}
    assert by_type["workflow:complete"]["data"]["user"]["Password"] == REDACTED
    assert "hunter2" not in json.dumps(memory.events)


def test_redaction_changes_neither_the_run_nor_the_event_passed_in() -> None:
    with _engine(CompositeTraceSink(MemoryTraceSink(), redact="password")) as engine:
        result = engine.execute_sync(signup, SIGNUP_INPUT, id="U-3")
        stored = engine.get_sync("U-3")
    assert result.input["password"] == stored.input["password"] == "hunter2"
    assert stored.data["user"]["Password"] == "hunter2"

    memory = MemoryTraceSink()
    sink = RedactingTraceSink(memory, redact=["password"])
    event: TraceEvent = {
        "type": "step:complete",
        "workflowId": "r",
        "workflowName": "w",
        "input": {"password": "a", "keep": [1, 2]},
        "data": [{"password": "b"}],
        "output": "plain",
        "meta": {"password": "not a payload: left alone"},
    }
    before = copy.deepcopy(event)
    sink.emit(event)
    assert event == before
    assert memory.events == [
        {
            **before,
            "input": {"password": REDACTED, "keep": [1, 2]},
            "data": [{"password": REDACTED}],
        }
    ]


def test_keys_are_matched_whole_and_the_mask_can_be_chosen() -> None:
    memory = MemoryTraceSink()
    sink = CompositeTraceSink(memory, redact=("token",), mask="***")
    sink.emit({"type": "x", "data": {"token": 1, "token_type": "bearer", "access_token": 2}})
    assert memory.events[0]["data"] == {"token": "***", "token_type": "bearer", "access_token": 2}


def test_the_file_sink_in_a_composite_writes_redacted_lines(tmp_path: Path) -> None:
    path = tmp_path / "trace.ndjson"
    sink = CompositeTraceSink(JsonFileTraceSink(path), MemoryTraceSink(), redact=("password",))
    with _engine(sink) as engine:
        engine.execute_sync(signup, SIGNUP_INPUT, id="U-4")
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert [e["type"] for e in lines][-1] == "workflow:complete"
    assert lines[0]["input"]["password"] == REDACTED
    assert "hunter2" not in path.read_text()


class Splicing(MemoryTraceSink):
    """A sink that takes the engine's pre-encoded values as they are (as JsonFileTraceSink does)."""

    def __init__(self) -> None:
        super().__init__()
        self.raw: list[dict[str, str]] = []

    def emit_raw(self, event: TraceEvent, raw: dict[str, str]) -> None:
        self.raw.append(raw)
        self.events.append(event)


def test_pre_encoded_values_reach_the_sinks_that_take_them_as_they_are() -> None:
    splicing, memory = Splicing(), MemoryTraceSink()
    with _engine(CompositeTraceSink(CompositeTraceSink(splicing), memory)) as engine:
        engine.execute_sync(signup, SIGNUP_INPUT, id="U-6")
    assert len(splicing.events) == len(memory.events) == 4
    assert json.loads(splicing.raw[0]["input"]) == SIGNUP_INPUT  # the JSON text, untouched
    assert "input" not in splicing.events[0]
    assert memory.events[0]["input"] == SIGNUP_INPUT  # decoded for a sink without emit_raw
    assert json.loads(splicing.raw[-1]["data"]) == memory.events[-1]["data"]


def test_with_redaction_every_sink_gets_decoded_redacted_values() -> None:
    splicing = Splicing()
    with _engine(CompositeTraceSink(splicing, redact="password")) as engine:
        engine.execute_sync(signup, SIGNUP_INPUT, id="U-7")
    assert splicing.raw == []
    assert splicing.events[0]["input"]["password"] == REDACTED


def test_a_failing_sink_on_the_fast_path_does_not_stop_the_others(flux_log: Records) -> None:
    class BrokenSplicing(Broken):
        def emit_raw(self, event: TraceEvent, raw: dict[str, str]) -> None:
            raise OSError("disk full")

    memory = MemoryTraceSink()
    with _engine(CompositeTraceSink(BrokenSplicing(), memory)) as engine:
        assert engine.execute_sync(signup, SIGNUP_INPUT, id="U-8").ok
    assert len(memory.events) == 4
    assert sum("disk full" in m for m in flux_log.messages(logging.ERROR)) == 4


def test_flush_writes_buffered_events_at_once(tmp_path: Path) -> None:
    path = tmp_path / "trace.ndjson"
    file_sink = JsonFileTraceSink(path)
    sink = CompositeTraceSink(MemoryTraceSink(), file_sink)
    try:
        file_sink.flush()  # the writer thread may not have started a wait yet
        sink.emit({"type": "workflow:start", "workflowId": "r"})
        sink.flush()
        assert json.loads(path.read_text())["workflowId"] == "r"
    finally:
        sink.close()


def test_a_failing_sink_is_logged_and_the_others_go_on(flux_log: Records) -> None:
    broken, memory = Broken(), MemoryTraceSink()
    with _engine(CompositeTraceSink(broken, memory)) as engine:
        result = engine.execute_sync(signup, SIGNUP_INPUT, id="U-5")
    assert result.ok
    assert broken.calls == len(memory.events) == 4
    failures = [r for r in flux_log.records if "failed in emit()" in r.getMessage()]
    assert len(failures) == 4
    assert all(r.levelno == logging.ERROR for r in failures)
    assert failures[0].exc_info is not None  # the first one with its traceback
    assert not any(r.exc_info for r in failures[1:])  # the others in one line each
    assert all("disk full" in r.getMessage() for r in failures)


def test_close_closes_every_sink_once_even_when_one_fails(flux_log: Records) -> None:
    closed: list[str] = []

    class Closing(MemoryTraceSink):
        def close(self) -> None:
            closed.append("closed")

    sink = CompositeTraceSink(Broken(), Closing())
    sink.close()
    sink.close()
    assert closed == ["closed"]
    assert any("failed in close()" in m for m in flux_log.messages(logging.ERROR))


def test_the_engine_closes_the_composite_and_its_sinks(tmp_path: Path) -> None:
    file_sink = JsonFileTraceSink(tmp_path / "trace.ndjson")
    engine = _engine(CompositeTraceSink(file_sink))
    engine.execute_sync(signup, SIGNUP_INPUT)
    engine.close_sync()
    lines = (tmp_path / "trace.ndjson").read_text().splitlines()
    assert json.loads(lines[-1])["type"] == "workflow:complete"
    file_sink.emit({"type": "after close"})  # a closed file sink drops events
    file_sink.flush()
    assert len((tmp_path / "trace.ndjson").read_text().splitlines()) == len(lines)


@pytest.mark.parametrize("redact", [("",), (None,), ("password", 3)])
def test_bad_redact_keys_are_refused(redact: Any) -> None:
    with pytest.raises(FluxError, match="redact"):
        CompositeTraceSink(MemoryTraceSink(), redact=redact)


def test_a_sink_without_emit_is_refused() -> None:
    with pytest.raises(FluxError, match="no emit"):
        CompositeTraceSink(MemoryTraceSink(), object())  # type: ignore[arg-type]
