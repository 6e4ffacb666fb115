"""Fuzz the front's OpenAPI with schemathesis (bounded): no input yields a 5xx, every 4xx explains itself."""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings

from surge.application import load_app
from surge.broker import Broker
from surge.front import create_api_app
from surge.service import FrontService
from surge.store import Store
from tests.integration.conftest import settings_for

EXAMPLES_PER_OPERATION = 15


def test_no_input_makes_the_front_fail_or_leak(aws: None) -> None:
    config = settings_for("examples.demo_app:app", max_payload_bytes=4096)
    service = FrontService(load_app(config.app_module), config, Store(config), Broker(config))
    schema = schemathesis.openapi.from_asgi("/openapi.json", create_api_app(service))
    operations = [result.ok() for result in schema.get_all_operations()]
    assert {op.path for op in operations} >= {"/gradio_api/queue/join", "/gradio_api/cancel", "/config"}
    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(max_examples=EXAMPLES_PER_OPERATION, deadline=None, suppress_health_check=list(HealthCheck))
        def check(case: schemathesis.Case) -> None:
            response = case.call()
            assert response.status_code < 500, f"{case.method} {case.path}: {response.text}"
            if response.status_code >= 400:
                assert "detail" in response.json() and "Traceback" not in response.text

        check()


@pytest.mark.parametrize("path", ["/gradio_api/queue/join", "/gradio_api/cancel"])
def test_the_fuzzed_operations_exist_in_the_schema(aws: None, path: str) -> None:
    config = settings_for("examples.demo_app:app")
    service = FrontService(load_app(config.app_module), config, Store(config), Broker(config))
    assert path in create_api_app(service).openapi()["paths"]
