"""The local emulator's fixes to moto: same results as moto's own code, and they notice if moto changes."""

from __future__ import annotations

import inspect
import time
from typing import Any

import boto3
import pytest
from moto.dynamodb.models.table import Table
from moto.dynamodb.responses import DynamoHandler
from moto.sqs.models import SQSBackend, sqs_backends

from surge import emulator


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
    assert getattr(Table.query, "__surge_partition__", False)
    assert SQSBackend.is_message_valid_based_on_retention_period is emulator._retention_check


def _query_pages(client: Any, **query: Any) -> list[list[dict[str, Any]]]:
    pages, start = [], None
    while True:
        response = client.query(**query, **({"ExclusiveStartKey": start} if start else {}))
        pages.append(response["Items"])
        start = response.get("LastEvaluatedKey")
        if not start:
            return pages


def test_partition_query_matches_motos_own(aws: None, monkeypatch: pytest.MonkeyPatch) -> None:
    assert "self.all_items()" in inspect.getsource(emulator.MOTO_TABLE_QUERY), "moto changed: re-check the fix"
    client = boto3.client("dynamodb")
    client.create_table(
        TableName="t",
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
        AttributeDefinitions=[{"AttributeName": name, "AttributeType": "S"} for name in ("pk", "sk", "colour")],
        GlobalSecondaryIndexes=[
            {
                "IndexName": "by_colour",
                "KeySchema": [{"AttributeName": "colour", "KeyType": "HASH"}],
                "Projection": {"ProjectionType": "ALL"},
            }
        ],
        BillingMode="PAY_PER_REQUEST",
    )
    for i in range(60):
        item = {"pk": {"S": f"p{i % 3}"}, "sk": {"S": f"{(i * 37) % 100:03d}"}, "colour": {"S": ["red", "blue"][i % 2]}}
        client.put_item(TableName="t", Item=item)
    queries = [
        {"KeyConditionExpression": "pk = :p", "ExpressionAttributeValues": {":p": {"S": "p1"}}},
        {
            "KeyConditionExpression": "pk = :p AND sk > :s",
            "ExpressionAttributeValues": {":p": {"S": "p2"}, ":s": {"S": "040"}},
            "ScanIndexForward": False,
            "Limit": 4,
        },
        {"KeyConditionExpression": "pk = :p", "ExpressionAttributeValues": {":p": {"S": "nothing"}}},
        {
            "IndexName": "by_colour",
            "KeyConditionExpression": "colour = :c",
            "ExpressionAttributeValues": {":c": {"S": "red"}},
        },
    ]

    emulator.patch_moto()
    patched = [_query_pages(client, TableName="t", **query) for query in queries]
    monkeypatch.setattr(Table, "query", emulator.MOTO_TABLE_QUERY)
    monkeypatch.setattr(Table, "all_items", emulator.MOTO_ALL_ITEMS)
    assert patched == [_query_pages(client, TableName="t", **query) for query in queries]
    whole, paged, empty, index = patched
    assert len(whole[0]) == 20 and len(paged) > 1 and empty == [[]] and len(index[0]) == 30
