"""Where templates and static files live, and the Jinja2 environment that renders them.

Everything rendered comes from the trace, which anything on the machine may
write: autoescape is always on and no filter here returns ``Markup``.
"""

from __future__ import annotations

import json
import re
from datetime import datetime, timezone
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

from jinja2 import Environment, FileSystemLoader, StrictUndefined

from .lines import number_or_none


def asset_dir(name: str) -> Path:
    """``templates`` or ``static``: inside the package in a wheel, else at the repo root."""
    here = Path(__file__).resolve().parent
    packaged = here / name
    return packaged if packaged.is_dir() else here.parent / name


def fmt_time(ms: Any) -> str:
    ms = number_or_none(ms)
    if ms is None:
        return "—"
    try:
        moment = datetime.fromtimestamp(ms / 1000.0, tz=timezone.utc)
    except (OverflowError, OSError, ValueError):
        return "—"
    return moment.strftime("%Y-%m-%d %H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def fmt_clock(ms: Any) -> str:
    text = fmt_time(ms)
    return text[11:] if len(text) > 11 else text


def fmt_duration(ms: Any) -> str:
    ms = number_or_none(ms)
    if ms is None or ms < 0:
        return "—"
    if ms < 1000:
        return f"{ms:.0f} ms" if ms >= 10 else f"{ms:.1f} ms"
    seconds = ms / 1000.0
    if seconds < 60:
        return f"{seconds:.2f} s"
    minutes, seconds = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {seconds} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min"


def pretty_json(value: Any) -> str:
    """JSON for a ``<pre>``; a plain ``str``, so autoescape still applies."""
    try:
        return json.dumps(value, indent=2, ensure_ascii=False, sort_keys=False)
    except (TypeError, ValueError):
        return repr(value)


#: Where an id or a name may wrap: after a separator, never inside a token.
_WRAP_AFTER = re.compile(r"(?<=[-_/.:@#|+=,; ])")


def tokens(text: Any) -> list[str]:
    """``order-process/42`` -> ``["order-", "process/", "42"]``: a template puts a
    ``<wbr>`` after each, so that a long id wraps between its parts."""
    return [t for t in _WRAP_AFTER.split(str(text)) if t]


def run_url(run_id: str, suffix: str = "") -> str:
    # Ids may hold "/", "?" or "#": one percent-encoded path segment.
    return "/runs/" + quote(run_id, safe="") + suffix


def query_string(params: dict[str, Any]) -> str:
    return urlencode({k: v for k, v in params.items() if v not in (None, "")})


def make_env() -> Environment:
    env = Environment(
        loader=FileSystemLoader(asset_dir("templates")),
        autoescape=True,
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        # The templates are part of the package: checking their files for changes at every
        # include (a stat per step row of a long run) is wasted work.
        auto_reload=False,
    )
    env.filters.update(
        time=fmt_time,
        clock=fmt_clock,
        duration=fmt_duration,
        pretty_json=pretty_json,
        run_url=run_url,
        qs=query_string,
        tokens=tokens,
    )
    return env
