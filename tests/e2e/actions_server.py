"""A real dashboard process on stored runs, for the action tests: ``create_app`` with a
storage, the workflows of ``tests.viewer.action_flows`` and the bare stored-run pages of
``tests.viewer.actions_app``, served by ``viewer.server``'s uvicorn server. It stands for
``flux dev --storage URL --workflows tests.viewer.action_flows [--read-only]`` until that
command's pages are on main.

    python -m tests.e2e.actions_server --storage URL --trace PATH [--port N] [--read-only]
"""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path

from flux.storage import open_storage
from tests.viewer.action_flows import WORKFLOWS
from tests.viewer.actions_app import bare_app
from viewer.server import _serve, make_server


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--storage", required=True)
    parser.add_argument("--trace", type=Path, required=True)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--read-only", action="store_true")
    args = parser.parse_args()
    storage = open_storage(args.storage)
    app = bare_app(storage, WORKFLOWS, args.trace, read_only=args.read_only)
    server = make_server(app, "127.0.0.1", args.port)
    try:
        asyncio.run(_serve(server, "127.0.0.1", False))
    except KeyboardInterrupt:
        return 0
    return 0 if server.started else 1


if __name__ == "__main__":
    raise SystemExit(main())
