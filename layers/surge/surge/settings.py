"""Deployment settings: read once from the environment at the edge, then passed down as objects."""

from __future__ import annotations

from collections.abc import Mapping

from pydantic import BaseModel, ConfigDict, Field


class Settings(BaseModel):
    """Where the shared state lives and how the front, the stream and the workers behave."""

    model_config = ConfigDict(frozen=True, allow_inf_nan=False)

    app_module: str
    events_table_name: str
    state_table_name: str
    queue_url_prefix: str
    heartbeat_interval_s: float = Field(15.0, gt=0)
    stream_max_s: float = Field(870.0, gt=0)
    run_wait_s: float = Field(870.0, gt=0)
    """How long a direct call (`POST /gradio_api/run/<api_name>`) waits for its answer before it is
    cancelled (deployed: under the API function's timeout and API Gateway's 29 s)."""
    lease_ttl_s: float = Field(30.0, gt=0)
    visibility_timeout_s: int = Field(60, ge=0, le=43_200)
    poll_wait_s: int = Field(20, ge=0, le=20)
    max_payload_bytes: int = Field(1_000_000, ge=1, le=1_000_000)
    """A join's largest inputs (JSON): they travel in the job's SQS message, which takes 1 MiB (the
    queues' MaximumMessageSize, CloudFormation's default), with room left for the caller's headers: hence
    at most 1,000,000 (a larger one would let inputs through that no message can carry)."""
    job_ttl_s: int = Field(86_400, ge=60)
    orphan_after_s: float = Field(300.0, gt=0)
    """A waiting job counted this long ago whose queue holds no message at all (none visible, none in
    flight) lost its message (its join was killed between counting it and sending it): an idle worker
    ends it, so its place of `max_size` is freed (see `Worker._reconcile`)."""
    reconcile_every_s: float = Field(60.0, gt=0)
    """How often an idle worker looks for such jobs (one queue-attributes call; a scan only when empty)."""
    max_attempts: int = Field(3, ge=1)
    session_grace_s: float = Field(10.0, ge=0)
    cors_allow_origins: str = "*"
    join_rate_per_s: float = Field(20.0, gt=0)
    join_burst: int = Field(40, ge=1)
    admission_shards: int = Field(4, ge=1, le=50)  # one BatchGetItem (100 keys) reads every shard's two items
    """Admission counter items per app: each join and claim writes one of them, so a shard takes
    about 1/n of the joins (one DynamoDB item takes about 1,000 write units a second)."""
    counters_tick_s: float = Field(0.5, gt=0)
    """How often a stream process reads the counters, once for every session it holds."""
    boto_max_pool_connections: int = Field(128, ge=1)
    """HTTP connections each AWS client of a process keeps (its threads share them)."""
    thread_pool_size: int = Field(256, ge=1)
    """Threads a front process runs its blocking AWS calls on (anyio's default is 40): one process holds
    many streams and joins at once, and each call mostly waits on the network."""
    join_threads: int = Field(32, ge=1)
    """Joins one front process admits at once, on threads of their own; the others wait their turn
    holding no thread. A crowd's joins then never take the threads the open streams read their sessions
    on (they did: at 1,000 users the streams' first reads queued behind hundreds of joins, and finished
    jobs went undelivered for seconds)."""
    worker_cluster_name: str = ""
    """The ECS cluster of the worker services, which a join wakes from zero (empty: no waking, as locally)."""
    worker_start_limit_s: float = Field(1200.0, gt=0)
    """A job still waiting this long with no live worker of its function fails with a clear error
    (no GPU capacity or quota: nobody should wait forever)."""
    app_declaration_path: str = ""
    """A front reads the app from this declaration (`surge.declared`) instead of importing `app_module`."""
    files_bucket_name: str = ""
    """The S3 bucket of uploads and file outputs (empty: the app takes no files)."""
    max_file_size_bytes: int = Field(50 * 1024 * 1024, ge=1)
    """Largest upload when the app sets no `max_file_size` of its own (above: HTTP 413)."""
    ingress_body_limit_bytes: int = Field(0, ge=0)
    """The largest file the deployment's way in carries to the front (API Gateway to Lambda: about 4.4 MB
    once base64-encoded into Lambda's 6 MB request); 0: no such limit (locally). An app's `max_file_size`
    is lowered to it, and `/config` says so, so clients refuse a larger file before sending it."""
    max_threads: int = Field(0, ge=0)
    """Each worker's thread pool for sync functions (Gradio's `launch(max_threads=)`); 0: the app's own."""
    ack_within_s: float = Field(1.0, ge=0)
    """A worker acknowledges finished messages ten to a call, or once the oldest waited this long (a
    message never acknowledged comes back after its visibility timeout and is settled unrun)."""
    page_event_slots: int = Field(8, ge=1)
    """Loops of a worker of a Gradio page's own events (`page_events`): a page's quick UI steps must not
    wait behind a long call of another visitor in the same worker."""
    rescan_s: float = Field(15.0, gt=0)
    """How often a stream reads the log of a session whose jobs all wait behind others (safety net)."""

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Settings:
        """Build from environment variables named like the fields in upper case; fails on a missing one."""
        values: dict[str, str] = {}
        missing = []
        for name, field in cls.model_fields.items():
            key = name.upper()
            if key in env:
                values[name] = env[key]
            elif field.is_required():
                missing.append(key)
        if missing:
            raise RuntimeError(f"missing environment variables: {', '.join(missing)}")
        return cls.model_validate(values)

    def queue_url(self, api_name: str) -> str:
        return f"{self.queue_url_prefix}{api_name}"

    def dead_letter_queue_url(self, api_name: str) -> str:
        return f"{self.queue_url_prefix}{api_name}-dlq"

    def to_env(self) -> dict[str, str]:
        return {name.upper(): str(value) for name, value in self.model_dump().items()}
