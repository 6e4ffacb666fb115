"""The emulator's fidelity mode: DynamoDB's per-item transaction conflicts and throughput caps, which moto
lacks, answered with DynamoDB's own errors (moto in-process, the same request path as the server's)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError
from moto.dynamodb.models import dynamodb_backends

from surge_local import emulator
from surge_local.fidelity import Fidelity


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def fidelity(aws: None) -> Iterator[Any]:
    """Installs a `Fidelity` built from the test's arguments; the emulator is plain moto again afterwards."""

    def install(**kwargs: Any) -> Fidelity:
        mode = Fidelity(**kwargs)
        emulator.patch_moto(mode)
        return mode

    yield install
    emulator.patch_moto(None)


def _client(max_attempts: int = 1) -> Any:
    client = boto3.client(
        "dynamodb", region_name="us-east-1", config=Config(retries={"mode": "standard", "max_attempts": max_attempts})
    )
    client.create_table(
        TableName="state",
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
        AttributeDefinitions=[{"AttributeName": a, "AttributeType": "S"} for a in ("pk", "sk")],
        BillingMode="PAY_PER_REQUEST",
    )
    return client


def _key(pk: str) -> dict[str, Any]:
    return {"pk": {"S": pk}, "sk": {"S": "x"}}


def _add(pk: str) -> dict[str, Any]:
    return {
        "Update": {
            "TableName": "state",
            "Key": _key(pk),
            "UpdateExpression": "ADD n :one",
            "ExpressionAttributeValues": {":one": {"N": "1"}},
        }
    }


def _count(client: Any, pk: str) -> int:
    item = client.get_item(TableName="state", Key=_key(pk), ConsistentRead=True).get("Item")
    return int(item["n"]["N"]) if item else 0


def test_overlapping_transactions_on_one_item_cancel_the_later_with_transaction_conflict(fidelity: Any) -> None:
    clock = Clock()
    fidelity(clock=clock, conflict_window_s=0.010)
    client = _client()
    client.transact_write_items(TransactItems=[_add("counters"), _add("job-1")])
    clock.now += 0.004  # another client's transaction, inside the first one's span
    with pytest.raises(ClientError) as cancelled:
        client.transact_write_items(TransactItems=[_add("job-2"), _add("counters")])
    assert cancelled.value.response["Error"]["Code"] == "TransactionCanceledException"
    assert [r["Code"] for r in cancelled.value.response["CancellationReasons"]] == ["None", "TransactionConflict"]
    with pytest.raises(ClientError) as refused:
        client.put_item(TableName="state", Item={**_key("counters"), "n": {"N": "7"}})
    assert refused.value.response["Error"]["Code"] == "TransactionConflictException"
    assert (_count(client, "counters"), _count(client, "job-2")) == (1, 0), "refused requests changed nothing"

    clock.now += 0.010
    client.transact_write_items(TransactItems=[_add("job-2"), _add("counters")])
    assert (_count(client, "counters"), _count(client, "job-2")) == (2, 1)


def test_a_request_waiting_behind_a_running_transaction_conflicts_but_the_same_clients_next_call_does_not(
    aws: None,
) -> None:
    clock = Clock()
    mode = Fidelity(clock=clock, conflict_window_s=0.010)
    _client()
    backend = dynamodb_backends["123456789012"]["us-east-1"]
    params = {"TransactItems": [_add("counters")]}
    started = clock.now
    assert mode.check("TransactWriteItems", params, backend, started, "client-a") is None
    clock.now += 0.002
    mode.applied()
    waited = mode.check("TransactWriteItems", params, backend, started + 0.001, "client-b")
    assert waited is not None and "TransactionConflict" in waited[2], "it arrived while the first one ran"
    clock.now += 0.001  # the first client got its answer and sends its next call on the same connection
    assert mode.check("TransactWriteItems", params, backend, clock.now, "client-a") is None
    mode.applied()
    update = {"TableName": "state", "Key": _key("counters")}
    refusal = mode.check("UpdateItem", update, backend, clock.now, "client-b")
    assert refusal is not None and "TransactionConflictException" in refusal[2], "another client, in the window"


def test_writes_over_the_items_cap_are_throttled_as_dynamodb_does_and_other_items_are_not(fidelity: Any) -> None:
    fidelity(clock=Clock(), conflict_window_s=0.0, write_units_per_s=20, read_units_per_s=30)
    client = _client()
    outcomes = []
    for i in range(25):
        try:
            client.put_item(TableName="state", Item={**_key("hot"), "n": {"N": str(i)}})
            outcomes.append("ok")
        except ClientError as error:
            outcomes.append(error.response["Error"]["Code"])
            reasons = error.response.get("ThrottlingReasons", [])
    assert outcomes == ["ok"] * 20 + ["ProvisionedThroughputExceededException"] * 5
    assert reasons[0]["reason"] == "TableWriteKeyRangeThroughputExceeded"
    assert reasons[0]["resource"].endswith(":table/state")
    client.put_item(TableName="state", Item={**_key("cold"), "n": {"N": "1"}})

    eventual = [_read(client, "cold", consistent=False) for _ in range(70)]
    assert eventual.count("ok") == 60, "an eventually consistent read costs half a unit"


def _read(client: Any, pk: str, consistent: bool) -> str:
    try:
        client.get_item(TableName="state", Key=_key(pk), ConsistentRead=consistent)
        return "ok"
    except ClientError as error:
        return str(error.response["Error"]["Code"])


def test_a_transaction_over_an_items_cap_is_cancelled_with_throttling_error(fidelity: Any) -> None:
    fidelity(clock=Clock(), conflict_window_s=0.0, write_units_per_s=20)
    client = _client()
    codes = []
    for i in range(12):  # two units per transactional write of one item
        try:
            client.transact_write_items(TransactItems=[_add(f"job-{i}"), _add("counters")])
        except ClientError as error:
            codes.append([r["Code"] for r in error.response["CancellationReasons"]])
    assert codes == [["None", "ThrottlingError"]] * 2
    assert _count(client, "counters") == 10


def test_the_sdks_standard_retry_recovers_from_throttling(fidelity: Any) -> None:
    fidelity(conflict_window_s=0.0, write_units_per_s=20)
    client = _client(max_attempts=10)
    retries = 0
    for i in range(30):
        response = client.put_item(TableName="state", Item={**_key("hot"), "n": {"N": str(i)}})
        retries += response["ResponseMetadata"]["RetryAttempts"]
    assert retries > 0, "some writes were throttled and retried"
    assert client.get_item(TableName="state", Key=_key("hot"))["Item"]["n"] == {"N": "29"}


def test_a_transaction_is_answered_when_it_ends_so_a_call_that_follows_its_answer_never_meets_it(
    fidelity: Any,
) -> None:
    """A worker claims a job right after receiving the message its join sent once the join's transaction
    was answered: DynamoDB has committed that transaction by then, so the claim cannot conflict with it."""
    fidelity(conflict_window_s=0.05)
    client = _client()
    started = time.monotonic()
    client.transact_write_items(TransactItems=[_add("counters"), _add("job-1")])
    assert time.monotonic() - started >= 0.05, "answered when its window ends"
    client.transact_write_items(TransactItems=[_add("job-1"), _add("counters")])  # the claim that follows
    assert (_count(client, "counters"), _count(client, "job-1")) == (2, 2)
