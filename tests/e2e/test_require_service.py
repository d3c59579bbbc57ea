"""The helper that turns a missing browser into a skip, or a failure in CI."""

from __future__ import annotations

import pytest

from tests.e2e.conftest import require_service


def test_a_missing_service_skips_with_its_name(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("FLUX_REQUIRE_SERVICES", raising=False)
    with pytest.raises(pytest.skip.Exception, match="Chromium at /usr/bin/chromium is missing"):
        require_service(False, "Chromium at /usr/bin/chromium")


def test_a_missing_service_fails_when_services_are_required(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLUX_REQUIRE_SERVICES", "1")
    with pytest.raises(pytest.fail.Exception, match="FLUX_REQUIRE_SERVICES=1"):
        require_service(False, "Chromium")


def test_an_available_service_does_neither(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLUX_REQUIRE_SERVICES", "1")
    require_service(True, "Chromium")
