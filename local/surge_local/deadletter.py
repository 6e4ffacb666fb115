"""The local stand-in for DeadLetterFunction's SQS event source: what SQS moves to a function's dead-letter
queue is handed to `surge.deadletter.fail_dead_lettered`, so a job given up on fails with a message its
client reads, on a laptop as on AWS (without it, such a job stayed `running` and its client waited)."""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING

from surge.deadletter import SqsRecord, fail_dead_lettered
from surge.errors import Unavailable
from surge.observer import Observer
from surge.settings import Settings
from surge.store import Store, aws_errors

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_sqs import SQSClient

logger = logging.getLogger("surge.local.deadletter")

POLL_WAIT_S = 1
"""One thread looks at each dead-letter queue in turn, with a long poll of this many seconds: one
emulator thread and about one call a second for the whole app, whatever its number of functions."""


class DeadLetters:
    """Drains every function's dead-letter queue on one thread; `stop()` ends it (within one poll)."""

    def __init__(self, settings: Settings, api_names: Sequence[str], sqs: SQSClient, dynamodb: DynamoDBClient) -> None:
        self.urls = [settings.dead_letter_queue_url(name) for name in api_names]
        self.sqs = sqs
        self.store = Store(settings, client=dynamodb)
        self.observer = Observer()
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._drain, name="surge-dead-letters", daemon=True)

    def start(self) -> DeadLetters:
        if self.urls:
            self.thread.start()
        return self

    def stop(self) -> None:
        self.stopping.set()

    def _drain(self) -> None:
        while not self.stopping.is_set():
            for url in self.urls:
                try:
                    self._handle(url)
                except Unavailable:
                    if self.stopping.is_set():
                        return  # the emulators stop right after
                    logger.warning("could not read the dead-letter queue %s; trying again", url)
                    self.stopping.wait(1)

    def _handle(self, url: str) -> None:
        with aws_errors("Reading a dead-letter queue"):
            response = self.sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=POLL_WAIT_S)
        messages = response.get("Messages", [])
        if not messages:
            return
        records = [SqsRecord(messageId=m["MessageId"], body=m["Body"]) for m in messages]
        retry = set(fail_dead_lettered(records, self.store, self.observer))
        done = [m for m in messages if m["MessageId"] not in retry]  # the rest come back, as Lambda's would
        if done:
            with aws_errors("Acknowledging dead-lettered messages"):
                self.sqs.delete_message_batch(
                    QueueUrl=url,
                    Entries=[{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(done)],
                )
