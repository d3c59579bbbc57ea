"""A workflow definition as the run machine sees it: names, kinds and resolved policies.

Handlers are not here (calling them is the driver's business); what the machine needs to
decide is: which steps there are, in which order, whether a step has a `when` or a
compensation, and its retries, timeout, backoff and `retry_on`, with the engine's defaults
already applied. A commit takes no retries from `default_retries` (SPEC §5).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..backoff import Backoff
from ..builder import Workflow
from .messages import Save


@dataclass(frozen=True, slots=True)
class StepPlan:
    name: str
    kind: str  # "step" | "commit" | "parallel" | "map" | "call"
    #: Its position in the definition (a map item: its map's).
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
    #: The parallel group or map this step belongs to (a branch, or an item of a map).
    group: str | None = None
    #: A map item's position in its map's items.
    item: int | None = None
    #: A parallel group's branches (their positions in the definition).
    members: tuple[int, ...] = ()
    max_concurrency: int = 8
    #: What every trace event of this step carries besides its name (`group`, `item`).
    tags: dict[str, Any] | None = None


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
    #: The most items a map may have (`FluxEngine(max_map_items=)`).
    max_map_items: int = 10_000
    #: The names of the definition's `.call` steps (their events carry `childId`).
    calls: frozenset[str] = frozenset()
    #: The plans of map items made so far, by name ("thumbnails[3]"): the same for every run.
    item_plans: dict[str, StepPlan] = field(default_factory=dict)

    def item(self, map_plan: StepPlan, i: int) -> StepPlan:
        """The plan of item `i` of a map: the map's policies, its own name and tags."""
        name = f"{map_plan.name}[{i}]"
        sp = self.item_plans.get(name)
        if sp is None:
            sp = self.item_plans[name] = StepPlan(
                name=name, kind="step", index=map_plan.index, retries=map_plan.retries,
                timeout=map_plan.timeout, backoff=map_plan.backoff, retry_on=map_plan.retry_on,
                has_when=False, has_compensate=map_plan.has_compensate, save=Save((name,)),
                commit=False, group=map_plan.name, item=i, tags={"group": map_plan.name, "item": i},
            )  # fmt: skip
        return sp

    def of(self, name: str) -> StepPlan:
        """The plan of a step, a branch or a map item, by name."""
        sp = self.by_name.get(name)
        if sp is not None:
            return sp
        cut = name.rfind("[")
        owner = self.by_name.get(name[:cut]) if cut > 0 and name.endswith("]") else None
        if owner is None or owner.kind != "map" or not name[cut + 1 : -1].isdigit():
            raise KeyError(name)
        return self.item(owner, int(name[cut + 1 : -1]))

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
    max_map_items: int = 10_000,
) -> Plan:
    steps = []
    position = {s.name: i for i, s in enumerate(flow.steps)}
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
                group=s.group,
                members=tuple(position[b] for b in s.branches),
                max_concurrency=s.max_concurrency,
                tags={"group": s.group} if s.group is not None else None,
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
        max_map_items=max_map_items,
        calls=frozenset(s.name for s in steps if s.kind == "call"),
        steps_meta=tuple(_meta(s) for s in steps),
    )


def _meta(sp: StepPlan) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": sp.name, "commit": sp.commit}
    if sp.kind in ("parallel", "map", "call"):
        meta["kind"] = sp.kind
    if sp.group is not None:
        meta["group"] = sp.group
    return meta
