"""Integration tier: AWS through moto in-process (`mock_aws`), with the emulator's fixes to moto applied
(`surge_local.emulator.patch_moto`: among them, one DynamoDB request at a time, as the local stack's
emulator serves them), so that a test's outcome does not depend on which test patched moto first."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from moto import mock_aws

from surge.application import App, load_app
from surge.settings import Settings
from surge_local.emulator import patch_moto
from surge_local.provision import provision


@pytest.fixture
def aws() -> Iterator[None]:
    patch_moto()
    with mock_aws():
        yield


def settings_for(app_spec: str, **overrides: object) -> Settings:
    app = load_app(app_spec)
    resources = provision(
        app,
        visibility_timeout_s=int(overrides.pop("visibility_timeout_s", 30)),  # type: ignore[call-overload]
        max_receive_count=int(overrides.pop("max_receive_count", 5)),  # type: ignore[call-overload]
    )
    return Settings(app_module=app_spec, **vars(resources), poll_wait_s=0, **overrides)  # type: ignore[arg-type]


@pytest.fixture
def demo(aws: None) -> tuple[App, Settings]:
    return load_app("examples.demo_app:app"), settings_for("examples.demo_app:app")
