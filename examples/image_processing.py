"""Image processing: validate the size, make a thumbnail with Pillow, upload it once.

    validate ──▶ resize ──▶ upload (commit)

* ``validate`` reads the image header (no decoding) and rejects an image over
  ``max_pixels`` with ``FatalError``: a business error, never retried.
* ``resize`` makes a thumbnail into a staging folder.
* ``upload`` is a commit (at-most-once): it writes the thumbnail into the upload folder
  under a name derived from the run, atomically, and outputs its path and size.

Two source images are generated into a temporary folder: a 1600x1000 photo that becomes a
thumbnail, and a 3000x2000 panorama that is too large and fails validation.

Run it from the repository root (needs Pillow: ``pip install pillow``)::

    python examples/image_processing.py

Thumbnails go to ``$FLUX_UPLOADS`` (default ``./.flux/uploads/``); the trace to
``$FLUX_TRACE`` (default ``./.flux/trace.ndjson``).
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import tempfile
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

try:
    import flux  # noqa: F401
except ModuleNotFoundError:  # a source checkout without `pip install -e .`
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from PIL import Image, ImageDraw, UnidentifiedImageError

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
UPLOAD_DIR = os.environ.get("FLUX_UPLOADS", "./.flux/uploads")

FAST = Backoff(initial=0.05, factor=2.0, jitter=0)


@dataclass
class ImageJob:
    """What to process: a source image, where to stage and upload its thumbnail."""

    source: str
    staging_dir: str
    upload_dir: str
    max_pixels: int = 4_000_000
    thumb_size: int = 160


# ---------------------------------------------------------------- the workflow


def validate_image(ctx: WorkflowContext[ImageJob]) -> dict[str, Any]:
    job = ctx.input
    try:
        with Image.open(job.source) as img:  # reads the header only
            width, height = img.size
            fmt = img.format or "unknown"
    except (FileNotFoundError, UnidentifiedImageError) as exc:
        raise FatalError(f"{job.source}: not a readable image ({exc})") from exc
    pixels = width * height
    if pixels > job.max_pixels:
        raise FatalError(
            f"{Path(job.source).name}: {width}x{height} is {pixels:,} pixels, "
            f"over the limit of {job.max_pixels:,}"
        )
    ctx.data["original"] = {"width": width, "height": height, "format": fmt}
    return {"width": width, "height": height, "format": fmt}


def resize_image(ctx: WorkflowContext[ImageJob]) -> dict[str, Any]:
    job = ctx.input
    staging = Path(job.staging_dir)
    staging.mkdir(parents=True, exist_ok=True)
    target = staging / f"{Path(job.source).stem}-thumb.png"
    with Image.open(job.source) as img:
        thumb = img.convert("RGB")
        thumb.thumbnail((job.thumb_size, job.thumb_size))
        thumb.save(target, format="PNG")
        width, height = thumb.size
    ctx.data["thumbnail"] = {"width": width, "height": height}
    return {"staged": str(target), "width": width, "height": height}


def upload_thumbnail(ctx: WorkflowContext[ImageJob]) -> dict[str, Any]:
    """The side effect: write the thumbnail into the upload folder, once."""
    job = ctx.input
    staged = Path(ctx.outputs["resize"]["staged"])
    folder = Path(job.upload_dir)
    folder.mkdir(parents=True, exist_ok=True)
    # The run names the object: uploading again (retry_step) overwrites the same file.
    target = folder / f"{Path(job.source).stem}-{ctx.id}-thumb.png"
    payload = staged.read_bytes()
    partial = target.with_suffix(".part")
    partial.write_bytes(payload)
    os.replace(partial, target)  # atomic: readers never see half a file
    return {"path": str(target), "bytes": len(payload), "idempotency_key": ctx.idempotency_key}


image_flow = (
    create_workflow("image-processing", ImageJob)
    .step("validate", validate_image, retries=0)
    .step("resize", resize_image, retries=1, timeout=10.0, backoff=FAST)
    .commit("upload", upload_thumbnail, retries=2, backoff=FAST)
)


# ---------------------------------------------------------------- the scenario


def make_photo(path: Path, width: int, height: int) -> None:
    """A deterministic test picture: a gradient sky, a sun and a horizon."""
    sky = Image.linear_gradient("L").resize((width, height))
    red = sky.point([40 + v // 3 for v in range(256)])  # lookup tables, one value per level
    green = sky.point([90 + v // 4 for v in range(256)])
    img = Image.merge("RGB", (red, green, Image.new("L", (width, height), 200)))
    draw = ImageDraw.Draw(img)
    r = min(width, height) // 8
    draw.ellipse((width // 2 - r, height // 3 - r, width // 2 + r, height // 3 + r), fill=(250, 200, 60))
    draw.rectangle((0, height * 2 // 3, width, height), fill=(40, 110, 60))
    img.save(path, format="PNG")


async def run(engine: FluxEngine, *, upload_dir: str | os.PathLike[str] | None = None) -> list[FluxResult]:
    """A photo becomes a thumbnail in `upload_dir`; a too-large panorama is rejected."""
    uploads = str(upload_dir if upload_dir is not None else UPLOAD_DIR)
    tag = uuid.uuid4().hex[:6]
    results = []
    with tempfile.TemporaryDirectory(prefix="flux-images-") as tmp:
        work = Path(tmp)
        photo = work / "sunset.png"
        panorama = work / "panorama.png"
        make_photo(photo, 1600, 1000)
        Image.new("RGB", (3000, 2000), (30, 60, 90)).save(panorama, format="PNG")
        for source, run_id in ((photo, f"IMG-sunset-{tag}"), (panorama, f"IMG-panorama-{tag}")):
            job = ImageJob(source=str(source), staging_dir=str(work / "staging"), upload_dir=uploads)
            results.append(await engine.execute(image_flow, job, id=run_id))
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
    print(f"  data:    {_json(result.data)}")
    upload = result.outputs.get("upload")
    if upload:
        print(f"  uploaded: {upload['path']} ({upload['bytes']} bytes)")


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
