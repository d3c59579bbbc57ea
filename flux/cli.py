"""The `flux` command."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="flux", description="Flux workflow engine")
    sub = parser.add_subparsers(dest="command", required=True)
    dev = sub.add_parser("dev", help="serve the live trace dashboard")
    dev.add_argument("--trace", default="./.flux/trace.ndjson", help="NDJSON trace file to tail")
    dev.add_argument("--port", type=int, default=4280)
    dev.add_argument("--host", default="127.0.0.1")
    dev.add_argument("--demo", action="store_true", help="run the bundled example workflows first")
    dev.add_argument("--open", action="store_true", help="open the dashboard in a browser")
    args = parser.parse_args(argv)
    if args.command == "dev":
        try:
            from viewer.server import run
        except ImportError as exc:
            print(f"flux dev needs the viewer extra: pip install 'gravito-flux[viewer]' ({exc})",
                  file=sys.stderr)
            return 2
        from pathlib import Path

        return run(Path(args.trace), host=args.host, port=args.port, demo=args.demo,
                   open_browser=args.open)
    return 2


if __name__ == "__main__":
    sys.exit(main())
