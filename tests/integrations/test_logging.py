"""Logging for "your own monitoring": the `flux` logger's records through an application's own
handler and formatter (what tests/engine/test_logger.py does not cover: structured output,
and which records carry which fields)."""

from __future__ import annotations

import io
import json
import logging
from typing import Any

from flux import FatalError, Flux, FluxEngine, WaitRequest, WorkflowContext, create_workflow

from .conftest import FAST, Records


class JsonLines(logging.Formatter):
    """A structured formatter as a log pipeline would use: the flux fields as JSON keys."""

    def format(self, record: logging.LogRecord) -> str:
        fields = {k: v for k, v in record.__dict__.items() if k.startswith("flux_")}
        return json.dumps(
            {"level": record.levelname, "logger": record.name, "msg": record.getMessage(), **fields}
        )


def _flaky(ctx: WorkflowContext[Any]) -> str:
    if ctx.attempt == 1:
        raise ConnectionError("blip")
    return "ok"


def _decline(ctx: WorkflowContext[Any]) -> None:
    raise FatalError("card declined")


def _wait(ctx: WorkflowContext[Any]) -> WaitRequest:
    return Flux.wait("approval")


def test_every_record_of_a_run_carries_its_workflow_and_run(flux_log: Records) -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonLines())
    logging.getLogger("flux").addHandler(handler)
    ok = create_workflow("order").step("payment", _flaky, retries=1)
    bad = create_workflow("order").step("charge", _decline)
    waits = create_workflow("order").step("approval", _wait)
    with FluxEngine(default_backoff=FAST) as engine:
        engine.execute_sync(ok, id="L-1")
        engine.execute_sync(bad, id="L-2")
        engine.execute_sync(waits, id="L-3")
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert lines == [
        {"level": "WARNING", "logger": "flux", "msg": "order/L-1/payment: attempt 1 failed: blip; retrying",
         "flux_workflow": "order", "flux_run": "L-1", "flux_step": "payment"},
        {"level": "INFO", "logger": "flux", "msg": "order/L-1: completed",
         "flux_workflow": "order", "flux_run": "L-1", "flux_step": None},
        {"level": "ERROR", "logger": "flux", "msg": "order/L-2/charge: step failed for good: card declined",
         "flux_workflow": "order", "flux_run": "L-2", "flux_step": "charge"},
        {"level": "INFO", "logger": "flux",
         "msg": "order/L-3/approval: suspended, waiting for signal 'approval'",
         "flux_workflow": "order", "flux_run": "L-3", "flux_step": "approval"},
    ]  # fmt: skip


def test_the_level_of_the_flux_logger_filters_what_the_engine_logs(flux_log: Records) -> None:
    logging.getLogger("flux").setLevel(logging.ERROR)
    with FluxEngine(default_backoff=FAST) as engine:
        engine.execute_sync(create_workflow("order").step("payment", _flaky, retries=1), id="L-4")
    assert flux_log.records == []


def test_a_failing_hook_is_logged_with_its_run_and_step(flux_log: Records) -> None:
    def hook(step: str, ctx: WorkflowContext[Any], result: Any) -> None:
        raise RuntimeError("metrics backend down")

    with FluxEngine(on={"step_complete": hook}) as engine:
        engine.execute_sync(create_workflow("order").step("payment", lambda ctx: 1), id="L-5")
    record = next(r for r in flux_log.records if "metrics backend down" in r.getMessage())
    assert (record.__dict__.get("flux_run"), record.__dict__.get("flux_step")) == ("L-5", "payment")
