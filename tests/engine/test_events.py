"""flux.events: the one trace vocabulary, and the helpers that build events."""

from __future__ import annotations

import json
import re
import traceback
from pathlib import Path
from typing import Any

import pytest

import flux
import flux.events
from flux import FatalError, Flux, FluxEngine, MemoryTraceSink, WorkflowContext, create_workflow
from flux.events import COMMON, FIELDS, PAYLOAD_KEYS, EventType, check, event, stack_of, timestamp_ms

ROOT = Path(flux.__file__).resolve().parent.parent

#: SPEC §6 (the `@gravito/flux` vocabulary), §9 (cancel), §10 (durable time), §12 (actions).
SPEC_TYPES = [
    "workflow:start",
    "workflow:resume",
    "step:start",
    "step:retry",
    "step:skipped",
    "step:complete",
    "step:error",
    "step:suspend",
    "signal:received",
    "workflow:rollback_start",
    "step:compensate",
    "step:compensate_error",
    "workflow:rollback_complete",
    "workflow:error",
    "workflow:complete",
    "workflow:cancel",
    "step:sleep",
    "step:wake",
    "signal:timeout",
    "workflow:action",
]

CAMEL = re.compile(r"^[a-z][a-zA-Z0-9]*$")


def test_event_types_are_the_specs_list() -> None:
    assert [member.value for member in EventType] == SPEC_TYPES


def test_every_member_is_documented() -> None:
    source = Path(flux.events.__file__).read_text(encoding="utf-8")
    for member in EventType:
        assert re.search(rf"#:.*\n(?:    #:.*\n)*    {member.name} = ", source), member.name


def test_every_type_has_fields_in_camel_case() -> None:
    assert set(FIELDS) == set(EventType)
    assert COMMON == ("v", "seq", "type", "timestamp", "workflowId", "workflowName")
    for kind, keys in FIELDS.items():
        assert all(CAMEL.match(key) for key in keys), kind
        assert not keys & set(COMMON), kind
    payloads = {key for keys in FIELDS.values() for key in keys} & {"input", "data", "output"}
    assert set(PAYLOAD_KEYS) == payloads  # what redaction masks is every value a run carries
    assert {"reason"} <= FIELDS[EventType.WORKFLOW_CANCEL]
    assert {"wakeAt"} <= FIELDS[EventType.STEP_SLEEP]
    assert {"action", "by"} <= FIELDS[EventType.WORKFLOW_ACTION]
    assert {"parentId", "parentStep"} <= FIELDS[EventType.WORKFLOW_START]
    for kind in (EventType.STEP_ERROR, EventType.STEP_RETRY, EventType.WORKFLOW_ERROR):
        assert {"error", "errorType", "stack"} <= FIELDS[kind]


def test_event_builds_a_plain_json_ready_dict() -> None:
    ev = event(
        EventType.STEP_START, run_id="R-1", name="order", seq=3, timestamp=1_700_000_000_123, stepName="pay"
    )
    assert ev == {
        "v": 1,
        "seq": 3,
        "type": "step:start",
        "timestamp": 1_700_000_000_123,
        "workflowId": "R-1",
        "workflowName": "order",
        "stepName": "pay",
    }
    assert type(ev["type"]) is str
    assert json.loads(json.dumps(ev)) == ev
    assert check(ev) == []


def test_check_names_the_keys_a_type_may_not_carry() -> None:
    ev = event(EventType.WORKFLOW_COMPLETE, run_id="R", name="n", seq=1, timestamp=1, status="completed")
    assert check({**ev, "wakeAt": 1, "zzz": 2}) == ["wakeAt", "zzz"]
    assert check({**ev, "type": "workflow:unknown"}) == ["type"]


def test_timestamp_ms_is_integer_epoch_milliseconds() -> None:
    assert timestamp_ms(1_700_000_000.1239) == 1_700_000_000_123
    assert type(timestamp_ms(1.0)) is int


def _user_code(depth: int) -> None:
    if depth == 0:
        raise ValueError("deep")
    _user_code(depth - 1)


def test_stack_of_lists_the_users_frames_innermost_last() -> None:
    with pytest.raises(ValueError, match="deep") as info:
        _user_code(2)
    stack = stack_of(info.value)
    expected = traceback.extract_tb(info.value.__traceback__)
    assert [(f["file"], f["line"], f["function"]) for f in stack] == [
        (fs.filename, fs.lineno, fs.name) for fs in expected
    ]
    assert stack[-1]["function"] == "_user_code" and stack[0]["function"].startswith("test_")
    assert json.loads(json.dumps(stack)) == stack


def test_stack_of_keeps_the_innermost_frames_up_to_the_limit() -> None:
    with pytest.raises(ValueError, match="deep") as info:
        _user_code(50)
    stack = stack_of(info.value)
    assert len(stack) == 20 and all(f["function"] == "_user_code" for f in stack)
    assert stack[-1]["line"] == _user_code.__code__.co_firstlineno + 2
    assert len(stack_of(info.value, limit=3)) == 3
    assert stack_of(info.value, limit=0) == []
    assert stack_of(ValueError("never raised")) == []


def test_stack_of_leaves_out_flux_s_own_frames() -> None:
    def handler(ctx: WorkflowContext[Any]) -> None:
        raise FatalError("declined")

    flow = create_workflow("stack").step("pay", handler)
    caught: list[BaseException] = []
    engine = FluxEngine(on={"step_error": lambda step, ctx, error: caught.append(error)})
    engine.execute_sync(flow, id="ST-1")
    [exc] = caught
    flux_dir = str(Path(flux.__file__).resolve().parent)
    raw = traceback.extract_tb(exc.__traceback__)
    assert any(fs.filename.startswith(flux_dir) for fs in raw)  # the engine called the handler
    stack = stack_of(exc)
    assert stack and all(not f["file"].startswith(flux_dir) for f in stack)
    assert stack[-1] == {"file": __file__, "line": handler.__code__.co_firstlineno + 1, "function": "handler"}


def test_every_event_the_engine_writes_is_in_the_vocabulary() -> None:
    sink = MemoryTraceSink()
    engine = FluxEngine(trace=sink, default_backoff=flux.Backoff(initial=0, jitter=0))

    def flaky(ctx: WorkflowContext[Any]) -> int:
        if ctx.attempt == 1:
            raise ConnectionError("blip")
        return 1

    def declined(ctx: WorkflowContext[Any]) -> None:
        raise FatalError("declined")

    def undo_fails(ctx: WorkflowContext[Any]) -> None:
        raise FatalError("cannot undo")

    engine.execute_sync(
        create_workflow("ok")
        .step("pay", flaky, retries=1)
        .step("skip", lambda ctx: 1, when=lambda ctx: False),
        id="ok-1",
    )
    engine.execute_sync(
        create_workflow("saga")
        .step("hold", lambda ctx: 1, compensate=lambda ctx: None)
        .step("lock", lambda ctx: 1, compensate=undo_fails, retries=0)
        .step("pay", declined),
        id="saga-1",
    )
    wait = create_workflow("wait").step("ask", lambda ctx: Flux.wait("go")).step("b", declined)
    engine.execute_sync(wait, id="wait-1")
    engine.signal_sync(wait, "wait-1", "go")
    engine.resume_sync(wait, "wait-1")
    assert sink.events
    for ev in sink.events:
        assert ev["v"] == 1 and EventType(ev["type"]), ev
        assert check(ev) == [], ev
        assert all(key in ev for key in COMMON), ev


def test_no_module_but_the_vocabulary_spells_an_event_type() -> None:
    """A type name written as a string literal in a second module is a bug waiting to happen."""
    #: Converted by the lead; this list is to be emptied.
    allowed: set[str] = set()
    literal = re.compile(r"""["'](?:workflow|step|signal):[a-z_]+["']""")
    offenders = []
    for folder in ("flux", "viewer"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            rel = path.relative_to(ROOT).as_posix()
            if rel == "flux/events.py" or rel in allowed:
                continue
            for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
                if literal.search(line):
                    offenders.append(f"{rel}:{number}: {line.strip()}")
    assert offenders == []
