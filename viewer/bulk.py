"""Reading a large trace at start-up on several cores.

Parsing JSON is most of the cost of a first load (about 2 µs a line in
CPython), so a file of a million lines is cut at line boundaries into
segments: the first is folded by the server itself, between requests, while
worker processes fold the others; their indexes are then merged in file order.

A run that has lines in two segments was folded by the later worker as if
it started there. Its summary is rebuilt by re-reading that segment's lines
of it from the file, in order, on top of the earlier state. That is rare:
segments are large and runs are short.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import pickle
import sys
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

from flux.events import EventType

from .lines import MALFORMED_KEPT, parse_line
from .trace import TraceIndex

#: Files smaller than this load faster in one process than with workers.
BULK_MIN = 64 << 20
#: Most segments: a worker costs an interpreter's start-up, worth it only on
#: tens of megabytes each.
MAX_SEGMENTS = 4
CHUNK = 4 << 20


#: The first segment's size against a worker's: the server folds it at once,
#: while a worker first starts an interpreter and at the end pickles its index
#: for the server to unpickle (about a fifth of its folding time, measured).
FIRST_SHARE = 1.5


def segments(path: Path, size: int, parts: int, first: float = 1.0) -> list[tuple[int, int]]:
    """``parts`` byte ranges of ``path[:size]``, each a whole number of lines,
    the first ``first`` times the size of each other.

    The bytes after the last newline before ``size`` (a line still being
    written) belong to no segment.
    """
    units = first + parts - 1
    with open(path, "rb") as f:
        end = _after_last_newline(f, size)
        cuts = [0]
        for i in range(1, parts):
            f.seek(int(end * (first + i - 1) / units))
            f.readline()  # to the start of the next line
            cuts.append(min(max(f.tell(), cuts[-1]), end))
    cuts.append(end)
    return [(a, b) for a, b in itertools.pairwise(cuts) if b > a]


def _after_last_newline(f: BinaryIO, size: int) -> int:
    block = 1 << 20
    pos = size
    while pos > 0:
        start = max(0, pos - block)
        f.seek(start)
        found = f.read(pos - start).rfind(b"\n")
        if found >= 0:
            return start + found + 1
        pos = start
    return 0


def fold_segment(path: str, start: int, end: int) -> TraceIndex:
    """The index of ``path[start:end]``, with offsets into the whole file and
    line numbers counted from the segment's first line. Runs in a worker."""
    index = TraceIndex()
    index.consumed = start
    with open(path, "rb") as f:
        f.seek(start)
        left = end - start
        while left > 0:
            chunk = f.read(min(CHUNK, left))
            if not chunk:
                break
            left -= len(chunk)
            index.feed(chunk)
    return index


#: A large trace's last bytes, folded first: the newest runs show while the rest loads.
PREVIEW = 2 << 20


def preview(path: Path, size: int, tail: int | None = None) -> TraceIndex:
    """The runs that begin in the last ``tail`` bytes of ``path[:size]``.

    They are complete (their later lines are all after their first), and they
    are the newest: what the runs page's first page shows. A run seen there only
    by its last lines began earlier and is left out until the whole file is in.
    Offsets are into the whole file; line numbers and malformed lines, which
    would be counted from the wrong place, are not kept.
    """
    index = TraceIndex()
    with open(path, "rb") as f:
        end = _after_last_newline(f, size)
        start = max(0, end - (PREVIEW if tail is None else tail))
        f.seek(start)
        if start:
            f.readline()  # to the start of the next line
            start = min(f.tell(), end)
        index.consumed = start
        index.feed(f.read(end - start))
        kept = {}
        for run in index.runs.values():
            f.seek(run.offsets[0])
            first = parse_line(f.readline().decode("utf-8", "replace").rstrip("\r\n"))
            if isinstance(first, dict) and first["type"] == EventType.WORKFLOW_START.value:
                kept[run.id] = run
    index.runs = kept
    index.workflows = {}
    for run in kept.values():
        index.workflows[run.workflow] = index.workflows.get(run.workflow, 0) + 1
    index.malformed, index.malformed_count = [], 0
    return index


def merge(base: TraceIndex, part: TraceIndex, read_line: Callable[[int], bytes]) -> None:
    """Append ``part`` (the next segment's index) to ``base``, in place."""
    shift = base.lines
    for run in part.runs.values():
        run.first_line += shift
        mine = base.runs.get(run.id)
        if mine is None:
            base.runs[run.id] = run
            base.workflows[run.workflow] = base.workflows.get(run.workflow, 0) + 1
            continue
        for offset in run.offsets:
            line = read_line(offset).decode("utf-8", "replace").rstrip("\r\n")
            ev = parse_line(line)
            if isinstance(ev, dict):
                base.fold_event(mine, offset, ev)
    for bad in part.malformed:
        if len(base.malformed) >= MALFORMED_KEPT:
            break
        base.malformed.append(type(bad)(bad.line + shift, bad.reason, bad.text))
    base.malformed_count += part.malformed_count
    base.lines += part.lines
    base.consumed = part.consumed
    base.order_version += 1


def workers_for(size: int) -> int:
    """How many worker processes to use for a first load of ``size`` bytes."""
    if size < BULK_MIN:
        return 0
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return max(0, min(MAX_SEGMENTS, cores, size // (BULK_MIN // 2)) - 1)


async def fold_in_worker(path: Path, start: int, end: int) -> TraceIndex:
    """``fold_segment`` in a child interpreter, its index sent back pickled.

    A plain child process rather than multiprocessing: a spawned
    multiprocessing worker re-imports the parent's main script, which for a
    user's own script that embeds the app could run it again.
    """
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        __name__,  # viewer.bulk in a checkout, flux._dev.bulk when installed
        str(path),
        str(start),
        str(end),
        stdout=asyncio.subprocess.PIPE,
    )
    try:
        out, _ = await proc.communicate()
    finally:
        if proc.returncode is None:  # cancelled: the server is stopping
            proc.kill()
            await proc.wait()
    if proc.returncode != 0:
        raise RuntimeError(f"loader process exited with {proc.returncode}")
    # Our own child's output: trusted.
    index = pickle.loads(out)
    if not isinstance(index, TraceIndex):
        raise RuntimeError("loader process sent no index")
    return index


if __name__ == "__main__":
    sys.stdout.buffer.write(
        pickle.dumps(fold_segment(sys.argv[1], int(sys.argv[2]), int(sys.argv[3])), pickle.HIGHEST_PROTOCOL)
    )
