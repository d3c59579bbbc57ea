"""Conformance: text that the databases refuse as it is (a NUL byte, which PostgreSQL text
rejects; a lone surrogate, which UTF-8 cannot encode) never makes a save fail, and loads back
exactly; a save that fails anyway leaves the stored run as it was."""

from __future__ import annotations

import pytest

from flux import MemoryStorage, StorageError
from flux.status import RunStatus, StepStatus

from .conftest import Factory, run
from .test_conformance import lease, make_run, save

HOSTILE = [
    "boom\x00after the NUL",
    "\x00",
    "lone \ud800 surrogate",
    "\udfff",
    "\ufdd0starts like an escaped value",
    'back\\slash "quoted" \\u0000 and é✓中',
]


@pytest.mark.parametrize("text", HOSTILE)
def test_hostile_text_in_a_new_run_loads_back_exactly(make_storage: Factory, text: str) -> None:
    storage = make_storage()
    record = make_run(
        error=text, error_type=text, waiting_for=text, error_step=text, cancel_reason=text, lease=lease("me")
    )
    record.steps[0].status = StepStatus.FAILED
    record.steps[0].error, record.steps[0].error_type, record.steps[0].waiting_for = text, text, text
    assert run(storage.create_run(record))
    loaded = run(make_storage().load_run("r1"))
    assert loaded is not None
    assert (loaded.error, loaded.error_type, loaded.waiting_for, loaded.error_step) == (text,) * 4
    assert loaded.cancel_reason == text
    assert (loaded.steps[0].error, loaded.steps[0].error_type, loaded.steps[0].waiting_for) == (text,) * 3


@pytest.mark.parametrize("text", HOSTILE)
@pytest.mark.parametrize("steps", [[0], [0, 1]])
def test_hostile_text_in_saves_loads_back_exactly(make_storage: Factory, text: str, steps: list[int]) -> None:
    storage = make_storage()
    record = make_run(lease=lease("holder"))
    run(storage.create_run(record))
    for i in steps:
        st = record.steps[i]
        st.status, st.error, st.error_type, st.waiting_for = StepStatus.RUNNING, text, text, text
    save(storage, record, steps, "holder")  # one step: the fast path of the backends
    loaded = run(make_storage().load_run("r1"))
    assert loaded is not None and all(loaded.steps[i].error == text for i in steps)
    record.status = RunStatus.SUSPENDED
    record.error, record.error_type, record.waiting_for = text, text, text
    save(storage, record, steps, "holder")
    loaded = run(make_storage().load_run("r1"))
    assert loaded is not None
    assert (loaded.error, loaded.error_type, loaded.waiting_for) == (text, text, text)
    assert all(loaded.steps[i].waiting_for == text for i in steps)
    answer = run(make_storage().request_cancel("r1", text))
    assert answer is not None and answer.cancel_reason == text and answer.error == text
    listed = run(make_storage().list_runs())[0]
    assert listed.cancel_reason == text and listed.steps[steps[0]].error_type == text


def test_json_text_holding_an_escaped_nul_is_stored(make_storage: Factory) -> None:
    """Serialisation writes NUL as the JSON escape `\\u0000`, which every column takes."""
    storage = make_storage()
    payload = '{"text":"a\\u0000b"}'
    record = make_run(input_json=payload, data_json=payload, lease=lease("holder"))
    run(storage.create_run(record))
    record.steps[0].status = StepStatus.COMPLETED
    record.steps[0].output_json = payload
    record.steps[0].data_before = payload
    save(storage, record, [0], "holder")
    loaded = run(make_storage().load_run("r1"))
    assert loaded is not None and loaded.input_json == payload and loaded.data_json == payload
    assert loaded.steps[0].output_json == payload and loaded.steps[0].data_before == payload


@pytest.mark.parametrize("steps", [[1], [0, 1]])
def test_a_save_that_fails_midway_leaves_the_run_as_it_was(make_storage: Factory, steps: list[int]) -> None:
    storage = make_storage()
    if isinstance(storage, MemoryStorage):
        pytest.skip("the memory storage keeps any text: no write of it can fail")
    record = make_run(lease=lease("holder"))
    run(storage.create_run(record))
    record.steps[0].status = StepStatus.COMPLETED
    record.steps[0].output_json = '"first"'
    record.data_json = '{"after":"first"}'
    save(storage, record, [0], "holder")
    before = run(make_storage().load_run("r1"))
    # The run row and step 0 are fine; step 1's output is JSON text no database accepts
    # (serialisation never writes it): the write fails after the run row was sent.
    record.status = RunStatus.ROLLING_BACK if len(steps) > 1 else RunStatus.RUNNING
    record.data_json = '{"after":"second"}'
    record.steps[0].status = StepStatus.COMPENSATING
    record.steps[1].status = StepStatus.COMPLETED
    record.steps[1].output_json = '"bad \ud800 \x00"'
    with pytest.raises(StorageError, match="saving run 'r1'"):
        save(storage, record, steps, "holder")
    after = run(make_storage().load_run("r1"))
    assert after == before
    record.steps[1].output_json = '"fine"'  # the holder can go on
    save(storage, record, steps, "holder")
    loaded = run(make_storage().load_run("r1"))
    assert loaded is not None and loaded.steps[1].output_json == '"fine"'
    assert loaded.data_json == '{"after":"second"}'
