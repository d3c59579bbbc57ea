"""SPEC §5 "Crash loops end": a step that kills its process is run again on recovery, as the
next attempt, but after `max_crashes` deaths it fails for good with `StepCrashedError`.

Before the run machine, such a step ran again on every recovery, forever, always as attempt 1.
"""

from __future__ import annotations

import signal

from flux import RunStatus

from .conftest import Worker
from .test_crash_recovery import stored_status


def test_a_step_that_kills_its_process_fails_after_max_crashes(worker: Worker) -> None:
    proc = worker.start("execute", "crash", "cr-1")
    proc.communicate(timeout=120)
    assert proc.returncode == -signal.SIGKILL  # death 1
    for _ in range(2):  # deaths 2 and 3, each in a recovering process
        again = worker.start("recover")
        again.communicate(timeout=120)
        assert again.returncode == -signal.SIGKILL
    lines = worker.run("recover")  # the third death ends the loop: no handler call
    assert lines == ["cr-1 rolled_back StepCrashedError", "recovered"]
    effects = worker.effects_count()
    # numbered as the next attempt each time, and called exactly max_crashes (3) times
    assert [effects[("cr-1", "boom", f"attempt{n}")] for n in (1, 2, 3, 4)] == [1, 1, 1, 0]
    assert effects[("cr-1", "s1", "start")] == 1  # the step before it never ran again
    assert effects[("cr-1", "s1", "undo-done")] == 1  # and the saga followed
    assert effects[("cr-1", "s3", "start")] == 0
    assert stored_status(worker, "cr-1") is RunStatus.ROLLED_BACK
