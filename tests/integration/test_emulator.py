"""The local emulator's fixes to moto: same results as moto's own code, and they notice if moto changes."""

from __future__ import annotations

import inspect
import subprocess
import sys
import time
from collections.abc import Iterator

import boto3
import pytest
from botocore.exceptions import ClientError
from moto.dynamodb.responses import DynamoHandler
from moto.sqs.models import SQSBackend, sqs_backends

from surge_local import emulator
from surge_local.launcher import emulator_client_kwargs, free_port, wait_for_port


def test_retention_check_matches_motos_own(aws: None) -> None:
    original = emulator.MOTO_RETENTION_CHECK
    assert "get_queue_attributes" in inspect.getsource(original), "moto changed: re-check whether the fix is needed"
    sqs = boto3.client("sqs")
    url = sqs.create_queue(QueueName="q", Attributes={"MessageRetentionPeriod": "60"})["QueueUrl"]
    sqs.send_message(QueueUrl=url, MessageBody="fresh")
    backend = sqs_backends["123456789012"]["us-east-1"]
    (message,) = backend.get_queue("q")._messages
    assert emulator._retention_check(backend, "q", message) is original(backend, "q", message) is True
    message.sent_timestamp = int((time.time() - 120) * 1000)
    assert emulator._retention_check(backend, "q", message) is original(backend, "q", message) is False


def test_patch_is_idempotent_and_locks_dynamodb_requests() -> None:
    emulator.patch_moto()
    emulator.patch_moto()
    assert getattr(DynamoHandler.call_action, "__surge_atomic__", False)
    assert SQSBackend.is_message_valid_based_on_retention_period is emulator._retention_check


@pytest.fixture
def sqs_emulator() -> Iterator[str]:
    """`python -m surge_local.emulator` serving SQS only, as the launcher starts it."""
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "surge_local.emulator", "--port", str(port), "--services", "sqs"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for_port(port, 30)
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        assert process.wait(10) == 0, "SIGTERM stops the emulator cleanly"


@pytest.mark.crossprocess
def test_emulator_keeps_connections_alive_and_refuses_other_services(sqs_emulator: str) -> None:
    sqs = boto3.client("sqs", **emulator_client_kwargs(sqs_emulator))
    url = sqs.create_queue(QueueName="q")["QueueUrl"]
    response = sqs.send_message(QueueUrl=url, MessageBody="hello")
    assert response["ResponseMetadata"]["HTTPHeaders"].get("connection") != "close"
    assert sqs.receive_message(QueueUrl=url)["Messages"][0]["Body"] == "hello"
    dynamodb = boto3.client("dynamodb", **emulator_client_kwargs(sqs_emulator))
    with pytest.raises(ClientError) as refused:
        dynamodb.list_tables()
    assert refused.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
