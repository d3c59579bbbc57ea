"""The documentation site: every page is in the navigation, and the pages the project promises exist."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"


def nav_pages() -> list[str]:
    text = (ROOT / "mkdocs.yml").read_text()
    nav = text[text.index("\nnav:\n") :]
    return re.findall(r":\s*([\w./-]+\.md)\s*$", nav, re.MULTILINE)


def test_every_page_is_in_the_navigation_and_every_entry_is_a_page() -> None:
    pages = sorted(str(p.relative_to(DOCS)) for p in DOCS.rglob("*.md"))
    assert sorted(nav_pages()) == pages


def test_the_promised_pages_exist() -> None:
    promised = [
        "getting-started.md",
        "concepts/steps-and-commits.md",
        "concepts/durability.md",
        "concepts/signals-and-time.md",
        "concepts/sagas.md",
        "concepts/branches.md",
        "concepts/versions.md",
        "guides/kafka.md",
        "guides/fastapi.md",
        "guides/serverless.md",
        "guides/workers-postgres.md",
        "guides/testing.md",
        "guides/opentelemetry.md",
        "guides/retention.md",
        "dashboard.md",
        "cli.md",
        "errors.md",
        "performance.md",
        "coming-from-gravito-flux.md",
        "reference/index.md",
    ]
    assert [page for page in promised if not (DOCS / page).is_file()] == []


def test_the_api_reference_is_generated_from_the_public_names() -> None:
    import flux

    reference = "".join(p.read_text() for p in (DOCS / "reference").glob("*.md"))
    documented = set(re.findall(r"^::: flux\.(\w+)$", reference, re.MULTILINE))
    errors = {name for name in flux.__all__ if name.endswith("Error")}  # ::: flux.errors documents them
    elsewhere = {"__version__", "TraceEvent", "OpenTelemetryTraceSink", "SQLiteStorage"}  # by module path
    public = set(flux.__all__) - errors - elsewhere
    assert sorted(public - documented) == []
