"""Whether a stored run may go on under a changed definition (SPEC §5, versions)."""

from __future__ import annotations

from typing import Any

from .builder import Workflow
from .errors import WorkflowVersionError
from .records import RunRecord, StepRecord
from .status import StepStatus


def adopt_definition(flow: Workflow[Any], run: RunRecord) -> None:
    """Fit `run` to `flow`: allowed while every step that has run is unchanged and in
    place (steps may be added or changed after them); else `WorkflowVersionError` names the
    first step that differs."""
    steps = flow.steps
    defined = len(run.shape)  # the records after these are the items of the run's maps
    for i, rec in enumerate(run.steps[:defined]):
        if rec.status is StepStatus.PENDING and rec.started_at is None:
            continue
        if i >= len(steps) or steps[i].name != rec.name or steps[i].kind != rec.kind:
            now = f"'{steps[i].name}' ({steps[i].kind})" if i < len(steps) else "nothing"
            raise WorkflowVersionError(
                f"run '{run.id}' of workflow '{run.name}': step '{rec.name}' ({rec.kind}, #{i + 1}) "
                f"has already run, but the definition now has {now} there"
            )
    run.steps = [
        run.steps[i] if i < len(run.steps) and run.steps[i].name == s.name else StepRecord(s.name, s.kind)
        for i, s in enumerate(steps)
    ] + run.steps[defined:]
    run.shape = flow.shape()
    run.version = flow.version_tag
