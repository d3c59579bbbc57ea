"""Numbers no float holds, in every value position of every event: no page answers 500.

A trace is written by anything on the machine; an integer of 400 digits or one of
5,000 (past Python's int-to-text limit) must be skipped or clamped, never raise.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.viewer.conftest import Viewer
from tests.viewer.factory import saga_run

HUGE = 10**400
RUN_PAGES = ["", "/header", "/timeline", "/timeline?upto=5&live=0", "/step?step=payment"]
RUN_PAGES += ["/step?step=approve", "/step?step=fulfill"]


def positions() -> list[tuple[int, str]]:
    """Every (event, key) of the saga run but the id and the type."""
    out = []
    for i, ev in enumerate(saga_run("ORD-1")):
        for key in ev:
            if key not in ("workflowId", "type"):
                out.append((i, key))
    return out


def get_all(viewer: Viewer, run_ids: list[str]) -> None:
    for url in ["/", "/fragments/runs", "/?q=9", "/?per_page=500"]:
        response = viewer.client.get(url)
        assert response.status_code == 200, (url, response.text[-2000:])
    for run_id in run_ids:
        for suffix in RUN_PAGES:
            url = f"/runs/{run_id}{suffix}"
            response = viewer.client.get(url)
            assert response.status_code == 200, (url, response.text[-2000:])


@pytest.mark.parametrize("sign", [1, -1])
def test_an_integer_past_float_range_in_any_field(viewer: Viewer, sign: int) -> None:
    # A run per position, so that a failure names the one that failed.
    events: list[dict[str, Any]] = []
    ids = []
    for i, key in positions():
        run_id = f"R{i}-{key}"
        run = saga_run(run_id)
        run[i][key] = sign * HUGE
        events += run
        ids.append(run_id)
    viewer.write(events)
    get_all(viewer, ids)


@pytest.mark.parametrize("value", ["HUGE_IN_LIST", "HUGE_IN_DICT", "1e999", "-1e999"])
def test_huge_values_inside_input_output_and_data(viewer: Viewer, value: str) -> None:
    lines = []
    for ev in saga_run("ORD-1"):
        for key in ("input", "output", "data", "meta", "error", "stack"):
            if key in ev or key == "stack":
                ev[key] = {"x": [value], "y": {"z": value}}
        text = json.dumps(ev)
        text = text.replace('"HUGE_IN_LIST"', str(HUGE)).replace('"HUGE_IN_DICT"', str(-HUGE))
        text = text.replace('"1e999"', "1e999").replace('"-1e999"', "-1e999")
        lines.append(text)
    viewer.trace.parent.mkdir(parents=True, exist_ok=True)
    viewer.trace.write_text("\n".join(lines) + "\n")
    get_all(viewer, ["ORD-1"])


def test_a_5000_digit_integer_is_a_counted_malformed_line(viewer: Viewer) -> None:
    events = saga_run("ORD-1")
    viewer.write(events)
    digits = "7" * 5000
    for key in ("timestamp", "seq", "duration", "attempt", "stepIndex", "maxRetries"):
        viewer.append(
            f'{{"v":1,"seq":99,"type":"step:start","workflowId":"ORD-1","stepName":"fetch","{key}":{digits}}}\n'.encode()
        )
    get_all(viewer, ["ORD-1"])
    page = viewer.text("/")
    assert "6 malformed lines skipped" in page
