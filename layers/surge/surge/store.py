"""DynamoDB adapter: admission counters, jobs, session event logs, concurrency leases, worker liveness, stats.

Only this module and `broker` call boto3; AWS errors become domain errors here.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from surge.errors import QueueFull, Unavailable
from surge.models import Counters, FunctionStats, Job, JobState, StoredEvent
from surge.settings import Settings

COUNTERS_KEY = {"pk": {"S": "counters"}, "sk": {"S": "app"}}
BOTO_CONFIG = Config(
    retries={"mode": "standard", "max_attempts": 3},
    max_pool_connections=64,
    connect_timeout=3,
    read_timeout=10,
)
TRANSACTION_LIMIT = 100
PASSED_THROUGH = ("ConditionalCheckFailedException", "TransactionCanceledException")
"""Refusals the callers inspect themselves; every other AWS failure becomes `Unavailable`."""


class _Clock:
    """Strictly increasing nanosecond stamps within a process, so a writer's events keep their order."""

    def __init__(self) -> None:
        self._last = 0
        self._lock = threading.Lock()

    def next(self) -> int:
        with self._lock:
            self._last = max(self._last + 1, time.time_ns())
            return self._last


CLOCK = _Clock()


@contextmanager
def aws_errors(what: str) -> Iterator[None]:
    """Translate a failed AWS call into `Unavailable` (the caller's request changed nothing).

    Condition failures pass through: callers decide what a refused condition means.
    """
    try:
        yield
    except ClientError as error:
        if error.response.get("Error", {}).get("Code") in PASSED_THROUGH:
            raise
        raise Unavailable(f"{what} failed; please try again shortly.") from error
    except BotoCoreError as error:
        raise Unavailable(f"{what} failed; please try again shortly.") from error


def _n(value: float) -> dict[str, str]:
    return {"N": repr(value) if isinstance(value, float) else str(value)}


def _s(value: str) -> dict[str, str]:
    return {"S": value}


def event_sort_key(stamp_ns: int, event_id: str) -> str:
    return f"{stamp_ns:020d}#{event_id}"


@dataclass(frozen=True)
class NewEvent:
    """An event to append: the Gradio message plus what the stream needs to refresh rank."""

    session_hash: str
    body: dict[str, Any]
    group: str | None = None
    seq: int | None = None
    api_name: str | None = None


@dataclass(frozen=True)
class Completion:
    """The terminal state of one job claimed at `attempt`, and the message that tells its client."""

    job: Job
    state: JobState
    body: dict[str, Any]


class Store:
    """All DynamoDB reads and writes of the system. Safe to share between threads."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    @cached_property
    def client(self) -> Any:
        return boto3.client("dynamodb", config=BOTO_CONFIG)

    # ---- admission -------------------------------------------------------------------------------

    def admit(self, job: Job, max_size: int | None, retry_after_s: int) -> None:
        """Record a job and count it waiting, if the app has fewer than `max_size` waiting.

        One conditional transaction decides it: the counter (`waiting < max_size`, and one more joined
        in the job's group) and the job item (which must not exist yet). That makes the write safe to
        retry: when a response is lost and the SDK sends it again, the job item's condition stops the
        second increment. After `Unavailable` the outcome is unknown: `end_waiting` settles it either way.
        """
        names = {"#w": "waiting", "#t": f"tail_{job.group}"}
        values: dict[str, Any] = {":one": _n(1)}
        counter: dict[str, Any] = {
            "TableName": self.settings.state_table_name,
            "Key": COUNTERS_KEY,
            "UpdateExpression": "ADD #w :one, #t :one",
            "ExpressionAttributeNames": names,
            "ExpressionAttributeValues": values,
            "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
        }
        if max_size is not None:
            counter["ConditionExpression"] = "attribute_not_exists(#w) OR #w < :max"
            values[":max"] = _n(max_size)
        record = {
            "TableName": self.settings.jobs_table_name,
            "Item": self._job_item(job),
            "ConditionExpression": "attribute_not_exists(job_id)",
        }
        try:
            with aws_errors("Admission"):
                self.client.transact_write_items(TransactItems=[{"Put": record}, {"Update": counter}])
        except ClientError as error:
            reasons = error.response.get("CancellationReasons", [])
            codes = [reason.get("Code") for reason in reasons]
            if len(codes) == 2 and codes[1] == "ConditionalCheckFailed":
                old: Any = reasons[1].get("Item") or {}
                size = int(old.get("waiting", {}).get("N", max_size or 0))
                raise QueueFull(max_size or 0, size, retry_after_s) from error
            if codes[:1] == ["ConditionalCheckFailed"]:
                return  # our own earlier attempt landed (the SDK retried a request whose answer was lost)
            raise Unavailable("Admission failed; please try again shortly.") from error

    def counters(self, consistent: bool = True) -> Counters:
        with aws_errors("Reading counters"):
            item = self.client.get_item(
                TableName=self.settings.state_table_name, Key=COUNTERS_KEY, ConsistentRead=consistent
            ).get("Item", {})
        return _counters(item)

    # ---- jobs ------------------------------------------------------------------------------------

    def put_job(self, job: Job) -> None:
        with aws_errors("Recording the job"):
            self.client.put_item(TableName=self.settings.jobs_table_name, Item=self._job_item(job))

    def _job_item(self, job: Job) -> dict[str, Any]:
        item = {
            "job_id": _s(job.job_id),
            "session_hash": _s(job.session_hash),
            "api_name": _s(job.api_name),
            "group": _s(job.group),
            "seq": _n(job.seq),
            "state": _s(job.state.value),
            "data": _s(json.dumps(job.data, separators=(",", ":"))),
            "created_at": _n(job.created_at),
            "attempt": _n(job.attempt),
            "expires_at": _n(int(job.created_at) + self.settings.job_ttl_s),
        }
        if job.worker_id:
            item["worker_id"] = _s(job.worker_id)
        return item

    def get_job(self, job_id: str) -> Job | None:
        with aws_errors("Reading the job"):
            item = self.client.get_item(
                TableName=self.settings.jobs_table_name, Key={"job_id": _s(job_id)}, ConsistentRead=True
            ).get("Item")
        return _job(item) if item else None

    def get_jobs(self, job_ids: Sequence[str]) -> dict[str, Job]:
        """Read several jobs by id (strongly consistent); missing ids are absent from the result."""
        found: dict[str, Job] = {}
        keys = [{"job_id": _s(job_id)} for job_id in dict.fromkeys(job_ids)]
        while keys:
            chunk, keys = keys[:100], keys[100:]
            request = {self.settings.jobs_table_name: {"Keys": chunk, "ConsistentRead": True}}
            while request:
                with aws_errors("Reading jobs"):
                    response = self.client.batch_get_item(RequestItems=request)
                for item in response["Responses"].get(self.settings.jobs_table_name, []):
                    job = _job(item)
                    found[job.job_id] = job
                request = response.get("UnprocessedKeys") or {}
        return found

    def claim(self, jobs: Sequence[Job], worker_id: str) -> list[Job]:
        """Move jobs to `running` for this worker, in one transaction with the counters they leave.

        A job is claimable while `waiting`, or while `running` for a worker that is no longer alive
        (then its attempt count grows). Jobs whose state changed meanwhile are dropped and the rest
        retried, so a redelivered or duplicated message never runs a job twice.
        """
        pending = list(jobs)
        while pending:
            actions = [self._claim_action(job, worker_id) for job in pending]
            fresh = [job for job in pending if job.state is JobState.WAITING]
            by_group: dict[str, int] = {}
            for job in fresh:
                by_group[job.group] = by_group.get(job.group, 0) + 1
            if by_group:
                actions.append(self._leave_action(by_group))
            try:
                with aws_errors("Claiming jobs"):
                    self.client.transact_write_items(TransactItems=actions)
            except ClientError as error:
                reasons = error.response.get("CancellationReasons", [])
                lost = {
                    pending[i].job_id
                    for i, reason in enumerate(reasons[: len(pending)])
                    if reason.get("Code") == "ConditionalCheckFailed"
                }
                if not lost:
                    raise Unavailable("Claiming jobs failed; will retry.") from error
                pending = [job for job in pending if job.job_id not in lost]
                continue
            return [
                job.model_copy(update={"state": JobState.RUNNING, "worker_id": worker_id, "attempt": job.attempt + 1})
                for job in pending
            ]
        return []

    def _claim_action(self, job: Job, worker_id: str) -> dict[str, Any]:
        values = {
            ":running": _s(JobState.RUNNING.value),
            ":me": _s(worker_id),
            ":attempt": _n(job.attempt),
            ":next": _n(job.attempt + 1),
            ":expected": _s(job.state.value),
        }
        return {
            "Update": {
                "TableName": self.settings.jobs_table_name,
                "Key": {"job_id": _s(job.job_id)},
                "UpdateExpression": "SET #state = :running, worker_id = :me, attempt = :next",
                "ConditionExpression": "#state = :expected AND attempt = :attempt",
                "ExpressionAttributeNames": {"#state": "state"},
                "ExpressionAttributeValues": values,
            }
        }

    def _leave_action(self, by_group: dict[str, int]) -> dict[str, Any]:
        names = {"#w": "waiting"}
        values: dict[str, Any] = {":minus": _n(-sum(by_group.values()))}
        parts = ["#w :minus"]
        for i, (group, count) in enumerate(sorted(by_group.items())):
            names[f"#h{i}"] = f"head_{group}"
            values[f":c{i}"] = _n(count)
            parts.append(f"#h{i} :c{i}")
        return {
            "Update": {
                "TableName": self.settings.state_table_name,
                "Key": COUNTERS_KEY,
                "UpdateExpression": "ADD " + ", ".join(parts),
                "ExpressionAttributeNames": names,
                "ExpressionAttributeValues": values,
            }
        }

    def finish(self, completions: Sequence[Completion]) -> list[str]:
        """Record terminal states with their final messages, atomically per job.

        A job is finished only by the worker and attempt that hold it, so every job gets exactly one
        `process_completed`. Returns the ids that were finished here.
        """
        done: list[str] = []
        pending = list(completions)
        per_transaction = TRANSACTION_LIMIT // 2
        while pending:
            chunk = pending[:per_transaction]
            actions: list[dict[str, Any]] = []
            for completion in chunk:
                actions.append(self._finish_action(completion))
                actions.append({"Put": self._event_put(completion.job.session_hash, completion.body)})
            try:
                with aws_errors("Recording results"):
                    self.client.transact_write_items(TransactItems=actions)
            except ClientError as error:
                reasons = error.response.get("CancellationReasons", [])
                lost = {
                    chunk[i // 2].job.job_id
                    for i, reason in enumerate(reasons)
                    if reason.get("Code") == "ConditionalCheckFailed"
                }
                if not lost:
                    raise Unavailable("Recording results failed; will retry.") from error
                pending = [c for c in pending if c.job.job_id not in lost]
                continue
            done.extend(c.job.job_id for c in chunk)
            pending = pending[per_transaction:]
        return done

    def _finish_action(self, completion: Completion) -> dict[str, Any]:
        job = completion.job
        return self._end_action(
            job.job_id,
            completion.state,
            "#state = :running AND worker_id = :me AND attempt = :attempt",
            {":running": _s(JobState.RUNNING.value), ":me": _s(job.worker_id or ""), ":attempt": _n(job.attempt)},
        )

    def _end_action(self, job_id: str, final: JobState, condition: str, values: dict[str, Any]) -> dict[str, Any]:
        """The transaction item that moves a job to its final state, if `condition` still holds."""
        return {
            "Update": {
                "TableName": self.settings.jobs_table_name,
                "Key": {"job_id": _s(job_id)},
                "UpdateExpression": "SET #state = :final, finished_at = :now",
                "ConditionExpression": condition,
                "ExpressionAttributeNames": {"#state": "state"},
                "ExpressionAttributeValues": {":final": _s(final.value), ":now": _n(time.time()), **values},
            }
        }

    def end_waiting(self, job: Job, state: JobState, body: dict[str, Any]) -> bool:
        """End a job that never started (cancelled, or failed before running), freeing its place.

        One transaction: the job leaves `waiting`, the counters drop, the session gets `body`.
        Returns False if the job was no longer waiting.
        """
        actions = [
            self._end_action(
                job.job_id,
                state,
                "#state = :waiting AND session_hash = :session",
                {":waiting": _s(JobState.WAITING.value), ":session": _s(job.session_hash)},
            ),
            self._leave_action({job.group: 1}),
            {"Put": self._event_put(job.session_hash, body)},
        ]
        try:
            with aws_errors("Ending the job"):
                self.client.transact_write_items(TransactItems=actions)
        except ClientError as error:
            if _condition_failed(error):
                return False
            raise Unavailable("Ending the job failed; please try again.") from error
        return True

    def fail_abandoned(self, job: Job, body: dict[str, Any]) -> bool:
        """Fail a job that no worker will finish (its message reached the dead-letter queue).

        Works from `waiting` (the counters drop too) or `running`; False if the job already ended.
        """
        if job.state is JobState.WAITING:
            return self.end_waiting(job, JobState.FAILED, body)
        if job.state is not JobState.RUNNING:
            return False
        actions = [
            self._end_action(
                job.job_id,
                JobState.FAILED,
                "#state = :running AND attempt = :attempt",
                {":running": _s(JobState.RUNNING.value), ":attempt": _n(job.attempt)},
            ),
            {"Put": self._event_put(job.session_hash, body)},
        ]
        try:
            with aws_errors("Failing the job"):
                self.client.transact_write_items(TransactItems=actions)
        except ClientError as error:
            if _condition_failed(error):
                return False
            raise Unavailable("Failing the job failed; will retry.") from error
        return True

    # ---- session event log -----------------------------------------------------------------------

    def _event_put(self, session_hash: str, body: dict[str, Any], **extra: Any) -> dict[str, Any]:
        item: dict[str, Any] = {
            "session_hash": _s(session_hash),
            "sk": _s(event_sort_key(CLOCK.next(), str(body.get("event_id")))),
            "body": _s(json.dumps(body, separators=(",", ":"))),
            "expires_at": _n(int(time.time()) + self.settings.job_ttl_s),
        }
        for key, value in extra.items():
            if value is not None:
                item[key] = _n(value) if isinstance(value, int) else _s(value)
        return {"TableName": self.settings.events_table_name, "Item": item}

    def append(self, event: NewEvent) -> None:
        put = self._event_put(event.session_hash, event.body, group=event.group, seq=event.seq, api_name=event.api_name)
        with aws_errors("Recording an event"):
            self.client.put_item(**put)

    def append_many(self, events: Sequence[NewEvent]) -> None:
        """Append several events (one batch write per 25), e.g. `process_starts` for a whole batch."""
        requests = [{"PutRequest": {"Item": self._event_put(e.session_hash, e.body)["Item"]}} for e in events]
        while requests:
            chunk, requests = requests[:25], requests[25:]
            unprocessed: Any = {self.settings.events_table_name: chunk}
            for delay in (0, 0.05, 0.1, 0.2, 0.4, 0.8):
                time.sleep(delay)
                with aws_errors("Recording events"):
                    response = self.client.batch_write_item(RequestItems=unprocessed)
                unprocessed = response.get("UnprocessedItems") or {}
                if not unprocessed:
                    break

    def read_events(self, session_hash: str, after_sk: str) -> list[StoredEvent]:
        """A session's events with a sort key above `after_sk`, oldest first (strongly consistent)."""
        events: list[StoredEvent] = []
        kwargs: dict[str, Any] = {
            "TableName": self.settings.events_table_name,
            "KeyConditionExpression": "session_hash = :s AND sk > :after",
            "ExpressionAttributeValues": {":s": _s(session_hash), ":after": _s(after_sk)},
            "ConsistentRead": True,
        }
        while True:
            with aws_errors("Reading events"):
                response = self.client.query(**kwargs)
            for item in response.get("Items", []):
                events.append(
                    StoredEvent(
                        sk=item["sk"]["S"],
                        body=json.loads(item["body"]["S"]),
                        group=item.get("group", {}).get("S"),
                        seq=int(item["seq"]["N"]) if "seq" in item else None,
                        api_name=item.get("api_name", {}).get("S"),
                    )
                )
            if "LastEvaluatedKey" not in response:
                return events
            kwargs["ExclusiveStartKey"] = response["LastEvaluatedKey"]

    def read_cursor(self, session_hash: str) -> str:
        """Where the session's last stream stopped: events up to here were delivered and closed."""
        with aws_errors("Reading the stream cursor"):
            item = self.client.get_item(
                TableName=self.settings.state_table_name,
                Key={"pk": _s(f"cursor#{session_hash}"), "sk": _s("-")},
                ConsistentRead=True,
            ).get("Item")
        return str(item["cursor"]["S"]) if item else "0"

    def write_cursor(self, session_hash: str, cursor: str) -> None:
        with aws_errors("Writing the stream cursor"):
            self.client.put_item(
                TableName=self.settings.state_table_name,
                Item={
                    "pk": _s(f"cursor#{session_hash}"),
                    "sk": _s("-"),
                    "cursor": _s(cursor),
                    "expires_at": _n(int(time.time()) + self.settings.job_ttl_s),
                },
            )

    # ---- session presence (to release the waiting jobs of clients that drop) ------------------------

    def _session_key(self, session_hash: str) -> dict[str, Any]:
        return {"pk": _s(f"session#{session_hash}"), "sk": _s("-")}

    def session_connected(self, session_hash: str, opened_at: float) -> None:
        with aws_errors("Recording the session"):
            self.client.update_item(
                TableName=self.settings.state_table_name,
                Key=self._session_key(session_hash),
                UpdateExpression="SET connected_at = :t, expires_at = :x REMOVE gone_at",
                ExpressionAttributeValues={":t": _n(opened_at), ":x": _n(int(opened_at) + self.settings.job_ttl_s)},
            )

    def session_gone(self, session_hash: str, opened_at: float) -> None:
        """Mark the session dropped, unless a newer stream of it opened since `opened_at`."""
        try:
            with aws_errors("Recording the session"):
                self.client.update_item(
                    TableName=self.settings.state_table_name,
                    Key=self._session_key(session_hash),
                    UpdateExpression="SET gone_at = :now",
                    ConditionExpression="connected_at = :opened",
                    ExpressionAttributeValues={":now": _n(time.time()), ":opened": _n(opened_at)},
                )
        except ClientError:
            return

    def session_is_gone(self, session_hash: str) -> bool:
        return bool(self.gone_sessions([session_hash], 0.0))

    def gone_sessions(self, session_hashes: Sequence[str], grace_s: float) -> set[str]:
        """Sessions among these whose stream dropped more than `grace_s` ago and did not come back."""
        keys = [self._session_key(h) for h in dict.fromkeys(session_hashes)]
        gone: set[str] = set()
        cutoff = time.time() - grace_s
        for start in range(0, len(keys), 100):
            request = {self.settings.state_table_name: {"Keys": keys[start : start + 100], "ConsistentRead": True}}
            while request:
                with aws_errors("Reading sessions"):
                    response = self.client.batch_get_item(RequestItems=request)
                for item in response["Responses"].get(self.settings.state_table_name, []):
                    if "gone_at" in item and float(item["gone_at"]["N"]) <= cutoff:
                        gone.add(item["pk"]["S"].removeprefix("session#"))
                request = response.get("UnprocessedKeys") or {}
        return gone

    # ---- concurrency leases ----------------------------------------------------------------------

    def acquire_lease(self, group: str, limit: int, owner: str) -> int | None:
        """Take a free slot of the group's `limit` (or an expired one); returns the slot or None."""
        now = time.time()
        for slot in range(limit):
            try:
                with aws_errors("Taking a lease"):
                    self.client.put_item(
                        TableName=self.settings.state_table_name,
                        Item={
                            "pk": _s(f"lease#{group}"),
                            "sk": _s(f"{slot:05d}"),
                            "owner": _s(owner),
                            "lease_until": _n(now + self.settings.lease_ttl_s),
                            "expires_at": _n(int(now + self.settings.lease_ttl_s) + 3600),
                        },
                        ConditionExpression="attribute_not_exists(pk) OR lease_until < :now OR #o = :me",
                        ExpressionAttributeNames={"#o": "owner"},
                        ExpressionAttributeValues={":now": _n(now), ":me": _s(owner)},
                    )
            except ClientError:
                continue
            return slot
        return None

    def renew_lease(self, group: str, slot: int, owner: str) -> bool:
        now = time.time()
        try:
            with aws_errors("Renewing a lease"):
                self.client.update_item(
                    TableName=self.settings.state_table_name,
                    Key={"pk": _s(f"lease#{group}"), "sk": _s(f"{slot:05d}")},
                    UpdateExpression="SET lease_until = :until",
                    ConditionExpression="#o = :me",
                    ExpressionAttributeNames={"#o": "owner"},
                    ExpressionAttributeValues={":until": _n(now + self.settings.lease_ttl_s), ":me": _s(owner)},
                )
        except ClientError:
            return False
        return True

    def release_lease(self, group: str, slot: int, owner: str) -> None:
        try:
            with aws_errors("Releasing a lease"):
                self.client.delete_item(
                    TableName=self.settings.state_table_name,
                    Key={"pk": _s(f"lease#{group}"), "sk": _s(f"{slot:05d}")},
                    ConditionExpression="#o = :me",
                    ExpressionAttributeNames={"#o": "owner"},
                    ExpressionAttributeValues={":me": _s(owner)},
                )
        except ClientError:
            return

    def held_leases(self, group: str) -> int:
        """Leases of the group that have not expired (running batches, fleet-wide)."""
        now = time.time()
        with aws_errors("Reading leases"):
            items = self.client.query(
                TableName=self.settings.state_table_name,
                KeyConditionExpression="pk = :pk",
                ExpressionAttributeValues={":pk": _s(f"lease#{group}")},
                ConsistentRead=True,
            ).get("Items", [])
        return sum(1 for item in items if float(item["lease_until"]["N"]) >= now)

    # ---- workers and statistics -----------------------------------------------------------------

    def worker_alive(self, api_name: str, worker_id: str, alive_for_s: float, slots: int) -> None:
        now = time.time()
        with aws_errors("Worker heartbeat"):
            self.client.put_item(
                TableName=self.settings.state_table_name,
                Item={
                    "pk": _s(f"workers#{api_name}"),
                    "sk": _s(worker_id),
                    "alive_until": _n(now + alive_for_s),
                    "slots": _n(slots),
                    "expires_at": _n(int(now + alive_for_s) + 3600),
                },
            )

    def worker_gone(self, api_name: str, worker_id: str) -> None:
        with aws_errors("Worker sign-off"):
            self.client.delete_item(
                TableName=self.settings.state_table_name,
                Key={"pk": _s(f"workers#{api_name}"), "sk": _s(worker_id)},
            )

    def live_workers(self, api_name: str) -> dict[str, int]:
        """Worker id → slots, for workers of the function whose heartbeat has not lapsed."""
        now = time.time()
        with aws_errors("Reading workers"):
            items = self.client.query(
                TableName=self.settings.state_table_name,
                KeyConditionExpression="pk = :pk",
                ExpressionAttributeValues={":pk": _s(f"workers#{api_name}")},
            ).get("Items", [])
        return {item["sk"]["S"]: int(item["slots"]["N"]) for item in items if float(item["alive_until"]["N"]) >= now}

    def is_worker_alive(self, api_name: str, worker_id: str) -> bool:
        with aws_errors("Reading a worker"):
            item = self.client.get_item(
                TableName=self.settings.state_table_name,
                Key={"pk": _s(f"workers#{api_name}"), "sk": _s(worker_id)},
                ConsistentRead=True,
            ).get("Item")
        return bool(item) and float(item["alive_until"]["N"]) >= time.time()

    def stats(self, api_name: str) -> FunctionStats:
        with aws_errors("Reading statistics"):
            item = self.client.get_item(
                TableName=self.settings.state_table_name, Key={"pk": _s(f"stats#{api_name}"), "sk": _s("-")}
            ).get("Item")
        if not item:
            return FunctionStats()
        return FunctionStats(
            avg_batch_s=float(item["avg_batch_s"]["N"]),
            avg_batch_size=float(item["avg_batch_size"]["N"]),
            batches=int(item["batches"]["N"]),
        )

    def record_stats(self, api_name: str, avg_batch_s: float, avg_batch_size: float) -> None:
        with aws_errors("Recording statistics"):
            self.client.update_item(
                TableName=self.settings.state_table_name,
                Key={"pk": _s(f"stats#{api_name}"), "sk": _s("-")},
                UpdateExpression="SET avg_batch_s = :d, avg_batch_size = :n ADD batches :one",
                ExpressionAttributeValues={":d": _n(avg_batch_s), ":n": _n(avg_batch_size), ":one": _n(1)},
            )

    # ---- operator view: recent batches and queue-depth samples (read by `surge.status`) ----------
    #
    # Items: `batches#<api_name>` / `<stamp>#<worker>` (one per batch a worker ran) and `depth#app` /
    # `<epoch second>` (one per sampling bucket). Both are read newest-first with bounded queries, so
    # they cost nothing to keep until their `expires_at` (TTL) removes them.

    def record_batch(self, api_name: str, size: int, failed: int, duration_s: float, worker_id: str) -> None:
        """Log one batch a worker ran (one put); the status page shows the latest few."""
        now = time.time()
        with aws_errors("Recording a batch"):
            self.client.put_item(
                TableName=self.settings.state_table_name,
                Item={
                    "pk": _s(f"batches#{api_name}"),
                    "sk": _s(f"{CLOCK.next():020d}#{worker_id}"),
                    "finished_at": _n(now),
                    "size": _n(size),
                    "failed": _n(failed),
                    "duration_s": _n(float(duration_s)),
                    "worker_id": _s(worker_id),
                    "expires_at": _n(int(now) + OPERATOR_ITEMS_KEEP_S),
                },
            )

    def recent_batches(self, api_name: str, limit: int) -> list[BatchRecord]:
        """The function's last `limit` batches, oldest first."""
        with aws_errors("Reading recent batches"):
            items = self.client.query(
                TableName=self.settings.state_table_name,
                KeyConditionExpression="pk = :pk",
                ExpressionAttributeValues={":pk": _s(f"batches#{api_name}")},
                ScanIndexForward=False,
                Limit=limit,
            ).get("Items", [])
        return [
            BatchRecord(
                finished_at=float(item["finished_at"]["N"]),
                size=int(item["size"]["N"]),
                failed=int(item["failed"]["N"]),
                duration_s=float(item["duration_s"]["N"]),
                worker_id=item["worker_id"]["S"],
            )
            for item in reversed(items)
        ]

    def sample_depth(self, counters: Counters, every_s: int) -> bool:
        """Keep `counters` as the depth sample of the current `every_s` bucket, unless one is there already.

        Idempotent per bucket (a conditional put), so any number of status viewers write one sample.
        """
        now = time.time()
        bucket = int(now // every_s) * every_s
        groups = {group: counters.queue_size(group) for group in counters.tail}
        try:
            with aws_errors("Sampling queue depth"):
                self.client.put_item(
                    TableName=self.settings.state_table_name,
                    Item={
                        "pk": _s("depth#app"),
                        "sk": _s(f"{bucket:012d}"),
                        "waiting": _n(counters.waiting),
                        "groups": _s(json.dumps(groups, separators=(",", ":"))),
                        "expires_at": _n(int(now) + OPERATOR_ITEMS_KEEP_S),
                    },
                    ConditionExpression="attribute_not_exists(pk)",
                )
        except ClientError:
            return False
        return True

    def depth_history(self, since: float) -> list[DepthSample]:
        """Depth samples from epoch second `since` on, oldest first."""
        samples: list[DepthSample] = []
        kwargs: dict[str, Any] = {
            "TableName": self.settings.state_table_name,
            "KeyConditionExpression": "pk = :pk AND sk >= :since",
            "ExpressionAttributeValues": {":pk": _s("depth#app"), ":since": _s(f"{max(0, int(since)):012d}")},
        }
        while True:
            with aws_errors("Reading queue depth history"):
                response = self.client.query(**kwargs)
            for item in response.get("Items", []):
                samples.append(
                    DepthSample(
                        t=float(item["sk"]["S"]),
                        waiting=int(item["waiting"]["N"]),
                        groups=json.loads(item["groups"]["S"]),
                    )
                )
            if "LastEvaluatedKey" not in response:
                return samples
            kwargs["ExclusiveStartKey"] = response["LastEvaluatedKey"]


def _condition_failed(error: ClientError) -> bool:
    """Whether a cancelled transaction failed on a condition (the state moved on), not on AWS."""
    return any(r.get("Code") == "ConditionalCheckFailed" for r in error.response.get("CancellationReasons", []))


def _counters(item: dict[str, Any]) -> Counters:
    counters = Counters(waiting=int(item.get("waiting", {}).get("N", 0)))
    for key, value in item.items():
        if key.startswith("tail_"):
            counters.tail[key[5:]] = int(value["N"])
        elif key.startswith("head_"):
            counters.head[key[5:]] = int(value["N"])
    return counters


def _job(item: dict[str, Any]) -> Job:
    return Job(
        job_id=item["job_id"]["S"],
        session_hash=item["session_hash"]["S"],
        api_name=item["api_name"]["S"],
        group=item["group"]["S"],
        seq=int(item["seq"]["N"]),
        state=JobState(item["state"]["S"]),
        data=json.loads(item["data"]["S"]),
        created_at=float(item["created_at"]["N"]),
        attempt=int(item["attempt"]["N"]),
        worker_id=item.get("worker_id", {}).get("S"),
    )


# ---- operator view: shapes returned by the block at the end of `Store` -------------------------------

OPERATOR_ITEMS_KEEP_S = 3600
"""How long batch records and depth samples live (their TTL); the status page reads the last minutes."""


@dataclass(frozen=True)
class BatchRecord:
    """One batch a worker ran: when it ended (epoch s), how many jobs, how many failed, how long it took."""

    finished_at: float
    size: int
    failed: int
    duration_s: float
    worker_id: str


@dataclass(frozen=True)
class DepthSample:
    """Jobs waiting at epoch second `t`: app-wide and per concurrency group."""

    t: float
    waiting: int
    groups: dict[str, int]
