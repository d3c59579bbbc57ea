"""``python -m viewer``: the same flags as ``flux dev``."""

from __future__ import annotations

import argparse
from pathlib import Path

from .server import run


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m viewer", description="Serve the Flux trace dashboard.")
    parser.add_argument("--trace", type=Path, default=Path(".flux/trace.ndjson"))
    parser.add_argument("--port", type=int, default=4280, help="0 picks a free port")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--demo", action="store_true", help="run the example workflows first")
    parser.add_argument("--open", dest="open_browser", action="store_true")
    parser.add_argument(
        "--allow-host",
        dest="allow_hosts",
        action="append",
        default=[],
        metavar="NAME",
        help="also answer requests for this Host name (repeatable; *.example.com for a domain)",
    )
    args = parser.parse_args(argv)
    return run(
        args.trace,
        args.host,
        args.port,
        demo=args.demo,
        open_browser=args.open_browser,
        allow_hosts=args.allow_hosts,
    )


if __name__ == "__main__":
    raise SystemExit(main())
