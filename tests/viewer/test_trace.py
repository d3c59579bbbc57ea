"""The pure trace reader: bytes in, run summaries out. No server, no files."""

from __future__ import annotations

import json

from tests.viewer.factory import RunWriter, completed_run, ndjson, saga_run
from viewer.lines import MALFORMED_KEPT, parse_line
from viewer.trace import TraceIndex


def feed_all(data: bytes, chunk: int | None = None) -> TraceIndex:
    index = TraceIndex()
    if chunk is None:
        index.feed(data)
    else:
        for i in range(0, len(data), chunk):
            index.feed(data[i : i + chunk])
    return index


def test_a_completed_run_is_folded_into_its_summary() -> None:
    index = feed_all(ndjson(completed_run("R1")))
    run = index.runs["R1"]
    assert (run.workflow, run.status, run.steps_done, run.steps_total) == ("order-process", "completed", 2, 2)
    assert run.events == 6
    assert run.duration is not None and run.ended_at is not None
    assert run.error is None
    assert index.workflows == {"order-process": 1}


def test_a_saga_run_ends_rolled_back_with_its_error() -> None:
    run = feed_all(ndjson(saga_run("S1"))).runs["S1"]
    assert run.status == "rolled_back"
    assert (run.error_type, run.error) == ("FatalError", "out of stock")
    # fetch, payment, auto (skipped) and approve finished; fulfill failed.
    assert (run.steps_done, run.steps_total) == (4, 5)


def test_status_follows_the_run_through_suspension_and_rollback() -> None:
    w = RunWriter("R", steps=(("ask", False), ("pay", False)))
    index = TraceIndex()
    seen = []
    for ev in [
        w.start(),
        w.step_start("ask"),
        w.suspend("ask", "approval"),
        w.signal("ask", "approval", {"ok": True}),
        w.step_start("pay"),
        w.step_error("pay", "declined"),
        w.rollback_start(),
        w.compensate("ask"),
        w.rollback_complete("rolled_back"),
    ]:
        index.feed(ndjson([ev]))
        run = index.runs["R"]
        seen.append((run.status, run.waiting_for))
    assert seen == [
        ("running", None),
        ("running", None),
        ("suspended", "approval"),
        ("running", None),
        ("running", None),
        ("running", None),  # Flux: the run fails only with workflow:error
        ("rolling_back", None),
        ("rolling_back", None),
        ("rolled_back", None),
    ]


def test_any_chunking_gives_the_same_index() -> None:
    data = ndjson(saga_run("A") + completed_run("B"))
    whole = feed_all(data)
    for size in (1, 7, 64, 1000):
        parts = feed_all(data, chunk=size)
        assert parts.lines == whole.lines
        assert {k: list(r.offsets) for k, r in parts.runs.items()} == {
            k: list(r.offsets) for k, r in whole.runs.items()
        }
        assert parts.runs["A"].status == "rolled_back"


def test_a_half_written_last_line_is_held_back_until_completed() -> None:
    first, second = (json.dumps(ev).encode() for ev in completed_run("R")[:2])
    index = TraceIndex()
    delta = index.feed(first + b"\n" + second[:20])
    assert delta.runs == {"R"} and index.runs["R"].events == 1
    assert index.pending == 20 and index.malformed_count == 0
    delta = index.feed(second[20:])
    assert not delta and index.runs["R"].events == 1  # still no newline
    delta = index.feed(b"\n")
    assert delta.runs == {"R"} and index.runs["R"].events == 2
    assert index.pending == 0 and index.malformed_count == 0


def test_malformed_lines_are_skipped_and_counted_with_line_numbers() -> None:
    good = ndjson(completed_run("R"))
    lines = good.splitlines(keepends=True)
    bad = [
        b"not json at all\n",
        b"[1, 2, 3]\n",
        b'{"type": "step:start"}\n',  # no workflowId
        b'{"workflowId": "R"}\n',  # no type
        b'{"workflowId": "R", "type": "step:start"} trailing\n',
        b'{"workflowId": "R", "type": "step:st\n',  # a torn line
    ]
    data = lines[0] + bad[0] + bad[1] + lines[1] + b"".join(bad[2:]) + b"".join(lines[2:])
    index = feed_all(data)
    assert index.malformed_count == 6
    assert [m.line for m in index.malformed] == [2, 3, 5, 6, 7, 8]
    assert "invalid JSON" in index.malformed[0].reason
    assert index.malformed[1].reason == "not a JSON object"
    assert index.malformed[2].reason == "no workflowId"
    assert index.malformed[3].reason == "no type"
    assert index.runs["R"].status == "completed" and index.runs["R"].events == 6


def test_blank_lines_and_crlf_endings_are_not_malformed() -> None:
    lines = ndjson(completed_run("R")).splitlines()
    data = b"\n".join(lines[:3]) + b"\n\n   \n" + b"\r\n".join(lines[3:]) + b"\r\n"
    index = feed_all(data)
    assert index.malformed_count == 0
    assert index.runs["R"].status == "completed"


def test_only_the_first_malformed_lines_are_remembered() -> None:
    index = feed_all(b"garbage\n" * (MALFORMED_KEPT + 50))
    assert index.malformed_count == MALFORMED_KEPT + 50
    assert len(index.malformed) == MALFORMED_KEPT


def test_gravito_lines_without_v_or_seq_are_read_in_file_order() -> None:
    w = RunWriter("G", "ts-flow", steps=(("a", False), ("b", False)), gravito=True)
    events = [w.start(), w.step_start("a"), w.retry("a", 1, "boom"), w.complete("a"), w.step_start("b")]
    events.append(w.step_error("b", "bad input"))
    assert all("v" not in ev and "seq" not in ev for ev in events)
    run = feed_all(ndjson(events)).runs["G"]
    # The TypeScript engine writes no workflow:error: a failed step ends the run.
    assert run.status == "failed" and run.error == "bad input"
    # Nor meta.steps: the total is the steps seen so far.
    assert (run.steps_done, run.steps_total) == (1, 2)


def test_unknown_keys_and_event_types_are_kept_but_not_folded() -> None:
    w = RunWriter("R")
    events = [w.start(), w.event("step:telemetry", cpu=0.5), w.event("workflow:start", extra={"x": 1})]
    index = feed_all(ndjson(events))
    run = index.runs["R"]
    assert run.events == 3 and run.status == "running" and index.malformed_count == 0


def test_a_late_line_with_a_lower_seq_does_not_roll_the_status_back() -> None:
    w = RunWriter("R", steps=(("ask", False),))
    start, step, suspend, signal, done = (
        w.start(),
        w.step_start("ask"),
        w.suspend("ask", "go"),
        w.signal("ask", "go"),
        w.finish(),
    )
    run = feed_all(ndjson([start, step, signal, done, suspend])).runs["R"]
    assert run.status == "completed" and run.waiting_for is None


def test_resume_clears_the_previous_failure() -> None:
    w = RunWriter("R")
    events = [w.start(), w.step_start("fetch"), w.step_error("fetch", "down"), w.fail("down")]
    index = feed_all(ndjson(events))
    assert index.runs["R"].status == "failed"
    index.feed(ndjson([w.resume("fetch"), w.step_start("fetch")]))
    run = index.runs["R"]
    assert run.status == "running" and run.error is None and run.ended_at is None


def test_offsets_point_at_each_line_even_with_multibyte_text() -> None:
    w = RunWriter("R", "commande-été")
    events = [w.start({"client": "Zoë ✓"}), w.step_start("fetch")]
    data = b"".join(json.dumps(ev, ensure_ascii=False).encode() + b"\n" for ev in events)
    index = feed_all(data, chunk=5)
    for offset, ev in zip(index.runs["R"].offsets, events, strict=True):
        line = data[offset:].split(b"\n", 1)[0]
        assert json.loads(line) == ev


def test_numeric_workflow_ids_are_read_as_strings() -> None:
    index = feed_all(b'{"workflowId": 42, "type": "workflow:start", "timestamp": 1}\n')
    assert list(index.runs) == ["42"]


def test_parse_line_reports_why() -> None:
    assert parse_line('{"workflowId": "a", "type": "x"}') == {"workflowId": "a", "type": "x"}
    assert parse_line("  {} ") == "no workflowId"
    assert isinstance(parse_line("{"), str)
    assert parse_line("[" * 100_000) != {}  # deep nesting is malformed, not a crash


def test_runs_are_ordered_by_start_then_position() -> None:
    index = feed_all(ndjson(completed_run("B", t0=2000.0) + completed_run("A", t0=1000.0)))
    newest = sorted(index.runs.values(), key=lambda r: r.sort_key, reverse=True)
    assert [r.id for r in newest] == ["B", "A"]


def test_a_run_first_seen_without_its_workflow_name_is_renamed_by_its_start() -> None:
    w = RunWriter("R", "orders")
    step = w.step_start("fetch")
    del step["workflowName"]
    index = feed_all(ndjson([step, w.start()]))
    assert index.runs["R"].workflow == "orders" and index.workflows == {"orders": 1}
