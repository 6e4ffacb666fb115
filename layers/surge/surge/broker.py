"""SQS adapter: one standard queue per app function, each message a job's key, place and inputs."""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import boto3
from botocore.config import Config

from surge.models import Job, JobMessage
from surge.settings import Settings
from surge.store.aws import aws_errors, client_config

logger = logging.getLogger(__name__)

RECEIVE_LIMIT = 10
"""SQS returns at most 10 messages per receive."""

QUEUE_COUNTS = (
    "ApproximateNumberOfMessages",
    "ApproximateNumberOfMessagesNotVisible",
    "ApproximateNumberOfMessagesDelayed",
)

LONG_POLL_READ_S = 30
"""The receiving client's read timeout: SQS's longest poll (20 s) and a margin."""


def message_body(job: Job) -> str:
    """The job's message as JSON. SQS refuses a body holding U+FFFE or U+FFFF (noncharacters, outside what
    it takes: moto does not check), which only a string of the inputs can hold: they go as JSON escapes."""
    return JobMessage.of(job).model_dump_json().replace("\ufffe", "\\ufffe").replace("\uffff", "\\uffff")


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

    @cached_property
    def receiver(self) -> Any:
        """The client of the worker's long polls, whose read timeout outlasts the longest poll: SQS holds
        its answer up to 20 s when the queue is empty, and under the SDK's 10 s read timeout every idle
        poll of 20 s (the deployed workers' `POLL_WAIT_S`) timed out, was sent twice more, and failed."""
        return boto3.client("sqs", config=client_config(self.settings).merge(Config(read_timeout=LONG_POLL_READ_S)))

    def send(self, job: Job) -> None:
        """Enqueue a job with its inputs (SQS takes up to 1 MiB; inputs are capped below that)."""
        with aws_errors("Enqueueing"):
            self.client.send_message(QueueUrl=self.settings.queue_url(job.api_name), MessageBody=message_body(job))

    def holds_none(self, api_name: str) -> bool:
        """Whether the function's queue holds no message at all: none visible, in flight or delayed (SQS's
        approximate counts, which settle within about a minute)."""
        with aws_errors("Reading the queue's counts"):
            attributes = self.client.get_queue_attributes(
                QueueUrl=self.settings.queue_url(api_name), AttributeNames=list(QUEUE_COUNTS)
            )["Attributes"]
        return all(int(attributes.get(name, "0")) == 0 for name in QUEUE_COUNTS)

    def receive(self, api_name: str, max_messages: int, wait_s: int) -> list[Delivery]:
        with aws_errors("Receiving"):
            response = self.receiver.receive_message(
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
        self._each_batch(api_name, "Acknowledging", self.client.delete_message_batch, deliveries, {})

    def set_visibility(self, api_name: str, deliveries: Sequence[Delivery], timeout_s: int) -> None:
        """Extend (or, with 0, give back) messages in hand."""
        self._each_batch(
            api_name,
            "Changing visibility",
            self.client.change_message_visibility_batch,
            deliveries,
            {"VisibilityTimeout": timeout_s},
        )

    def _each_batch(
        self, api_name: str, what: str, call: Any, deliveries: Sequence[Delivery], extra: dict[str, Any]
    ) -> None:
        """`call` on every delivery, 10 a request. SQS answers a batch 200 even where some of its entries
        failed: those that failed on its side are sent again (twice at most), and what still failed is
        logged (a receipt handle that is no longer valid: the message went back to the queue meanwhile,
        and the claim's conditions stop its job from running twice)."""
        for start in range(0, len(deliveries), RECEIVE_LIMIT):
            entries = {
                str(i): {"Id": str(i), "ReceiptHandle": d.receipt_handle, **extra}
                for i, d in enumerate(deliveries[start : start + RECEIVE_LIMIT])
            }
            refused: list[dict[str, Any]] = []
            for attempt in range(3):
                with aws_errors(what):
                    failed = call(QueueUrl=self.settings.queue_url(api_name), Entries=list(entries.values())).get(
                        "Failed", []
                    )
                refused += [f for f in failed if f.get("SenderFault")]
                again = [f for f in failed if not f.get("SenderFault")]
                if not again or attempt == 2:
                    refused += again
                    break
                entries = {f["Id"]: entries[f["Id"]] for f in again}
                time.sleep(0.05 * (attempt + 1))
            for entry in refused:
                logger.warning(
                    "%s %s: SQS refused an entry: %s %s", what, api_name, entry.get("Code"), entry.get("Message")
                )

    def dead_letter(self, api_name: str, deliveries: Sequence[Delivery]) -> None:
        """Move messages that can never run (not ours, or their job is gone) to the dead-letter queue."""
        for delivery in deliveries:
            with aws_errors("Dead-lettering"):
                self.client.send_message(
                    QueueUrl=self.settings.dead_letter_queue_url(api_name), MessageBody=delivery.body or "(empty)"
                )
        self.delete(api_name, deliveries)
