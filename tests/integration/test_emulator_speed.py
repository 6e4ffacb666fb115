"""The emulator's speed fixes: moto's results (transactions all or nothing, query order, sends) without work that
grows with the table or the queue, or is repeated per request."""

from __future__ import annotations

import inspect
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError
from moto import backends
from moto.dynamodb.models.table import Table
from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app
from moto.sqs.models import Queue as SQSQueue
from moto.sqs.models import SQSBackend

from surge_local import emulator


def _table() -> Any:
    client = boto3.client("dynamodb", region_name="us-east-1")
    client.create_table(
        TableName="t",
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
        AttributeDefinitions=[
            {"AttributeName": "pk", "AttributeType": "S"},
            {"AttributeName": "sk", "AttributeType": "S"},
        ],
        BillingMode="PAY_PER_REQUEST",
    )
    client.put_item(TableName="t", Item={"pk": {"S": "a"}, "sk": {"S": "1"}, "n": {"N": "1"}})
    return client


def _update(sk: str, expected: str) -> dict[str, Any]:
    return {
        "Update": {
            "TableName": "t",
            "Key": {"pk": {"S": "a"}, "sk": {"S": sk}},
            "UpdateExpression": "SET n = :two",
            "ConditionExpression": "n = :expected",
            "ExpressionAttributeValues": {":two": {"N": "2"}, ":expected": {"N": expected}},
        }
    }


def test_moto_still_copies_tables_in_transactions() -> None:
    assert "deepcopy" in inspect.getsource(emulator.MOTO_TRANSACT_WRITE), "moto changed: is the fix still needed?"


def test_failed_transaction_undoes_its_earlier_writes_without_copying_tables(
    aws: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    emulator.patch_moto()
    client = _table()
    monkeypatch.setattr(
        Table, "__deepcopy__", lambda self, memo: pytest.fail("a whole table was copied"), raising=False
    )
    new_item = {"Put": {"TableName": "t", "Item": {"pk": {"S": "a"}, "sk": {"S": "2"}, "n": {"N": "9"}}}}
    with pytest.raises(ClientError) as refused:
        client.transact_write_items(TransactItems=[_update("1", "1"), new_item, _update("1x", "5")])
    reasons = [r["Code"] for r in refused.value.response["CancellationReasons"]]
    assert reasons == ["None", "None", "ConditionalCheckFailed"]
    items = client.query(TableName="t", KeyConditionExpression="pk = :a", ExpressionAttributeValues={":a": {"S": "a"}})[
        "Items"
    ]
    assert items == [{"pk": {"S": "a"}, "sk": {"S": "1"}, "n": {"N": "1"}}]


def test_successful_transaction_applies_every_write(aws: None) -> None:
    emulator.patch_moto()
    client = _table()
    new_item = {"Put": {"TableName": "t", "Item": {"pk": {"S": "a"}, "sk": {"S": "2"}, "n": {"N": "9"}}}}
    client.transact_write_items(TransactItems=[_update("1", "1"), new_item])
    items = client.query(TableName="t", KeyConditionExpression="pk = :a", ExpressionAttributeValues={":a": {"S": "a"}})[
        "Items"
    ]
    assert [(i["sk"]["S"], i["n"]["N"]) for i in items] == [("1", "2"), ("2", "9")]


def test_query_reads_only_its_partition_and_keeps_motos_results(aws: None, monkeypatch: pytest.MonkeyPatch) -> None:
    client = _table()
    for pk in ("a", "b", "c"):
        for sk in ("3", "1", "2", "0"):
            client.put_item(TableName="t", Item={"pk": {"S": pk}, "sk": {"S": sk}, "n": {"N": sk}})
    query = {
        "TableName": "t",
        "KeyConditionExpression": "pk = :b AND sk > :low",
        "ExpressionAttributeValues": {":b": {"S": "b"}, ":low": {"S": "0"}},
    }
    monkeypatch.setattr(Table, "query", emulator.MOTO_QUERY)
    before = [client.query(**query, ScanIndexForward=forward)["Items"] for forward in (True, False)]
    assert [i["sk"]["S"] for i in before[0]] == ["1", "2", "3"]
    emulator.patch_moto()
    monkeypatch.setattr(Table, "all_items", lambda self: pytest.fail("the whole table was read"))
    after = [client.query(**query, ScanIndexForward=forward)["Items"] for forward in (True, False)]
    assert after == before
    assert client.query(**{**query, "ExpressionAttributeValues": {":b": {"S": "z"}, ":low": {"S": "0"}}})["Items"] == []


def test_moto_send_path_reads_only_the_deduplication_flag_of_the_counting_attributes() -> None:
    counting = inspect.getsource(emulator.MOTO_QUEUE_ATTRIBUTES.fget)
    assert "BASE_ATTRIBUTES" in counting, "moto changed: does queue.attributes still count the messages?"
    assert "ApproximateNumberOfMessages" in inspect.getsource(SQSQueue)
    for code in (emulator.MOTO_SEND_MESSAGE, SQSBackend._validate_message, SQSQueue.add_message):
        source = inspect.getsource(code)
        reads = source.count(".attributes")
        assert reads == source.count('.attributes.get("ContentBasedDeduplication")'), "moto reads more attributes"


def test_send_never_counts_the_queue_and_keeps_motos_results(aws: None, monkeypatch: pytest.MonkeyPatch) -> None:
    emulator.patch_moto()
    sqs = boto3.client("sqs", region_name="us-east-1")
    standard = sqs.create_queue(QueueName="plain")["QueueUrl"]
    fifo = sqs.create_queue(
        QueueName="dedup.fifo", Attributes={"FifoQueue": "true", "ContentBasedDeduplication": "true"}
    )["QueueUrl"]
    strict = sqs.create_queue(QueueName="strict.fifo", Attributes={"FifoQueue": "true"})["QueueUrl"]
    with monkeypatch.context() as counting:
        counting.setattr(SQSQueue, "messages", property(lambda self: pytest.fail("the queue was scanned")))
        for _ in range(3):
            sqs.send_message(QueueUrl=standard, MessageBody="x")
            sqs.send_message(QueueUrl=fifo, MessageBody="same", MessageGroupId="g")
        with pytest.raises(ClientError, match="MessageDeduplicationId"):
            sqs.send_message(QueueUrl=strict, MessageBody="x", MessageGroupId="g")
    depth = {
        url: sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages"])["Attributes"]
        for url in (standard, fifo)
    }
    assert depth == {standard: {"ApproximateNumberOfMessages": "3"}, fifo: {"ApproximateNumberOfMessages": "1"}}


def test_backend_lookup_lists_motos_folders_once_per_host(monkeypatch: pytest.MonkeyPatch) -> None:
    assert "list_of_moto_modules()" in inspect.getsource(emulator.MOTO_BACKEND_FOR_HOST), "moto changed"
    listed = []
    real = backends.list_of_moto_modules
    monkeypatch.setattr(backends, "list_of_moto_modules", lambda: listed.append(1) or real())
    emulator.patch_moto()
    dispatcher = DomainDispatcherApplication(create_backend_app)
    hosts = ["dynamodb.us-east-1.amazonaws.com", "sqs.us-east-1.amazonaws.com", None]
    expected = [emulator.MOTO_BACKEND_FOR_HOST(dispatcher, host) for host in hosts]
    assert [dispatcher.get_backend_for_host(h) for h in hosts] == expected == ["dynamodb", "sqs", None]
    listed.clear()
    assert [dispatcher.get_backend_for_host(h) for h in hosts * 3] == expected * 3
    assert listed == [], "the folder was listed again for a host already seen"
