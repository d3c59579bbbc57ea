"""examples/thumbnails_map.py: a map over an album's images, on a real SQLite file.

The album that completes has its thumbnails as the map's output, in item order, with one
item retried and never more than ``max_concurrency`` (4) rendering at once; the album
with a truncated image is rolled back, the thumbnails already made deleted, latest first.
Every item's events carry ``group`` and ``item``.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from types import ModuleType

from flux import FluxEngine, FluxResult, FluxSilentLogger, MemoryTraceSink, TraceEvent

from .test_examples import events_of, load, run_script, statuses, steps


def run_on_sqlite(tmp_path: Path) -> tuple[ModuleType, list[FluxResult], list[TraceEvent], list[FluxResult]]:
    mod = load("thumbnails_map")
    sink = MemoryTraceSink()
    url = f"sqlite:///{tmp_path / 'flux.db'}"

    async def go() -> tuple[list[FluxResult], list[FluxResult]]:
        engine = FluxEngine(storage=url, trace=sink, logger=FluxSilentLogger())
        try:
            results: list[FluxResult] = await mod.run(engine)
        finally:
            await engine.close()
        reader = FluxEngine(storage=url, logger=FluxSilentLogger())  # what another process reads
        try:
            stored = [await reader.get(r.id) for r in results]
        finally:
            await reader.close()
        return results, [s for s in stored if s is not None]

    results, stored = asyncio.run(go())
    return mod, results, sink.events, stored


def test_thumbnails_map_completes_in_item_order(tmp_path: Path) -> None:
    mod, results, events, stored = run_on_sqlite(tmp_path)
    assert statuses(results) == ["completed", "rolled_back"]
    assert statuses(stored) == statuses(results)
    done = results[0]

    thumbs = done.outputs["thumbnails"]
    names = [image["name"] for image in mod.HOLIDAY]
    assert [t["image"] for t in thumbs] == names  # item order, whatever order they ended in
    assert [t["index"] for t in thumbs] == list(range(8))
    assert thumbs[0] == {
        "image": "IMG_0001.jpg",
        "index": 0,
        "thumbnail": f"thumbs/{done.id}/IMG_0001-160.webp",
        "size": [160, 120],
    }
    assert all(max(t["size"]) == 160 for t in thumbs)
    assert stored[0].outputs["thumbnails"] == thumbs
    assert done.outputs["publish"]["thumbnails"] == [t["thumbnail"] for t in thumbs]
    assert done.data == {"gallery": "https://photos.example.com/holiday-2026"}

    # One item per image, the flaky one retried alone.
    items = {s.name: s for s in done.history if s.name.startswith("thumbnails[")}
    assert sorted(items) == [f"thumbnails[{k}]" for k in range(8)]
    assert {name: s.attempts for name, s in items.items() if s.attempts > 1} == {"thumbnails[3]": 2}
    retries = events_of(events, done.id, "step:retry")
    assert [(e["stepName"], e["group"], e["item"]) for e in retries] == [("thumbnails[3]", "thumbnails", 3)]
    assert "renderer timed out on IMG_0004.heic" in retries[0]["error"]

    # At most four at once, and four at once indeed (eight slow images, four slots).
    assert mod.renderer.peak == 4

    # Every item's events name the map and the item's index; the map's own name neither.
    for e in events_of(events, done.id):
        name = e.get("stepName")
        if isinstance(name, str) and name.startswith("thumbnails["):
            assert e["group"] == "thumbnails" and e["item"] == int(name[11:-1]), e
        elif name is not None:
            assert e.get("group") is None and e.get("item") is None, e


def test_thumbnails_map_rolls_back_the_made_thumbnails(tmp_path: Path) -> None:
    mod, results, events, stored = run_on_sqlite(tmp_path)
    broken = results[1]
    assert broken.failed_step == "thumbnails"
    assert broken.error_type == "FatalError"
    assert "IMG_0015.jpg is corrupt: its data ends before its 12000x9000 pixels" in (broken.error or "")
    history = steps(broken)
    assert history == {
        "thumbnails": "failed",
        "publish": "pending",
        "thumbnails[0]": "compensated",
        "thumbnails[1]": "compensated",
        "thumbnails[2]": "compensated",
        "thumbnails[3]": "compensated",
        "thumbnails[4]": "failed",
    }
    assert steps(stored[1]) == history

    # The four made were compensated, latest completed first: they ended in the order of
    # their sizes (the renderer takes longer on bigger images), the truncated one last.
    kinds = [(e["type"], e.get("stepName")) for e in events_of(events, broken.id)]
    completed = [str(name) for kind, name in kinds if kind == "step:complete" and name != "thumbnails"]
    assert completed == ["thumbnails[0]", "thumbnails[1]", "thumbnails[3]", "thumbnails[2]"]
    undone = [e for e in events_of(events, broken.id, "step:compensate")]
    assert [e["stepName"] for e in undone] == completed[::-1]
    assert all(e["group"] == "thumbnails" and e["item"] == int(e["stepName"][11:-1]) for e in undone)
    # Nothing of the album is left: the deleted ones are the made ones.
    assert not [p for p in mod.renderer.stored if broken.id in p]
    made = [
        f"thumbs/{broken.id}/{mod.BROKEN[int(n[11:-1])]['name'].split('.')[0]}-160.webp" for n in completed
    ]
    assert mod.renderer.deleted == made[::-1]


def test_thumbnails_map_script(tmp_path: Path) -> None:
    script = run_script("thumbnails_map", tmp_path)
    assert script.proc.returncode == 0, script.stderr
    assert "Traceback" not in script.stderr
    for line in (
        ": completed",
        ": rolled_back",
        "thumbnails[3]  completed (2 attempts)",
        "IMG_0004.heic  -> thumbs/",
        "at most 4 at once",
    ):
        assert line in script.stdout, f"{line!r} not in the output:\n{script.stdout}"
    assert (tmp_path / "flux.db").is_file()
    items = [e for e in script.trace if str(e.get("stepName", "")).startswith("thumbnails[")]
    assert items and all(e["group"] == "thumbnails" and isinstance(e["item"], int) for e in items)
    assert {"step:retry", "step:compensate", "workflow:rollback_complete"} <= set(script.types)
