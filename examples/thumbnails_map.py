"""Thumbnails with a map: one durable step per uploaded image, four at a time.

    images ──▶ thumbnails: map over the album's images ──▶ publish
               make_thumbnail(ctx.item), max_concurrency=4,
               retries=2; delete_thumbnail on rollback

``.map("thumbnails", make_thumbnail, items=..., max_concurrency=4)`` evaluates ``items(ctx)``
once and stores it, then runs the handler once per image with ``ctx.item`` (the image) and
``ctx.item_index`` (its place), never more than four at once. Each item is a step of its
own (``thumbnails[0]``, ``thumbnails[1]``, ...): stored, retried and traced alone, its events
carry ``group="thumbnails"`` and ``item=<index>``. The map's output is the list of the
items' outputs, in item order, whatever order they finished in.

Two albums:

* ``ALB-holiday``: eight images. The renderer times out on ``IMG_0004.heic`` once; that
  item alone is retried and succeeds. ``completed``; ``ctx.outputs["thumbnails"]`` lists
  eight thumbnails, and the renderer never had more than four images at once.
* ``ALB-broken``: its fifth image is truncated: the renderer gives up on it (``FatalError``)
  after the four others are made, and the saga deletes those four thumbnails, the latest
  made first: ``rolled_back``. (Had other items still been rendering, they would have been
  cancelled; ``examples/checkout_parallel.py`` shows a branch cancelled that way.)

The trace goes to ``$FLUX_TRACE`` (default ``./.flux/trace.ndjson``); runs are stored in
SQLite at ``$FLUX_DB`` (default ``./.flux/examples.db``). Run it from the repository root::

    python examples/thumbnails_map.py
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

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
DB_PATH = os.environ.get("FLUX_DB", "./.flux/examples.db")

FAST = Backoff(initial=0.05, factor=2.0, jitter=0)

#: The longest side of a thumbnail, in pixels.
THUMB = 160

#: The image whose first render times out (once per album).
FLAKY = "IMG_0004.heic"


@dataclass
class Album:
    album_id: str
    #: The uploads: {"name": ..., "width": ..., "height": ...} each.
    images: list[dict[str, Any]]


# ---------------------------------------------------------------- simulated services


class RendererTimeout(Exception):
    """The rendering service did not answer in time."""


class Renderer:
    """An image service: it takes longer on bigger images, and counts what it holds at once."""

    def __init__(self) -> None:
        self.in_flight = 0
        self.peak = 0
        self.calls = 0
        self.timed_out: set[str] = set()
        #: Thumbnails stored, by path; deleted ones are removed and logged.
        self.stored: dict[str, tuple[int, int]] = {}
        self.deleted: list[str] = []

    async def render(self, album: str, image: dict[str, Any]) -> tuple[str, tuple[int, int]]:
        self.calls += 1
        self.in_flight += 1
        self.peak = max(self.peak, self.in_flight)
        try:
            name, width, height = image["name"], int(image["width"]), int(image["height"])
            await asyncio.sleep(0.15 + width * height / 200_000_000)  # 12 MP: 210 ms
            if name == FLAKY and album not in self.timed_out:
                self.timed_out.add(album)
                raise RendererTimeout(f"renderer timed out on {name}")
            if image.get("truncated"):
                raise FatalError(f"{name} is corrupt: its data ends before its {width}x{height} pixels")
            scale = THUMB / max(width, height)
            size = (max(1, round(width * scale)), max(1, round(height * scale)))
            path = f"thumbs/{album}/{name.rsplit('.', 1)[0]}-{THUMB}.webp"
            self.stored[path] = size
            return path, size
        finally:
            self.in_flight -= 1

    def delete(self, path: str) -> None:
        if self.stored.pop(path, None) is not None:
            self.deleted.append(path)


renderer = Renderer()


def reset_services() -> None:
    global renderer
    renderer = Renderer()


# ---------------------------------------------------------------- the workflow


def list_images(ctx: WorkflowContext[Album]) -> list[dict[str, Any]]:
    """The map's items: evaluated once, stored with the run."""
    return ctx.input.images


async def make_thumbnail(ctx: WorkflowContext[Album]) -> dict[str, Any]:
    image: dict[str, Any] = ctx.item
    path, (width, height) = await renderer.render(ctx.id, image)
    return {"image": image["name"], "index": ctx.item_index, "thumbnail": path, "size": [width, height]}


def delete_thumbnail(ctx: WorkflowContext[Album]) -> None:
    # A compensation of an item sees that item in ctx.item.
    name: str = ctx.item["name"]
    renderer.delete(f"thumbs/{ctx.id}/{name.rsplit('.', 1)[0]}-{THUMB}.webp")


def publish(ctx: WorkflowContext[Album]) -> dict[str, Any]:
    thumbnails: list[dict[str, Any]] = ctx.outputs["thumbnails"]  # in item order
    ctx.data["gallery"] = f"https://photos.example.com/{ctx.input.album_id}"
    return {"album": ctx.input.album_id, "thumbnails": [t["thumbnail"] for t in thumbnails]}


thumbnails_flow = (
    create_workflow("thumbnails-map", Album)
    .map(
        "thumbnails",
        make_thumbnail,
        items=list_images,
        max_concurrency=4,
        retries=2,
        backoff=FAST,
        retry_on=(RendererTimeout,),
        compensate=delete_thumbnail,
    )
    .step("publish", publish)
)


# ---------------------------------------------------------------- the scenario


def _image(n: int, width: int, height: int, ext: str = "jpg") -> dict[str, Any]:
    return {"name": f"IMG_{n:04d}.{ext}", "width": width, "height": height}


HOLIDAY = [
    _image(1, 4000, 3000),
    _image(2, 3000, 4000),
    _image(3, 4032, 3024),
    _image(4, 4032, 3024, "heic"),  # times out once
    _image(5, 1920, 1080),
    _image(6, 6000, 4000),
    _image(7, 1080, 1920),
    _image(8, 2048, 1536),
]

BROKEN = [
    _image(11, 1600, 1200),
    _image(12, 2000, 1500),
    _image(13, 4000, 3000),
    _image(14, 3000, 2000),
    # Truncated: the renderer decodes it for longer (108 MP: 690 ms) than the others take,
    # then fails; the four others are made by then.
    {**_image(15, 12000, 9000), "truncated": True},
]


async def run(engine: FluxEngine, tag: str | None = None) -> list[FluxResult]:
    """An album whose thumbnails are all made (one retried), and one rolled back by a
    truncated image (the thumbnails already made are deleted)."""
    reset_services()
    tag = tag or uuid.uuid4().hex[:6]  # unique run ids, so that runs appended to one trace never mix
    albums = {"ALB-holiday": Album("holiday-2026", HOLIDAY), "ALB-broken": Album("scans", BROKEN)}
    return [
        await engine.execute(thumbnails_flow, album, id=f"{name}-{tag}") for name, album in albums.items()
    ]


# ---------------------------------------------------------------- running it


def show(result: FluxResult) -> None:
    print(f"{result.name} {result.id}: {result.status.value}")
    for st in result.history:
        extra = f" ({st.attempts} attempts)" if st.attempts > 1 else ""
        print(f"  {st.name:<14} {st.status.value}{extra}")
    if result.error:
        print(f"  error:   {result.error_type} in '{result.failed_step}': {result.error}")
    if result.ok:
        for thumb in result.outputs["thumbnails"]:
            print(f"  {thumb['image']:<14} -> {thumb['thumbnail']} {thumb['size'][0]}x{thumb['size'][1]}")
        print(f"  published: {json.dumps(result.outputs['publish']['album'])} at {result.data['gallery']}")


async def _main() -> None:
    Path(DB_PATH).parent.mkdir(parents=True, exist_ok=True)
    engine = FluxEngine(
        storage=f"sqlite:///{DB_PATH}",
        trace=JsonFileTraceSink(TRACE_PATH, reset=False),
        logger=FluxConsoleLogger(),
    )
    try:
        for result in await run(engine):
            show(result)
    finally:
        await engine.close()
    print(f"renderer: {renderer.calls} calls, at most {renderer.peak} at once")
    print(f"thumbnails deleted by the rollback: {len(renderer.deleted)}")
    print(f"trace: {TRACE_PATH}")


def main() -> None:
    asyncio.run(_main())


if __name__ == "__main__":
    main()
