"""The pure rules of the dashboard's actions (viewer.action_rules, viewer.csrf): tables of
(input) -> (answer), without a server."""

from __future__ import annotations

import time

import pytest

from flux.records import Lease, RunRecord, StepRecord
from flux.status import RunStatus as R
from flux.status import StepStatus as S
from viewer import action_rules as rules
from viewer.csrf import refusal, token_for
from viewer.timeline import action_text


def _run(status: R, *, started: int = 0, waiting: str | None = None, lease: float | None = None) -> RunRecord:
    steps = [StepRecord(n, "step") for n in ("a", "b", "c")]
    for s in steps[:started]:
        s.started_at, s.status = 1.0, S.COMPLETED
    run = RunRecord("r", "w", status, "{}", steps=steps, waiting_for=waiting)
    if lease is not None:
        run.lease = Lease("o", "h", 1, lease)
    return run


NOW = time.time()


@pytest.mark.parametrize(
    ("run", "retry", "resume", "cancel", "signal"),
    [
        (_run(R.FAILED, started=2), ["a", "b"], True, False, None),
        (_run(R.ROLLED_BACK, started=1), ["a"], True, False, None),
        (_run(R.COMPLETED, started=3), ["a", "b", "c"], False, False, None),
        (_run(R.CANCELLED, started=1), ["a"], False, False, None),
        (_run(R.SUSPENDED, started=1, waiting="ok"), ["a"], False, True, "ok"),
        (_run(R.PENDING), [], True, True, None),
        (_run(R.RUNNING, started=1, lease=NOW + 30), [], False, True, None),  # a live holder runs it
        (_run(R.RUNNING, started=1, lease=NOW - 30), ["a"], True, True, None),  # its holder is gone
    ],
)
def test_what_a_run_offers(
    run: RunRecord, retry: list[str], resume: bool, cancel: bool, signal: str | None
) -> None:
    acts = rules.run_actions(run, NOW)
    assert (acts.retry_steps, acts.resume, acts.cancel, acts.signal) == (retry, resume, cancel, signal)


def test_a_live_lease_of_a_holder_known_dead_does_not_hold_the_run() -> None:
    run = _run(R.RUNNING, started=1, lease=NOW + 30)
    assert rules.run_actions(run, NOW, holder_dead=True).resume


def test_a_run_that_offers_nothing_says_why() -> None:
    run = _run(R.FAILED)
    run.error_type = "CommitInterruptedError"  # retry_step is the way, but no step has run here
    acts = rules.run_actions(run, NOW)
    assert not acts.any and "failed" in acts.why_none


def test_forms_and_payloads() -> None:
    ct = "application/x-www-form-urlencoded; charset=utf-8"
    assert rules.parse_form(ct, b"a=1&b=&a=2&c=%7B%7D") == {"a": "1", "b": "", "c": "{}"}
    with pytest.raises(rules.FormError, match="x-www-form-urlencoded, not 'text/plain'"):
        rules.parse_form("text/plain", b"a=1")
    with pytest.raises(rules.FormError, match="not UTF-8"):
        rules.parse_form(ct, b"a=%ff\xff")
    assert rules.parse_payload("") is None
    assert rules.parse_payload(' {"x": [1, 2.5, null]} ') == {"x": [1, 2.5, None]}
    with pytest.raises(rules.FormError, match="field 'payload' is not valid JSON"):
        rules.parse_payload("{x")
    with pytest.raises(rules.FormError, match="field 'step' is required"):
        rules.text_field({}, "step")
    with pytest.raises(rules.FormError, match="'expected' must be a count"):
        rules.expected_count({"expected": "-1"})


def test_the_bulk_filter() -> None:
    flt = rules.BulkFilter.from_params({"status": "failed", "workflow": " w ", "q": "ORD"})
    assert (flt.status, flt.name, flt.q) == (R.FAILED, "w", "ORD")
    assert flt.statuses("retry") == [R.FAILED] and flt.statuses("cancel") == []
    assert set(rules.BulkFilter().statuses("retry") or []) == rules.RETRYABLE
    assert R.SUSPENDED in (rules.BulkFilter().statuses("cancel") or [])
    with pytest.raises(rules.FormError, match="field 'status': unknown status 'nope'"):
        rules.BulkFilter.from_params({"status": "nope"})
    assert rules.BulkFilter.from_params({"name": "w"}).name == "w"
    run = _run(R.FAILED)  # id "r", workflow "w"
    assert rules.bulk_eligible("retry", run, rules.BulkFilter(q="r"), {"w": object()})
    assert not rules.bulk_eligible("retry", run, rules.BulkFilter(q="R"), {"w": object()})
    assert not rules.bulk_eligible("retry", run, rules.BulkFilter(name="v"), {"w": object()})
    assert not rules.bulk_eligible("retry", run, rules.BulkFilter(), {})  # no definition
    assert not rules.bulk_eligible("cancel", run, rules.BulkFilter(), {"w": object()})  # finished


SECRET = b"s" * 32
ALLOWED = frozenset({"127.0.0.1", "localhost", "::1"})


def _headers(**extra: str) -> dict[str, str]:
    return {"host": "127.0.0.1:4280", "cookie": "flux_session=abc", **extra}


@pytest.mark.parametrize(
    ("headers", "token", "why"),
    [
        (_headers(origin="http://127.0.0.1:4280"), "ok", None),
        (_headers(origin="HTTP://127.0.0.1:4280"), "ok", None),
        (_headers(referer="http://127.0.0.1:4280/runs/x?y=1"), "ok", None),
        ({"host": "[::1]:4280", "cookie": "flux_session=abc", "origin": "http://[::1]:4280"}, "ok", None),
        (_headers(origin="http://127.0.0.1:4281"), "ok", "cross-origin"),
        (_headers(origin="https://127.0.0.1:4280"), "ok", "cross-origin"),
        (_headers(origin="http://evil.example"), "ok", "cross-origin"),
        (_headers(origin="null"), "ok", "cross-origin"),
        (_headers(referer="about:blank"), "ok", "cross-origin"),
        (_headers(), "ok", "neither an Origin nor a Referer"),
        ({"host": "127.0.0.1:4280", "origin": "http://127.0.0.1:4280"}, "ok", "no session cookie"),
        (_headers(origin="http://127.0.0.1:4280"), None, "carries no CSRF token"),
        (_headers(origin="http://127.0.0.1:4280"), "bad", "stale or wrong"),
    ],
)
def test_who_may_post(headers: dict[str, str], token: str | None, why: str | None) -> None:
    form = token_for(SECRET, "abc") if token == "ok" else token
    answer = refusal(headers, form, secret=SECRET, allowed=ALLOWED)
    assert answer is None if why is None else why in (answer or "")


def test_an_origin_on_a_host_not_allowed_is_refused_even_if_it_is_the_host() -> None:
    headers = {"host": "rebound.example", "cookie": "flux_session=abc", "origin": "http://rebound.example"}
    assert "cross-origin" in (
        refusal(headers, token_for(SECRET, "abc"), secret=SECRET, allowed=ALLOWED) or ""
    )


@pytest.mark.parametrize(
    ("event", "text"),
    [
        ({"action": "retry", "by": "dashboard", "stepName": "pay"}, "retried from pay by dashboard"),
        ({"action": "resume", "by": "cli"}, "resumed by cli"),
        ({"action": "cancel", "by": "cli", "reason": "asked"}, "cancelled by cli: asked"),
        ({"action": "signal", "by": "dashboard", "signal": "ok"}, "signal ok sent by dashboard"),
        ({"action": "frobnicate"}, "frobnicate by someone"),
        ({"action": 5, "by": ["x"]}, "5 by ['x']"),  # shown as text, as the viewer shows any value
    ],
)
def test_the_timeline_says_what_an_action_did(event: dict[str, object], text: str) -> None:
    assert action_text(event) == text
