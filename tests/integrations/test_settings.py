"""flux.integrations.settings: FluxSettings from code and from FLUX_* variables."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from flux import FluxError, FluxSilentLogger, JsonFileTraceSink, MemoryTraceSink, create_workflow
from flux.integrations import FluxSettings
from flux.sinks import REDACTED, CompositeTraceSink


def test_the_defaults() -> None:
    settings = FluxSettings()
    assert settings == FluxSettings(
        storage="memory://",
        trace_path=None,
        trace_reset=False,
        default_retries=3,
        default_timeout=None,
        recover_on_startup=True,
        recover_in_background=False,
        redact=(),
    )


def test_from_env_reads_every_variable() -> None:
    env = {
        "FLUX_STORAGE": "sqlite:////var/lib/app/flux.db",
        "FLUX_TRACE": "/tmp/.flux/trace.ndjson",
        "FLUX_TRACE_RESET": "yes",
        "FLUX_DEFAULT_RETRIES": "5",
        "FLUX_DEFAULT_TIMEOUT": "2.5",
        "FLUX_RECOVER": "off",
        "FLUX_REDACT": "password, card_number,,",
        "UNRELATED": "ignored",
    }
    assert FluxSettings.from_env(env) == FluxSettings(
        storage="sqlite:////var/lib/app/flux.db",
        trace_path="/tmp/.flux/trace.ndjson",
        trace_reset=True,
        default_retries=5,
        default_timeout=2.5,
        recover_on_startup=False,
        redact=("password", "card_number"),
    )


def test_from_env_falls_back_to_the_defaults_given() -> None:
    settings = FluxSettings.from_env(
        {"FLUX_TRACE": "", "FLUX_DEFAULT_TIMEOUT": " "},
        storage="sqlite:////tmp/flux.db",
        trace_path="/tmp/trace.ndjson",
        default_timeout=9.0,
    )
    assert settings.storage == "sqlite:////tmp/flux.db"
    assert settings.trace_path is None  # set, and empty: no trace file
    assert settings.default_timeout is None


def test_from_env_reads_the_process_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLUX_STORAGE", "sqlite:///from-env.db")
    monkeypatch.delenv("FLUX_TRACE", raising=False)
    assert FluxSettings.from_env().storage == "sqlite:///from-env.db"


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("FLUX_DEFAULT_RETRIES", "three"),
        ("FLUX_DEFAULT_TIMEOUT", "soon"),
        ("FLUX_RECOVER", "maybe"),
        ("FLUX_TRACE_RESET", "2"),
    ],
)
def test_a_bad_variable_is_named(name: str, value: str) -> None:
    with pytest.raises(FluxError, match=f"{name}='{value}'"):
        FluxSettings.from_env({name: value})


def test_unknown_settings_and_bad_storage_are_refused() -> None:
    with pytest.raises(FluxError, match=r"unknown setting 'retries'.*default_retries"):
        FluxSettings.create(retries=3)
    with pytest.raises(FluxError, match="unknown setting"):
        FluxSettings().replace(trace="x")
    with pytest.raises(FluxError, match="storage"):
        FluxSettings(storage="")


def test_redact_accepts_one_key_or_a_list() -> None:
    assert FluxSettings(redact="password").redact == ("password",)  # type: ignore[arg-type]
    assert FluxSettings(redact=["a", "b"]).redact == ("a", "b")  # type: ignore[arg-type]


def test_create_engine_builds_what_the_settings_say(tmp_path: Path) -> None:
    settings = FluxSettings(
        storage=f"sqlite:///{tmp_path / 'flux.db'}",
        default_retries=1,
        default_timeout=3.0,
    )
    with settings.create_engine(logger=FluxSilentLogger(), lease_seconds=12.0) as engine:
        assert engine.storage.durable
        assert (engine.default_retries, engine.default_timeout, engine.lease_seconds) == (1, 3.0, 12.0)
        assert engine.trace is None
        assert isinstance(engine.logger, FluxSilentLogger)


def test_one_sink_is_used_as_it_is_and_several_are_combined(tmp_path: Path) -> None:
    memory = MemoryTraceSink()
    with FluxSettings().create_engine(trace=memory) as engine:
        assert engine.trace is memory
    with FluxSettings(trace_path=str(tmp_path / "t.ndjson")).create_engine() as engine:
        assert isinstance(engine.trace, JsonFileTraceSink)
    extra = [MemoryTraceSink(), MemoryTraceSink()]
    with FluxSettings(trace_path=str(tmp_path / "t.ndjson")).create_engine(trace=extra) as engine:
        assert isinstance(engine.trace, CompositeTraceSink)
        assert [type(s) for s in engine.trace.sinks] == [JsonFileTraceSink, MemoryTraceSink, MemoryTraceSink]


def test_redaction_applies_to_the_trace_file_and_every_sink(tmp_path: Path) -> None:
    path = tmp_path / "trace.ndjson"
    memory = MemoryTraceSink()
    settings = FluxSettings(trace_path=str(path), trace_reset=True, redact=("password",))
    flow = create_workflow("signup").step("create", lambda ctx: {"password": ctx.input["password"]})
    with settings.create_engine(trace=memory, logger=FluxSilentLogger()) as engine:
        engine.execute_sync(flow, {"password": "hunter2"})
    assert "hunter2" not in path.read_text()
    first = json.loads(path.read_text().splitlines()[0])
    assert first["input"] == {"password": REDACTED}
    assert memory.events[0]["input"] == {"password": REDACTED}


def test_a_bad_engine_option_closes_the_trace_sink_it_opened(tmp_path: Path) -> None:
    settings = FluxSettings(trace_path=str(tmp_path / "t.ndjson"), default_retries=-1)
    closed: list[bool] = []

    class Sink(MemoryTraceSink):
        def close(self) -> None:
            closed.append(True)

    with pytest.raises(FluxError, match="default_retries"):
        settings.create_engine(trace=Sink())
    assert closed == [True]
