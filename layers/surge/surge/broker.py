"""SQS adapter: one standard queue per app function, carrying only job ids."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import boto3

from surge.models import Job, JobMessage
from surge.settings import Settings
from surge.store.aws import aws_errors, client_config

RECEIVE_LIMIT = 10
"""SQS returns at most 10 messages per receive."""


@dataclass(frozen=True)
class Delivery:
    """One received message: its receipt handle and the job it names (None if the body is not ours)."""

    message_id: str
    receipt_handle: str
    body: str
    receive_count: int

    @property
    def message(self) -> JobMessage | None:
        """The job this message carries, or None if the body is not one of ours."""
        try:
            return JobMessage.model_validate_json(self.body)
        except ValueError:
            return None


class Broker:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    @cached_property
    def client(self) -> Any:
        return boto3.client("sqs", config=client_config(self.settings))

    def send(self, job: Job) -> None:
        """Enqueue a job with its inputs (SQS takes up to 1 MiB; inputs are capped below that)."""
        with aws_errors("Enqueueing"):
            self.client.send_message(
                QueueUrl=self.settings.queue_url(job.api_name),
                MessageBody=JobMessage.of(job).model_dump_json(),
            )

    def receive(self, api_name: str, max_messages: int, wait_s: int) -> list[Delivery]:
        with aws_errors("Receiving"):
            response = self.client.receive_message(
                QueueUrl=self.settings.queue_url(api_name),
                MaxNumberOfMessages=max(1, min(RECEIVE_LIMIT, max_messages)),
                WaitTimeSeconds=wait_s,
                VisibilityTimeout=self.settings.visibility_timeout_s,
                MessageSystemAttributeNames=["ApproximateReceiveCount"],
            )
        return [
            Delivery(
                message_id=m["MessageId"],
                receipt_handle=m["ReceiptHandle"],
                body=m["Body"],
                receive_count=int(m.get("Attributes", {}).get("ApproximateReceiveCount", "1")),
            )
            for m in response.get("Messages", [])
        ]

    def delete(self, api_name: str, deliveries: Sequence[Delivery]) -> None:
        for start in range(0, len(deliveries), RECEIVE_LIMIT):
            chunk = deliveries[start : start + RECEIVE_LIMIT]
            with aws_errors("Acknowledging"):
                self.client.delete_message_batch(
                    QueueUrl=self.settings.queue_url(api_name),
                    Entries=[{"Id": str(i), "ReceiptHandle": d.receipt_handle} for i, d in enumerate(chunk)],
                )

    def set_visibility(self, api_name: str, deliveries: Sequence[Delivery], timeout_s: int) -> None:
        """Extend (or, with 0, give back) messages in hand."""
        for start in range(0, len(deliveries), RECEIVE_LIMIT):
            chunk = deliveries[start : start + RECEIVE_LIMIT]
            with aws_errors("Changing visibility"):
                self.client.change_message_visibility_batch(
                    QueueUrl=self.settings.queue_url(api_name),
                    Entries=[
                        {"Id": str(i), "ReceiptHandle": d.receipt_handle, "VisibilityTimeout": timeout_s}
                        for i, d in enumerate(chunk)
                    ],
                )

    def dead_letter(self, api_name: str, deliveries: Sequence[Delivery]) -> None:
        """Move messages that can never run (not ours, or their job is gone) to the dead-letter queue."""
        for delivery in deliveries:
            with aws_errors("Dead-lettering"):
                self.client.send_message(
                    QueueUrl=self.settings.dead_letter_queue_url(api_name), MessageBody=delivery.body or "(empty)"
                )
        self.delete(api_name, deliveries)
