"""Creates the tables and queues of an app where no template does it: the local stack and tests."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import boto3

from surge.application import App


@dataclass(frozen=True)
class Resources:
    events_table_name: str
    state_table_name: str
    queue_url_prefix: str
    files_bucket_name: str


def provision(
    app: App,
    prefix: str = "surge-",
    visibility_timeout_s: int = 60,
    max_receive_count: int = 5,
    client_kwargs: Mapping[str, str] | None = None,
    endpoints: Mapping[str, str] | None = None,
) -> Resources:
    """Create (idempotently) the two tables and, per function, a queue with its dead-letter queue.

    `client_kwargs` go to `boto3.client` (the emulator's endpoint and fake credentials, locally);
    `endpoints` ("sqs", "dynamodb" -> URL) override its `endpoint_url` per service.
    `max_receive_count` must exceed the workers' `max_attempts` so that workers fail a job with a
    clear message before SQS moves its message to the dead-letter queue.
    """
    per_service: dict[str, dict[str, Any]] = {}
    for service in ("dynamodb", "sqs"):
        per_service[service] = dict(client_kwargs or {})
        if endpoints and service in endpoints:
            per_service[service]["endpoint_url"] = endpoints[service]
    dynamodb = boto3.client("dynamodb", **per_service["dynamodb"])
    sqs = boto3.client("sqs", **per_service["sqs"])
    tables: dict[str, list[tuple[str, Any]]] = {
        "events": [("session_hash", "HASH"), ("sk", "RANGE")],
        "state": [("pk", "HASH"), ("sk", "RANGE")],
    }
    existing = set(dynamodb.list_tables()["TableNames"])
    for name, key in tables.items():
        table_name = f"{prefix}{name}"
        if table_name in existing:
            continue
        dynamodb.create_table(
            TableName=table_name,
            BillingMode="PAY_PER_REQUEST",
            KeySchema=[{"AttributeName": attr, "KeyType": kind} for attr, kind in key],
            AttributeDefinitions=[{"AttributeName": attr, "AttributeType": "S"} for attr, _ in key],
        )
        # As the template: the emulator then deletes expired items, as DynamoDB does (`emulator.sweep_expired`).
        dynamodb.update_time_to_live(
            TableName=table_name, TimeToLiveSpecification={"Enabled": True, "AttributeName": "expires_at"}
        )
    queue_url = ""
    for function in app.functions:
        dlq_url = sqs.create_queue(QueueName=f"{prefix}{function.api_name}-dlq")["QueueUrl"]
        dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        queue_url = sqs.create_queue(
            QueueName=f"{prefix}{function.api_name}",
            Attributes={
                "VisibilityTimeout": str(visibility_timeout_s),
                "RedrivePolicy": json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": max_receive_count}),
            },
        )["QueueUrl"]
    url_prefix = queue_url[: len(queue_url) - len(app.functions[-1].api_name)] if app.functions else ""
    return Resources(f"{prefix}events", f"{prefix}state", url_prefix, files_bucket(prefix, per_service["dynamodb"]))


def files_bucket(prefix: str, client_kwargs: dict[str, Any]) -> str:
    """Create (idempotently) the bucket of uploads and file outputs; the template does this in AWS."""
    name = f"{prefix}files"
    s3 = boto3.client("s3", **client_kwargs)
    if name not in {bucket["Name"] for bucket in s3.list_buckets().get("Buckets", [])}:
        s3.create_bucket(Bucket=name)
    return name
