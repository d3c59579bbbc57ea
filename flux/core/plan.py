"""A workflow definition as the run machine sees it: names, kinds and resolved policies.

Handlers are not here (calling them is the driver's business); what the machine needs to
decide is: which steps there are, in which order, whether a step has a `when` or a
compensation, and its retries, timeout, backoff and `retry_on`, with the engine's defaults
already applied. A commit takes no retries from `default_retries` (SPEC §5).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..backoff import Backoff
from ..builder import Workflow
from .messages import Save


@dataclass(frozen=True, slots=True)
class StepPlan:
    name: str
    kind: str  # "step" | "commit"
    index: int
    retries: int
    timeout: float | None
    backoff: Backoff
    retry_on: tuple[type[BaseException], ...] | None
    has_when: bool
    has_compensate: bool
    #: The save of this step alone, made once (effects are never changed once made).
    save: Save
    commit: bool


@dataclass(frozen=True, slots=True)
class Plan:
    name: str
    version: str | None
    steps: tuple[StepPlan, ...]
    by_name: dict[str, StepPlan]
    #: Whether trace events are wanted at all (no sink: no events, no numbering).
    traced: bool
    #: The hooks the engine has, so that no effect is made for a hook nobody listens to.
    hooks: frozenset[str]
    max_crashes: int

    #: The definition as the viewer draws it (steps in order, commits marked), built once.
    steps_meta: tuple[dict[str, Any], ...] = ()
    #: A sleep that ends within this many seconds is slept in-process, holding the run.
    inline_sleep: float = 0.0

    def meta(self) -> dict[str, Any]:
        return {"steps": list(self.steps_meta), "version": self.version}


def plan_of(
    flow: Workflow[Any],
    *,
    default_retries: int,
    default_timeout: float | None,
    default_backoff: Backoff,
    traced: bool,
    hooks: frozenset[str],
    max_crashes: int,
    inline_sleep: float = 0.0,
) -> Plan:
    steps = []
    for i, s in enumerate(flow.steps):
        # a commit is tried once unless it sets retries= itself
        default = 0 if s.kind == "commit" else default_retries
        retries = default if s.retries is None else s.retries
        steps.append(
            StepPlan(
                name=s.name,
                kind=s.kind,
                index=i,
                retries=retries,
                timeout=default_timeout if s.timeout is None else s.timeout,
                backoff=s.backoff or default_backoff,
                retry_on=s.retry_on,
                has_when=s.when is not None,
                has_compensate=s.compensate is not None,
                save=Save((s.name,), (i,)),
                commit=s.kind == "commit",
            )
        )
    return Plan(
        name=flow.name,
        version=flow.version_tag,
        steps=tuple(steps),
        by_name={s.name: s for s in steps},
        traced=traced,
        hooks=hooks,
        max_crashes=max_crashes,
        inline_sleep=inline_sleep,
        steps_meta=tuple({"name": s.name, "commit": s.commit} for s in steps),
    )
