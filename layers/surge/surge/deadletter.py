"""The dead-letter path: a job whose message SQS gave up on is failed, and its client is told so.

DeadLetterFunction feeds it the SQS records of every function's dead-letter queue.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence

from pydantic import BaseModel, ConfigDict, Field

from surge import protocol
from surge.errors import Unavailable
from surge.models import SESSION_HASH_PATTERN, JobMessage
from surge.observer import Observer
from surge.store import Store

logger = logging.getLogger("surge.deadletter")

DEAD_LETTER_MESSAGE = (
    "This job could not be run: its workers stopped before finishing it several times, so it was given up."
)
"""What the client reads in `process_completed` when its job's message was dead-lettered."""


class SqsRecord(BaseModel):
    """One record of a Lambda SQS event (only the fields used here)."""

    model_config = ConfigDict(extra="ignore", populate_by_name=True)

    message_id: str = Field(alias="messageId")
    body: str


class SqsEvent(BaseModel):
    model_config = ConfigDict(extra="ignore", populate_by_name=True)

    records: list[SqsRecord] = Field(alias="Records")


class JobKey(BaseModel):
    """The job a message names, read from a body that is not a whole `JobMessage` to pydantic's parser."""

    model_config = ConfigDict(extra="ignore")

    job_id: str = Field(min_length=1, max_length=64)
    session_hash: str = Field(pattern=SESSION_HASH_PATTERN)


def job_key(body: str) -> tuple[str, str] | None:
    """The (session hash, job id) a message names, or None. A worker dead-letters a message it cannot
    parse (pydantic's parser stops at 200 levels of nesting; inputs are now held to fewer at the join)
    whose job may still be counted and awaited: Python's own parser reads deeper, so that job is failed
    and its visitor told, not dropped."""
    try:
        return (message := JobMessage.model_validate_json(body)).session_hash, message.job_id
    except ValueError:
        pass
    try:
        key = JobKey.model_validate(json.loads(body))
    except (ValueError, RecursionError):
        return None
    return key.session_hash, key.job_id


def fail_dead_lettered(records: Sequence[SqsRecord], store: Store, observer: Observer) -> list[str]:
    """Fail the job of each dead-lettered message (idempotent: an ended job is left alone).

    Returns the message ids to retry (AWS was unavailable); every other message is done with,
    including bodies that name no job (nothing waits for those).
    """
    retry: list[str] = []
    for record in records:
        key = job_key(record.body)
        if key is None:
            logger.error("dropping a dead-lettered message that names no job: %r", record.body[:200])
            continue
        session_hash, job_id = key
        try:
            job = store.get_job(session_hash, job_id)
            if job is None:
                logger.warning("dead-lettered job %s no longer exists", job_id)
                continue
            if store.fail_abandoned(job, protocol.failed(job.job_id, DEAD_LETTER_MESSAGE)):
                observer.job_failed(job.api_name, "dead_letter")
                logger.warning("failed dead-lettered job %s of %s", job_id, job.api_name)
        except Unavailable:
            logger.warning("could not fail dead-lettered job %s now; SQS will redeliver it", job_id)
            retry.append(record.message_id)
    return retry


def batch_response(retry: Sequence[str]) -> dict[str, list[dict[str, str]]]:
    """The Lambda partial-batch response (`ReportBatchItemFailures`) naming the messages to redeliver."""
    return {"batchItemFailures": [{"itemIdentifier": message_id} for message_id in retry]}
