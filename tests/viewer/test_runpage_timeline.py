"""The run page's timeline as the server draws it: a row for the run, labelled bars,
back-offs as segments of their own, round ticks, compressed idle time, marks on the
axis, attempts numbered per execution, a legend, undo in its own colour."""

from __future__ import annotations

import html
import re

from tests.viewer.conftest import Viewer
from tests.viewer.runpage_events import Run, retried_by_retry_step, saga_that_fails_to_undo


def _row(timeline: str, step: str) -> str:
    match = re.search(
        rf'<div class="trow step[^"]*"\s+data-step="{step}".*?(?=<div class="trow|\Z)', timeline, re.S
    )
    assert match, f"no row for {step}"
    return match.group(0)


def test_a_row_for_the_whole_run_comes_first(viewer: Viewer) -> None:
    viewer.write(retried_by_retry_step().events)
    timeline = viewer.text("/runs/INV-1/timeline")
    first_row = re.search(r'<div class="trow ([^"]*)"', timeline.split('class="trow axis', 1)[1])
    assert first_row and "run-row" in first_row.group(1)
    run_row = timeline[timeline.index("run-row") :].split('<div class="trow', 1)[0]
    assert "5.30 s" in run_row


def test_bars_carry_their_duration(viewer: Viewer) -> None:
    viewer.write(retried_by_retry_step().events)
    row = _row(viewer.text("/runs/INV-1/timeline"), "load")
    bar = re.search(r'<span class="bar outcome-ok[^>]*title="([^"]*)"', row)
    assert bar, row
    assert "20 ms" in html.unescape(bar.group(1))  # the tooltip always
    assert re.search(r'<span class="lbl[^"]*">20 ms</span>', row)  # and a label: beside a narrow bar


def test_back_offs_are_segments_of_their_own(viewer: Viewer) -> None:
    viewer.write(retried_by_retry_step().events)
    row = _row(viewer.text("/runs/INV-1/timeline"), "send")
    backoffs = re.findall(r'<span class="bar backoff[^"]*"[^>]*title="([^"]*)"', row)
    assert [html.unescape(t) for t in backoffs] == [
        "back-off before attempt 2: 50 ms",
        "back-off before attempt 3: 100 ms",
    ]


def test_axis_ticks_are_round(viewer: Viewer) -> None:
    viewer.write(retried_by_retry_step().events)
    timeline = viewer.text("/runs/INV-1/timeline")
    ticks = re.findall(r'<span class="tick"[^>]*>\+?([^<]*)</span>', timeline)
    assert ticks[:4] == ["0", "1 s", "2 s", "3 s"], ticks


def test_attempts_are_numbered_per_execution_and_the_resume_is_marked(viewer: Viewer) -> None:
    viewer.write(retried_by_retry_step().events)
    timeline = viewer.text("/runs/INV-1/timeline")
    row = _row(timeline, "send")
    attempts = re.findall(r'data-execution="(\d+)" data-attempt="(\d+)"', row)
    assert attempts == [("1", "1"), ("1", "2"), ("1", "3"), ("2", "1")]
    assert re.search(r'class="mark resume[^"]*"[^>]*title="[^"]*retry_step', timeline)
    assert "2nd run" in html.unescape(row) or "run 2" in html.unescape(row)


def test_signals_are_marked_on_the_axis(viewer: Viewer) -> None:
    r = Run("EXP-1", ("approve",))
    r.at(0).start().at(0).begin("approve").at(1).suspend("approve", "approval").at(900).signal(
        "approve", "approval"
    )
    viewer.write(r.events)
    assert re.search(
        r'class="mark signal[^"]*"[^>]*title="[^"]*approval', viewer.text("/runs/EXP-1/timeline")
    )


def test_undo_has_a_colour_of_its_own_and_a_legend_names_it(viewer: Viewer) -> None:
    viewer.write(saga_that_fails_to_undo().events)
    timeline = viewer.text("/runs/TRIP-9/timeline")
    assert re.search(r'class="bar undo outcome-ok', timeline)
    assert re.search(r'class="bar undo outcome-error', timeline)
    legend = timeline[timeline.index('class="legend"') :]
    for words in ("succeeded", "retried", "failed", "back-off", "waiting", "undo", "undo failed", "skipped"):
        assert words in legend, words


def test_compressing_idle_time_makes_short_steps_wide_next_to_an_hour_long_wait(viewer: Viewer) -> None:
    r = Run("LONG-1", ("a", "wait", "b"))
    r.at(0).start().at(0).begin("a").at(80).done("a", 80).at(80).begin("wait").at(81).suspend("wait", "go")
    r.at(3_600_081).signal("wait", "go").at(3_600_081).begin("b").at(3_600_181).done("b", 100).complete(
        3_600_181
    )
    viewer.write(r.events)

    def width(timeline: str, step: str) -> float:
        match = re.search(
            r'class="bar outcome-ok[^"]*"[^>]*style="left: [\d.]+%; width: ([\d.]+)%', _row(timeline, step)
        )
        assert match
        return float(match.group(1))

    real = viewer.text("/runs/LONG-1/timeline")
    compressed = viewer.text("/runs/LONG-1/timeline?idle=compress")
    assert width(real, "a") < 1 and width(compressed, "a") > 10
    assert 'class="axis-break"' in compressed and "1 h" in html.unescape(compressed)
    assert 'name="idle" value="compress" checked' in viewer.text("/runs/LONG-1?idle=compress")


def test_a_sub_millisecond_step_keeps_a_readable_label(viewer: Viewer) -> None:
    r = Run("FAST-1", ("tiny", "slow"))
    r.at(0).start().at(0).begin("tiny").at(0).done("tiny", 0.04).at(0).begin("slow").at(400).done("slow", 400)
    viewer.write(r.events)
    row = _row(viewer.text("/runs/FAST-1/timeline"), "tiny")
    assert re.search(r'<span class="lbl out[^"]*">0\.04 ms</span>', row), row


def test_a_long_run_draws_its_rows_in_chunks_as_they_are_scrolled_to(viewer: Viewer) -> None:
    names = tuple(f"s{i}" for i in range(1000))
    r = Run("LONG-2", names)
    r.at(0).start()
    for i, name in enumerate(names):
        r.at(i).begin(name).at(i + 1).done(name, 1)
    viewer.write(r.events)
    rows = re.compile(r'<div class="trow step[^"]*"\s+data-step="(s\d+)"')
    page = viewer.text("/runs/LONG-2")
    assert rows.findall(page) == [f"s{i}" for i in range(200)]
    assert 'hx-get="/runs/LONG-2/timeline?from=200"' in page and 'hx-trigger="revealed"' in page
    more = viewer.text("/runs/LONG-2/timeline?from=200")
    assert rows.findall(more) == [f"s{i}" for i in range(200, 450)]
    assert 'hx-get="/runs/LONG-2/timeline?from=450"' in more
    last = viewer.text("/runs/LONG-2/timeline?from=750")
    assert rows.findall(last)[-1] == "s999" and "more-rows" not in last
    # an update keeps the rows the page shows, and a selected step is always drawn
    assert len(rows.findall(viewer.text("/runs/LONG-2/timeline?rows=700"))) == 700
    assert "s850" in rows.findall(viewer.text("/runs/LONG-2?step=s850"))
