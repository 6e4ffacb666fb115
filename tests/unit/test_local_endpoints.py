"""The local stack's children reach SQS and DynamoDB through their own emulator processes: boto3 takes the
service-specific endpoint variables that `aws_env` sets over the general one."""

from __future__ import annotations

import boto3
import pytest

from surge_local.launcher import aws_env


def test_each_service_goes_to_its_own_emulator_and_any_other_to_the_dynamodb_one(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    endpoints = {"sqs": "http://127.0.0.1:4001", "dynamodb": "http://127.0.0.1:4002"}
    for name, value in aws_env(endpoints).items():
        monkeypatch.setenv(name, value)
    assert boto3.client("sqs").meta.endpoint_url == endpoints["sqs"]
    assert boto3.client("dynamodb").meta.endpoint_url == endpoints["dynamodb"]
    assert boto3.client("sts").meta.endpoint_url == endpoints["dynamodb"], "never a real AWS endpoint"
