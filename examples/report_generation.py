"""Report generation: fetch sales rows, total them with Decimal, render CSV, notify.

    fetch ──▶ aggregate ──▶ render ──▶ notify

* ``fetch`` reads the month's sales of a region from a (simulated) warehouse database.
  An unknown region is a ``FatalError``.
* ``aggregate`` totals them per product with ``Decimal`` (no float rounding): the totals
  go into ``ctx.data`` and are stored with it (Decimal survives storage exactly).
* ``render`` writes ``sales-<region>-<month>.csv`` and a text summary into the report
  folder; rendering again overwrites the same files.
* ``notify`` posts the summary to the (simulated) team channel.

Run it from the repository root::

    python examples/report_generation.py

Reports go to ``$FLUX_REPORTS`` (default ``./.flux/reports/``); the trace to
``$FLUX_TRACE`` (default ``./.flux/trace.ndjson``).
"""

from __future__ import annotations

import asyncio
import csv
import json
import os
import sys
import uuid
from collections import defaultdict
from decimal import Decimal
from pathlib import Path
from typing import Any, TypedDict

try:
    import flux  # noqa: F401
except ModuleNotFoundError:  # a source checkout without `pip install -e .`
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from flux import (
    Backoff,
    FatalError,
    FluxConsoleLogger,
    FluxEngine,
    FluxResult,
    JsonFileTraceSink,
    WorkflowContext,
    create_workflow,
)

TRACE_PATH = os.environ.get("FLUX_TRACE", "./.flux/trace.ndjson")
REPORT_DIR = os.environ.get("FLUX_REPORTS", "./.flux/reports")

FAST = Backoff(initial=0.05, factor=2.0, jitter=0)


class ReportRequest(TypedDict):
    region: str
    month: str  # "2026-10"
    report_dir: str
    channel: str


# ---------------------------------------------------------------- simulated services


class SalesDatabase:
    """A fixed set of sales rows per region: the same answer every time."""

    PRODUCTS = (
        ("KB-42", "Keyboard", "49.90"),
        ("MOUSE-7", "Mouse", "19.99"),
        ("HUB-3", "USB hub", "24.50"),
        ("CAB-1", "Cable", "4.95"),
    )

    def __init__(self) -> None:
        self.queries = 0

    def fetch(self, region: str, month: str) -> list[dict[str, Any]]:
        self.queries += 1
        seeds = {"emea": 7, "apac": 3}
        if region not in seeds:
            raise FatalError(f"unknown region {region!r} (known: {', '.join(sorted(seeds))})")
        seed = seeds[region]
        rows = []
        for n in range(12):
            sku, _, price = self.PRODUCTS[(n * seed) % len(self.PRODUCTS)]
            rows.append(
                {
                    "order": f"{region.upper()}-{month}-{n + 1:03d}",
                    "sku": sku,
                    "quantity": 1 + (n * seed) % 5,
                    "unit_price": Decimal(price),
                }
            )
        return rows


class TeamChannel:
    def __init__(self) -> None:
        self.posts: list[tuple[str, str]] = []

    def post(self, channel: str, text: str) -> str:
        self.posts.append((channel, text))
        return f"post-{len(self.posts)}"


database = SalesDatabase()
team = TeamChannel()


def reset_services() -> None:
    global database, team
    database = SalesDatabase()
    team = TeamChannel()


# ---------------------------------------------------------------- the workflow


def fetch_rows(ctx: WorkflowContext[ReportRequest]) -> list[dict[str, Any]]:
    return database.fetch(ctx.input["region"], ctx.input["month"])


def aggregate(ctx: WorkflowContext[ReportRequest]) -> dict[str, Any]:
    rows: list[dict[str, Any]] = ctx.outputs["fetch"]
    per_product: dict[str, Decimal] = defaultdict(Decimal)
    units: dict[str, int] = defaultdict(int)
    for row in rows:
        per_product[row["sku"]] += row["unit_price"] * row["quantity"]
        units[row["sku"]] += row["quantity"]
    total = sum(per_product.values(), Decimal("0"))
    ctx.data["totals"] = {sku: per_product[sku] for sku in sorted(per_product)}
    ctx.data["units"] = {sku: units[sku] for sku in sorted(units)}
    ctx.data["grand_total"] = total
    return {"orders": len(rows), "products": len(per_product), "grand_total": total}


def render(ctx: WorkflowContext[ReportRequest]) -> dict[str, str]:
    req = ctx.input
    folder = Path(req["report_dir"])
    folder.mkdir(parents=True, exist_ok=True)
    stem = f"sales-{req['region']}-{req['month']}"
    totals: dict[str, Decimal] = ctx.data["totals"]
    units: dict[str, int] = ctx.data["units"]
    grand_total: Decimal = ctx.data["grand_total"]
    csv_path = folder / f"{stem}.csv"
    with csv_path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["sku", "units", "revenue"])
        for sku, revenue in totals.items():
            writer.writerow([sku, units[sku], f"{revenue:.2f}"])
        writer.writerow(["TOTAL", sum(units.values()), f"{grand_total:.2f}"])
    lines = [f"Sales report {req['region'].upper()} {req['month']}", ""]
    lines += [f"  {sku:<8} {units[sku]:>4} units  {revenue:>10.2f}" for sku, revenue in totals.items()]
    lines += ["", f"  {'TOTAL':<8} {sum(units.values()):>4} units  {grand_total:>10.2f}"]
    txt_path = folder / f"{stem}.txt"
    txt_path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return {"csv": str(csv_path), "summary": str(txt_path)}


def notify(ctx: WorkflowContext[ReportRequest]) -> dict[str, str]:
    req = ctx.input
    text = (
        f"Sales {req['region'].upper()} {req['month']}: {ctx.data['grand_total']:.2f} EUR "
        f"-> {ctx.outputs['render']['csv']}"
    )
    return {"post": team.post(req["channel"], text), "text": text}


report_flow = (
    create_workflow("report-generation", ReportRequest)
    .step("fetch", fetch_rows, retries=2, backoff=FAST)
    .step("aggregate", aggregate, retries=0)
    .step("render", render, retries=1, backoff=FAST)
    .step("notify", notify, retries=2, backoff=FAST)
)


# ---------------------------------------------------------------- the scenario


async def run(engine: FluxEngine, *, report_dir: str | os.PathLike[str] | None = None) -> list[FluxResult]:
    """Reports for two regions, and one for a region that does not exist (failed)."""
    reset_services()
    folder = str(report_dir if report_dir is not None else REPORT_DIR)
    tag = uuid.uuid4().hex[:6]
    results = []
    for region in ("emea", "apac", "atlantis"):
        request = ReportRequest(region=region, month="2026-10", report_dir=folder, channel="#sales")
        results.append(await engine.execute(report_flow, request, id=f"RPT-{region}-{tag}"))
    return results


# ---------------------------------------------------------------- running it


def _json(value: Any) -> str:
    return json.dumps(value, default=str, ensure_ascii=False)


def show(result: FluxResult) -> None:
    print(f"{result.name} {result.id}: {result.status.value}")
    for step in result.history:
        extra = f" ({step.attempts} attempts)" if step.attempts > 1 else ""
        print(f"  {step.name:<10} {step.status.value}{extra}")
    if result.error:
        print(f"  error:   {result.error_type} in '{result.failed_step}': {result.error}")
    if "grand_total" in result.data:
        print(f"  totals:  {_json(result.data['totals'])}")
        print(f"  grand total: {result.data['grand_total']}")
    if "render" in result.outputs:
        print(f"  report:  {result.outputs['render']['csv']}")
    if "notify" in result.outputs:
        print(f"  posted:  {result.outputs['notify']['text']}")


async def _main() -> None:
    engine = FluxEngine(
        trace=JsonFileTraceSink(TRACE_PATH, reset=False),
        logger=FluxConsoleLogger(),
    )
    try:
        for result in await run(engine):
            show(result)
    finally:
        await engine.close()
    print(f"trace: {TRACE_PATH}")


def main() -> None:
    asyncio.run(_main())


if __name__ == "__main__":
    main()
