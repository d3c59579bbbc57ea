"""`flux graph module:attr [--format mermaid|json]`: print a workflow's graph (SPEC §11)."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .graph import FORMATS, graph
from .text import printable, printable_json

if TYPE_CHECKING:
    from .builder import Workflow

#: Exit status when the workflow cannot be loaded (as argparse's usage errors).
EXIT_USAGE = 2


def add_parser(sub: Any) -> None:
    p = sub.add_parser("graph", help="print a workflow's graph: Mermaid flowchart, or JSON")
    p.add_argument("workflow", help="the definition, as module:attribute")
    p.add_argument("--format", choices=FORMATS, default="mermaid", help="mermaid (default) or json")


def run(
    args: argparse.Namespace,
    *,
    load_workflow: Callable[[str], Workflow[Any]],
    usage_error: type[Exception],
) -> int:
    """`flux.cli` passes its own loader (the one `flux worker` uses), as for `flux schedules`."""
    try:
        flow = load_workflow(args.workflow)
    except usage_error as exc:
        message = str(exc)
        prefix = f"--workflow {args.workflow!r}"  # the loader's words for the other commands
        if message.startswith(prefix):
            message = f"{args.workflow!r}{message[len(prefix) :]}"
        print(f"flux graph: error: {printable(message, multiline=True)}", file=sys.stderr)
        return EXIT_USAGE
    out = graph(flow, args.format)
    if isinstance(out, str):
        sys.stdout.write(out)
    else:
        sys.stdout.write(printable_json(json.dumps(out, ensure_ascii=False, indent=2)) + "\n")
    return 0
