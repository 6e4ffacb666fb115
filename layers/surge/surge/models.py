"""Typed shapes at every boundary: HTTP bodies, the SQS message, DynamoDB items."""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

SESSION_HASH_PATTERN = r"^[A-Za-z0-9_-]{8,128}$"
"""Session hashes are chosen by clients (gradio_client: a uuid4; @gradio/client and Gradio's page: about ten
base-36 characters from `Math.random`); the shortest, most guessable ones are refused."""


class JoinBody(BaseModel):
    """`POST /gradio_api/queue/join`, as gradio_client sends it (extra Gradio fields are ignored)."""

    model_config = ConfigDict(extra="ignore")

    data: list[Any]
    fn_index: int | None = None
    session_hash: str | None = Field(default=None, pattern=SESSION_HASH_PATTERN)
    api_name: str | None = Field(default=None, max_length=64)
    event_data: Any = None
    """What the page sends with an event that has data (a `.select`'s index and value, a `.like`'s)."""
    trigger_id: int | None = None
    """The component whose event this is (Gradio's `EventData.target`)."""


class RunBody(BaseModel):
    """`POST /gradio_api/run/<api_name>`, Gradio's direct call: every input in order, state ones included
    (`fn_index`, where given, names the event instead of the path, as in Gradio)."""

    model_config = ConfigDict(extra="ignore")

    data: list[Any]
    fn_index: int | None = None
    event_data: Any = None


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


class Caller(BaseModel):
    """Who joined a job, as the front saw the join: what Gradio's `gr.Request` shows the function
    (headers less `Cookie` and `Authorization`, the caller's address, the query string) and the event's
    data. Travels in the queue message only, never in the session log."""

    model_config = ConfigDict(extra="ignore")  # fields a newer front adds do not fail an older worker

    headers: dict[str, str] = Field(default_factory=dict)
    client_host: str | None = None
    client_port: int | None = None
    """The caller's port, where the front saw its socket (not behind API Gateway)."""
    query_params: dict[str, str] = Field(default_factory=dict)
    url: str = ""
    root_url: str = ""
    """The app's public URL as Gradio resolves it from the join (`gradio_page.root_url`): the URLs of the
    job's output files start with it, as Gradio's do."""
    event_data: Any = None
    """The join's `event_data` and `trigger_id`: what a `gr.SelectData` (`gr.EventData`) parameter shows."""
    trigger_id: int | None = None
    simple_format: bool = False
    """Joined through Gradio's curl API (`/gradio_api/call/`), whose stream sends each generator step whole:
    the steps are kept as the core's own diffs (`protocol.diff`: an output appended to or replaced
    whole), which the stream applies exactly, not as `gradio.utils.diff`'s nested ones (that one
    misnumbers deletes at two levels, which the page and gradio_client apply as Gradio's do)."""


class CallBody(BaseModel):
    """`POST /gradio_api/call/<api_name>`: the inputs in order, as Gradio's curl API takes them."""

    model_config = ConfigDict(extra="ignore")

    data: list[Any]


class Job(BaseModel):
    """One admitted request: an item of its session's log (the events table, key session + job id).

    `shard` is the admission counter it was counted in. What the worker writes back (`started_at`,
    `progress`, `chunks`, `result`) is what the session's stream turns into Gradio messages.
    """

    job_id: str
    session_hash: str
    api_name: str
    group: str
    shard: int = 0
    state: JobState
    data: list[Any] = Field(default_factory=list)
    created_at: float
    attempt: int = 0
    worker_id: str | None = None
    started_at: float | None = None
    finished_at: float | None = None
    """When its worker recorded its end (epoch, the worker's clock)."""
    first_output_at: float | None = None
    """When its worker sent the write of its first live output (a generator's message, a progress
    notice): the first moment its visitor had something to be shown before its end (epoch, the worker's
    clock). Only while running: the finish puts the item anew without it."""
    progress: dict[str, Any] | None = None
    progress_after: int | None = None
    """How many of `chunks` there were when `progress` was reported: the stream sends it after those, as
    Gradio sends each message when it happens (None: before every chunk it has not sent yet)."""
    chunks: list[dict[str, Any]] = Field(default_factory=list)
    result: dict[str, Any] | None = None
    result_parts: int = 0
    """How many items beside the job's hold its result, when too large for the job's own (the store's)."""
    caller: Caller | None = None
    """Known to the front that admitted the job and to its worker (from the message), not to streams."""
    ahead: list[int] | None = None
    """Per shard, the group's tail as a read made before this job was counted showed it: those jobs are
    surely ahead of it (set at the join when admission read the counters; None otherwise)."""
    cancel_requested: bool = False
    """Its visitor cancelled it while it ran (the front's mark; a worker's finish puts the item anew)."""
    cancel_delivered: bool = False
    """A stream told the visitor it was cancelled while it still ran (a marker item beside the job's,
    which the finish does not overwrite): no stream delivers anything of it again."""
    chunks_sent: int = 0
    """How many of `chunks` a stream its client dropped had sent (a marker item beside the job's): the
    client built its outputs from them, so the next stream sends the rest, whose diffs apply to those."""


class JobMessage(BaseModel):
    """The SQS message body: the job's key, place and inputs, so a worker claims it without a read."""

    model_config = ConfigDict(extra="ignore")
    """Unknown fields are ignored: during a rolling deploy a newer front's message reaches older workers."""

    job_id: str = Field(min_length=1, max_length=64)
    session_hash: str = Field(pattern=SESSION_HASH_PATTERN)
    api_name: str = Field(min_length=1, max_length=64)
    group: str = Field(min_length=1, max_length=128)
    shard: int = Field(ge=0)
    data: list[Any]
    created_at: float
    caller: Caller | None = None

    @classmethod
    def of(cls, job: Job) -> JobMessage:
        return cls(
            job_id=job.job_id,
            session_hash=job.session_hash,
            api_name=job.api_name,
            group=job.group,
            shard=job.shard,
            data=job.data,
            created_at=job.created_at,
            caller=job.caller,
        )

    def job(self) -> Job:
        """The job as it was admitted (waiting, first attempt)."""
        return Job(state=JobState.WAITING, **self.model_dump())


class Shard(BaseModel):
    """One admission shard: how many jobs joined and left it, app-wide and per group."""

    joined: int = 0
    left: int = 0
    tail: dict[str, int] = Field(default_factory=dict)
    head: dict[str, int] = Field(default_factory=dict)

    @property
    def waiting(self) -> int:
        return max(0, self.joined - self.left)


class Counters(BaseModel):
    """The app's admission counters, sharded so that no single item takes every join and claim.

    A job is counted in one shard. Its rank is bounded from the tails of every shard read just after
    it was seen admitted (`tails`): every job ahead of it joined before, so it is below one of those
    tails. Heads only grow, so the rank only falls, and it is never optimistic.
    """

    shards: list[Shard] = Field(default_factory=list)

    @property
    def waiting(self) -> int:
        return sum(shard.waiting for shard in self.shards)

    @property
    def tail(self) -> dict[str, int]:
        merged: dict[str, int] = {}
        for shard in self.shards:
            for group, value in shard.tail.items():
                merged[group] = merged.get(group, 0) + value
        return merged

    def queue_size(self, group: str) -> int:
        return sum(max(0, shard.tail.get(group, 0) - shard.head.get(group, 0)) for shard in self.shards)

    def tails(self, group: str) -> list[int]:
        return [shard.tail.get(group, 0) for shard in self.shards]

    def waiting_of(self, group: str, tails: list[int]) -> int:
        """Jobs of the group counted in `tails` (an earlier read of them) that still wait."""
        heads = [shard.head.get(group, 0) for shard in self.shards]
        return sum(max(0, tail - head) for tail, head in zip(tails, heads, strict=False))

    def rank(self, group: str, tails: list[int]) -> int:
        """Jobs of the group still ahead of a job admitted before `tails` were read: 0 means next."""
        return max(0, self.waiting_of(group, tails) - 1)


class FunctionStats(BaseModel):
    """Smoothed batch duration of one function, written by workers, read for ETA."""

    avg_batch_s: float | None = None
    """The function's own run time per batch."""
    avg_batch_size: float | None = None
    batches: int = 0
    avg_cycle_s: float | None = None
    """From the claim's start to the batch's results recorded: what a visitor waits once the job is
    claimed, and how often a busy worker takes its next batch (the run plus the claim and finish writes)."""

    @property
    def cycle_s(self) -> float | None:
        """The best known time a batch takes as seen from outside the worker."""
        return self.avg_cycle_s if self.avg_cycle_s is not None else self.avg_batch_s
