"""Typed shapes at every boundary: HTTP bodies, the SQS message, DynamoDB items."""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

SESSION_HASH_PATTERN = r"^[A-Za-z0-9_-]{16,128}$"
"""Session hashes are chosen by clients (gradio_client: a uuid4); short, guessable ones are refused."""


class JoinBody(BaseModel):
    """`POST /gradio_api/queue/join`, as gradio_client sends it (extra Gradio fields are ignored)."""

    model_config = ConfigDict(extra="ignore")

    data: list[Any]
    fn_index: int | None = None
    session_hash: str | None = Field(default=None, pattern=SESSION_HASH_PATTERN)
    api_name: str | None = Field(default=None, max_length=64)


EVENT_ID_PATTERN = r"^[A-Za-z0-9_-]{1,64}$"


class CancelBody(BaseModel):
    model_config = ConfigDict(extra="ignore")

    session_hash: str = Field(pattern=SESSION_HASH_PATTERN)
    event_id: str = Field(pattern=EVENT_ID_PATTERN)
    fn_index: int | None = None


class ResetBody(BaseModel):
    model_config = ConfigDict(extra="ignore")

    event_id: str | None = Field(default=None, pattern=EVENT_ID_PATTERN)


class EventId(BaseModel):
    event_id: str


class Success(BaseModel):
    success: bool = True


class JobState(StrEnum):
    WAITING = "waiting"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"


TERMINAL_STATES = frozenset({JobState.COMPLETED, JobState.FAILED, JobState.CANCELLED})


class Job(BaseModel):
    """One admitted request (the jobs table item). `seq` is its place in its concurrency group."""

    job_id: str
    session_hash: str
    api_name: str
    group: str
    seq: int
    state: JobState
    data: list[Any]
    created_at: float
    attempt: int = 0
    worker_id: str | None = None


class JobMessage(BaseModel):
    """The SQS message body: only the job id (payloads live in the jobs table)."""

    model_config = ConfigDict(extra="forbid")

    job_id: str = Field(min_length=1, max_length=64)


class StoredEvent(BaseModel):
    """One entry of a session's event log (the events table). `body` is the Gradio message."""

    sk: str
    body: dict[str, Any]
    group: str | None = None
    seq: int | None = None
    api_name: str | None = None


class Counters(BaseModel):
    """The app's admission item: jobs waiting app-wide, and per group how many joined and left."""

    waiting: int = 0
    tail: dict[str, int] = Field(default_factory=dict)
    head: dict[str, int] = Field(default_factory=dict)

    def queue_size(self, group: str) -> int:
        return max(0, self.tail.get(group, 0) - self.head.get(group, 0))

    def rank(self, group: str, seq: int) -> int:
        """Jobs of the group still ahead of `seq` (from counters, no scan): 0 means next."""
        return max(0, seq - self.head.get(group, 0) - 1)


class FunctionStats(BaseModel):
    """Smoothed batch duration of one function, written by workers, read for ETA."""

    avg_batch_s: float | None = None
    avg_batch_size: float | None = None
    batches: int = 0
