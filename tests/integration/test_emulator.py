"""The local emulator's fixes to moto: same results as moto's own code, and they notice if moto changes."""

from __future__ import annotations

import inspect
import time

import boto3
from moto.dynamodb.responses import DynamoHandler
from moto.sqs.models import SQSBackend, sqs_backends

from surge_local import emulator


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
