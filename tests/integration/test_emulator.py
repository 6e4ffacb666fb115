"""The local emulator's fixes to moto: same results as moto's own code, and they notice if moto changes."""

from __future__ import annotations

import inspect
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import boto3
import pytest
from botocore.exceptions import ClientError
from moto.dynamodb.models.dynamo_type import Item
from moto.dynamodb.responses import DynamoHandler
from moto.s3.models import FakeBucket
from moto.sqs.models import Message, SQSBackend, sqs_backends

from surge.application import load_app
from surge_local import emulator
from surge_local.launcher import emulator_client_kwargs, free_port, wait_for_port
from surge_local.provision import provision


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


def test_expired_items_are_deleted_as_dynamodbs_ttl_deletes_them(aws: None) -> None:
    """moto keeps items past their TTL: a long local run piled up finish notices, batch records and
    cancelled jobs, and the queries of those partitions grew with them."""
    resources = provision(load_app("examples.demo_app:app"), prefix="ttl-")
    dynamodb = boto3.client("dynamodb")
    ttl = dynamodb.describe_time_to_live(TableName=resources.events_table_name)["TimeToLiveDescription"]
    assert ttl == {"TimeToLiveStatus": "ENABLED", "AttributeName": "expires_at"}, "as the template's tables"
    now = time.time()
    for sk, expires in (("old", now - 5), ("fresh", now + 600), ("kept", None)):
        item = {"session_hash": {"S": "s1"}, "sk": {"S": sk}}
        if expires is not None:
            item["expires_at"] = {"N": str(int(expires))}
        dynamodb.put_item(TableName=resources.events_table_name, Item=item)
    dynamodb.put_item(
        TableName=resources.events_table_name,
        Item={"session_hash": {"S": "s2"}, "sk": {"S": "gone"}, "expires_at": {"N": str(int(now - 1))}},
    )
    assert emulator.sweep_expired(now) == 2
    left = dynamodb.scan(TableName=resources.events_table_name)["Items"]
    assert sorted(item["sk"]["S"] for item in left) == ["fresh", "kept"]
    assert emulator.sweep_expired(now) == 0


def test_moto_models_of_dynamodb_and_sqs_are_not_kept_after_use(aws: None) -> None:
    """moto records every model it creates, for its dashboard: every item put, and each copy moto makes
    of one per query or update, stayed alive, and the DynamoDB emulator grew by about 155 MB per 1,000
    jobs. S3's models stay recorded (moto's reset disposes of their files through that list)."""
    assert "instances_tracked.append" in inspect.getsource(emulator.MOTO_MODEL_NEW), "moto changed: re-check fix 9"
    emulator.patch_moto()
    dynamodb = boto3.client("dynamodb")
    dynamodb.create_table(
        TableName="kept",
        BillingMode="PAY_PER_REQUEST",
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
    )
    before = len(Item.instances_tracked)  # type: ignore[attr-defined]
    for k in range(50):
        dynamodb.put_item(TableName="kept", Item={"pk": {"S": f"job{k}"}, "n": {"N": "1"}})
        dynamodb.update_item(
            TableName="kept",
            Key={"pk": {"S": f"job{k}"}},
            UpdateExpression="ADD n :one",
            ExpressionAttributeValues={":one": {"N": "1"}},
        )
        dynamodb.delete_item(TableName="kept", Key={"pk": {"S": f"job{k}"}})
    assert len(Item.instances_tracked) == before  # type: ignore[attr-defined]
    sqs = boto3.client("sqs")
    url = sqs.create_queue(QueueName="kept")["QueueUrl"]
    for _ in range(20):
        sqs.send_message(QueueUrl=url, MessageBody="x")
    assert len(Message.instances_tracked) == 0  # type: ignore[attr-defined]
    boto3.client("s3").create_bucket(Bucket="kept")
    assert FakeBucket.instances_tracked, "S3's models are still recorded"  # type: ignore[attr-defined]


@contextmanager
def emulator_process(*arguments: str) -> Iterator[str]:
    """`python -m surge_local.emulator` on a free port, as the launcher starts it; yields its URL."""
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "surge_local.emulator", "--port", str(port), *arguments],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for_port(port, 30)
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        assert process.wait(10) == 0, "SIGTERM stops the emulator cleanly"


@pytest.fixture
def sqs_emulator() -> Iterator[str]:
    with emulator_process("--services", "sqs") as url:
        yield url


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


@pytest.mark.crossprocess
def test_an_emulator_started_alone_provisions_a_whole_app_as_the_readme_starts_it() -> None:
    """README's `sam local` sequence: one emulator, then `provision`. Alone it served SQS and DynamoDB
    only, and provisioning failed at the files bucket (S3 refused: `ListBuckets`, Bad Request)."""
    from surge.application import load_app
    from surge_local.provision import provision

    with emulator_process() as url:
        made = provision(load_app("examples.demo_app:app"), client_kwargs=emulator_client_kwargs(url))
        s3 = boto3.client("s3", **emulator_client_kwargs(url))
        assert made.files_bucket_name in {bucket["Name"] for bucket in s3.list_buckets()["Buckets"]}


@pytest.mark.crossprocess
def test_fidelity_server_cancels_truly_concurrent_transactions_but_never_one_clients_sequence() -> None:
    with emulator_process("--services", "dynamodb", "--fidelity") as url:
        setup = boto3.client("dynamodb", **emulator_client_kwargs(url))
        setup.create_table(
            TableName="t",
            KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
            BillingMode="PAY_PER_REQUEST",
        )

        def add(client: object, pk: str) -> str:
            update = {
                "TableName": "t",
                "Key": {"pk": {"S": pk}},
                "UpdateExpression": "ADD n :one",
                "ExpressionAttributeValues": {":one": {"N": "1"}},
            }
            try:
                client.transact_write_items(TransactItems=[{"Update": update}])  # type: ignore[attr-defined]
                return "ok"
            except ClientError as error:
                return str(error.response["CancellationReasons"][0]["Code"])

        assert {add(setup, "alone") for _ in range(20)} == {"ok"}, "one client's calls, one after another"

        clients = [boto3.client("dynamodb", **emulator_client_kwargs(url)) for _ in range(8)]
        start = threading.Barrier(len(clients))
        outcomes: list[str] = []

        def contend(client: object) -> None:
            start.wait()
            outcomes.extend(add(client, "hot") for _ in range(5))

        threads = [threading.Thread(target=contend, args=(c,)) for c in clients]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert set(outcomes) == {"ok", "TransactionConflict"}
        hot = setup.get_item(TableName="t", Key={"pk": {"S": "hot"}}, ConsistentRead=True)["Item"]
        assert int(hot["n"]["N"]) == outcomes.count("ok"), "a cancelled transaction changed nothing"


@pytest.mark.crossprocess
def test_a_long_poll_longer_than_the_sdks_read_timeout_ends_empty_not_in_an_error(
    sqs_emulator: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SQS holds an empty queue's answer for the whole wait (20 s for the deployed workers), longer than
    the SDK's read timeout (10 s): every idle poll timed out, was sent twice more and failed, and the
    worker backed off. The receiving client waits out the poll. Scaled down here: a read timeout of 1 s,
    a poll of 2 s."""
    from botocore.config import Config

    from surge import broker as broker_module
    from surge.broker import Broker
    from surge.settings import Settings
    from surge.store import aws

    monkeypatch.setattr(aws, "BOTO_CONFIG", aws.BOTO_CONFIG.merge(Config(read_timeout=1)))
    monkeypatch.setattr(broker_module, "LONG_POLL_READ_S", 4, raising=False)
    kwargs = emulator_client_kwargs(sqs_emulator)
    monkeypatch.setenv("AWS_ENDPOINT_URL_SQS", sqs_emulator)
    for name, key in (("AWS_ACCESS_KEY_ID", "aws_access_key_id"), ("AWS_SECRET_ACCESS_KEY", "aws_secret_access_key")):
        monkeypatch.setenv(name, kwargs[key])
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    url = boto3.client("sqs", **kwargs).create_queue(QueueName="idle")["QueueUrl"]
    settings = Settings(
        app_module="examples.demo_app:app", events_table_name="e", state_table_name="s", queue_url_prefix=url[:-4]
    )
    started = time.monotonic()
    assert Broker(settings).receive("idle", 10, 2) == []
    assert 1.8 < time.monotonic() - started < 4, "one poll, waited out"
