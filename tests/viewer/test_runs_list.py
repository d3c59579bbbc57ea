"""The runs list through the TestClient: headline, failed step, chips, search, page sizes."""

from __future__ import annotations

import re

from tests.viewer.conftest import Viewer
from tests.viewer.factory import T0, RunWriter, completed_run, saga_run
from tests.viewer.test_headline import retried_to_death, rollback_failed
from viewer.query import PAGE_SIZES, RunsQuery, select
from viewer.summary import RunSummary
from viewer.templating import tokens


def rows(page: str) -> list[str]:
    return re.findall(r'<tr class="run" data-run-id="([^"]*)"', page)


def row(page: str, run_id: str) -> str:
    return page[page.index(f'data-run-id="{run_id}"') :].split("</tr>")[0]


def test_a_failed_run_shows_its_headline_and_failed_step(viewer: Viewer) -> None:
    viewer.write(retried_to_death() + rollback_failed() + completed_run("OK", t0=T0 + 9000))
    page = viewer.text("/")
    failed = row(page, "R")
    assert 'href="/runs/R?step=payment"' in failed and "attempt 3 of 3" in failed
    assert "payment failed (attempt 3 of 3): TimeoutError: gateway timeout" in failed
    assert 'class="retried"' in failed and "2 failed attempts retried" in failed
    trip = row(page, "T")
    assert "undone: flight" in trip and "failed to undo: hotel (RuntimeError)" in trip
    ok = row(page, "OK")
    assert "headline" not in ok and "retried" not in ok and "?step=" not in ok


def test_the_headline_follows_the_run_as_it_changes(viewer: Viewer) -> None:
    events = retried_to_death()
    viewer.write(events[:-2])
    assert "headline" not in row(viewer.text("/"), "R")
    viewer.append(events[-2:])
    assert "attempt 3 of 3" in row(viewer.text("/fragments/runs"), "R")


def test_status_chips_count_what_the_other_filters_let_through(viewer: Viewer) -> None:
    viewer.write(
        completed_run("A")
        + completed_run("B", "invoice", t0=T0 + 1000)
        + saga_run("C", t0=T0 + 2000)
        + retried_to_death()
    )
    page = viewer.text("/")
    chips = page[page.index('id="status-chips"') :].split("</nav>")[0]
    assert re.search(r'data-chip=""[^>]*>all <b>4</b>', chips)
    assert re.search(r'data-chip="completed"[^>]*>completed <b>2</b>', chips)
    assert re.search(r'data-chip="rolled_back"[^>]*>rolled back <b>1</b>', chips)
    assert 'data-chip="suspended"' not in chips  # no run: no chip
    narrowed = viewer.text("/?workflow=invoice&status=failed")
    chips = narrowed[narrowed.index('id="status-chips"') :].split("</nav>")[0]
    assert re.search(r'data-chip=""[^>]*>all <b>1</b>', chips)
    assert re.search(r'class="chip status-failed on" data-chip="failed"[^>]*>failed <b>0</b>', chips)
    assert "No run matches" in narrowed


def test_search_reads_ids_workflows_errors_and_values_not_keys(viewer: Viewer) -> None:
    w = RunWriter("IN-1", "billing")
    start = w.start({"customer": "Grace Hopper", "note": "x\x00\u2028"})
    viewer.write([start, w.finish({"total": "99.80"}), *saga_run("ORD-1", t0=T0 + 1000)])
    assert rows(viewer.text("/?q=GRACE")) == ["IN-1"]
    assert rows(viewer.text("/?q=99.80")) == ["IN-1"]
    assert rows(viewer.text("/?q=out%20of%20stock")) == ["ORD-1"]
    assert rows(viewer.text("/?q=fatalerror")) == ["ORD-1"]
    assert rows(viewer.text("/?q=billing")) == ["IN-1"]
    assert rows(viewer.text("/?q=ord-")) == ["ORD-1"]
    for key in ("workflowName", "timestamp", "workflowId"):
        assert rows(viewer.text(f"/?q={key}")) == [], key
    assert rows(viewer.text("/?q=customer")) == ["IN-1"]  # a key of the input is part of its value


def test_page_sizes_are_offered_and_clamped(viewer: Viewer) -> None:
    events = []
    for i in range(60):
        events += completed_run(f"R{i:04d}", t0=T0 + i * 1000)[:1]
    viewer.write(events)
    page = viewer.text("/?per_page=25&page=2")
    assert len(rows(page)) == 25 and rows(page)[0] == "R0034" and "page 2 of 3" in page
    assert '<option value="25" selected>' in page
    assert "per_page=25" in page[page.index('id="pager"') :]
    assert RunsQuery.from_params({"per_page": "1"}).per_page == PAGE_SIZES[0]
    assert RunsQuery.from_params({"per_page": "9" * 5000}).per_page == PAGE_SIZES[-1]
    assert RunsQuery.from_params({"page": "9" * 5000}).page > 1
    assert len(rows(viewer.text("/?page=" + "9" * 5000))) == 60


def test_the_pager_links_do_not_inherit_the_page_state(viewer: Viewer) -> None:
    # htmx adds the inherited hx-include's values after the link's own, and the
    # last value wins: the old pager sent page=2&page=1.
    events = []
    for i in range(130):
        events += completed_run(f"R{i:04d}", t0=T0 + i * 1000)[:1]
    viewer.write(events)
    pager = viewer.text("/")
    pager = pager[pager.index('id="pager"') :].split("</nav>")[0]
    assert 'hx-get="/fragments/runs?page=2" hx-include="#filters"' in pager
    assert rows(viewer.text("/fragments/runs?page=2&workflow=&status=&q="))[0] == "R0029"


def test_ids_wrap_only_between_tokens() -> None:
    assert tokens("order-process/2026_01:x") == ["order-", "process/", "2026_", "01:", "x"]
    assert tokens("plain") == ["plain"] and tokens("") == []


def test_hostile_ids_and_names_stay_text_in_the_tokens(viewer: Viewer) -> None:
    w = RunWriter("<script>-a/b", "<img src=x onerror=alert(1)>")
    viewer.write([w.start(), w.fail("<script>", "<b>")])
    page = viewer.text("/")
    assert "<script>" not in page and "&lt;script&gt;-<wbr>a/<wbr>b" in page


def test_typing_narrows_the_search_without_reading_every_run_again(viewer: Viewer) -> None:
    events = []
    for i in range(20):
        w = RunWriter(f"R{i:02d}", "billing", t0=T0 + i * 1000)
        events += [w.start({"customer": "grace" if i % 5 == 0 else "alan"}), w.finish({})]
    viewer.write(events)
    viewer.text("/")  # the store syncs
    store = viewer.client.app.state.store
    order = viewer.client.app.state.order
    read: list[str] = []

    def values(run: RunSummary) -> tuple[bytes | None, bytes | None]:
        read.append(run.id)
        with store.value_lines() as real:
            return real(run)

    def search(q: str) -> list[str]:
        read.clear()
        return [r.id for r in select(order, store.index, RunsQuery(q=q), values=values).rows]

    assert search("gr") == ["R15", "R10", "R05", "R00"] and len(read) == 20
    assert search("grace") == ["R15", "R10", "R05", "R00"] and sorted(read) == ["R00", "R05", "R10", "R15"]
    assert search("grace") == ["R15", "R10", "R05", "R00"] and read == []
    w = RunWriter("R99", "billing", t0=T0 + 99_000)
    viewer.append([w.start({"customer": "grace hopper"})])
    viewer.text("/")  # the store syncs
    assert search("grace")[0] == "R99" and read == ["R99"]
    assert len(search("a")) == 21  # wider again: everything is read


def test_a_sleeping_run_and_a_wait_with_a_timeout_say_until_when(viewer: Viewer) -> None:
    from flux.events import EventType as E

    nap = RunWriter("NAP", "trial", (("welcome", False), ("trial", False)))
    wait = RunWriter("ASK", "approval", (("ask", False),), t0=T0 + 5000)
    woken = RunWriter("UP", "trial", (("trial", False),), t0=T0 + 9000)
    viewer.write(
        [
            nap.start({}),
            nap.event(E.STEP_START.value, stepName="trial", stepIndex=1, attempt=1),
            nap.event(E.STEP_SLEEP.value, stepName="trial", stepIndex=1, wakeAt=T0 + 86_400_000),
            wait.start({}),
            wait.event(
                E.STEP_SUSPEND.value, stepName="ask", stepIndex=0, signal="approval", wakeAt=T0 + 3_600_000
            ),
            woken.start({}),
            woken.event(E.STEP_SLEEP.value, stepName="trial", stepIndex=0, wakeAt=T0 + 9100),
            woken.event(E.STEP_WAKE.value, stepName="trial", stepIndex=0),
        ]
    )
    page = viewer.text("/")
    assert "asleep until" in row(page, "NAP") and f'data-ms="{T0 + 86_400_000:.0f}"' in row(page, "NAP")
    asking = row(page, "ASK")
    assert "for approval" in asking and "times out <time" in asking
    assert "until" not in row(page, "UP")
