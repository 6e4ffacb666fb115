"""Shared fixtures: no test can reach a real AWS account; local stacks run on 127.0.0.1 only."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from surge_local.launcher import LocalStack, free_port


@pytest.fixture(autouse=True)
def fake_aws(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_REGION": "us-east-1",
    }.items():
        monkeypatch.setenv(name, value)
    for name in ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_SQS", "AWS_ENDPOINT_URL_DYNAMODB"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture(scope="module")
def demo_stack() -> Iterator[LocalStack]:
    """The default example app, one worker per function, as `make run` serves it."""
    stack = LocalStack("examples.demo_app:app", port=free_port()).start()
    try:
        yield stack
    finally:
        stack.stop()
