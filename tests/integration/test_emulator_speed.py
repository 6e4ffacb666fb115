"""The emulator's speed fixes: moto's results (transactions all or nothing, query order) without whole-table work."""

from __future__ import annotations

import inspect
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError
from moto.dynamodb.models.table import Table

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
