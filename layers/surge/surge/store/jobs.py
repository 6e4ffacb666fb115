"""The job lifecycle on the session log: claim, progress, finish, end a waiting job, forget delivered ones,
find waiting jobs that never got their message.

Every transition that moves a job out of `waiting` also counts it out of its admission shard, in the
same transaction, so the counters cannot drift. See `schema` for the item layout.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import ClientError

from surge.errors import Unavailable
from surge.models import TERMINAL_STATES, Job, JobState
from surge.store.admission import leave_items, out_item
from surge.store.aws import TRANSACTION_BYTES, TRANSACTION_LIMIT, Table, Transaction, aws_errors, in_groups, n, s
from surge.store.schema import (
    compact,
    is_marker,
    is_part,
    job_items,
    job_key,
    job_of,
    marker_item,
    marker_key,
    part_key,
    parts_of,
    sent_item,
    sent_key,
    stored_chunk,
    stored_size,
    told_of,
)

BATCH_WRITE_LIMIT = 25

DONE_KEEP_S = 900
"""How long a batch's finish notice stays readable (its TTL): longer than any stream waits unread."""


@dataclass(frozen=True)
class Completion:
    """The terminal state of one job claimed at its `attempt`, and the message that tells its client."""

    job: Job
    state: JobState
    body: dict[str, Any]


@dataclass(frozen=True)
class Claim:
    """What a claim did: the jobs now running here, and the ones a condition refused (as they are now;
    None where the job no longer exists)."""

    claimed: list[Job]
    refused: dict[str, Job | None]


class JobStore(Table):
    def read_session(self, session_hash: str) -> list[Job]:
        """Every job of a session (strongly consistent), oldest first."""
        items = self.query(
            "Reading the session",
            TableName=self.settings.events_table_name,
            KeyConditionExpression="session_hash = :s",
            ExpressionAttributeValues={":s": s(session_hash)},
            ConsistentRead=True,
        )
        parts = parts_of([item for item in items if is_part(item)])
        cancelled, sent = told_of([item for item in items if is_marker(item)])
        jobs = [
            job_of(item, parts.get(job_id), job_id in cancelled, sent.get(job_id, 0))
            for item in items
            if not is_part(item) and not is_marker(item)
            for job_id in [item["sk"]["S"]]
        ]
        return sorted(jobs, key=lambda job: job.created_at)

    def get_job(self, session_hash: str, job_id: str) -> Job | None:
        """The job's item alone (its state and place; a result kept in parts is left out)."""
        with aws_errors("Reading the job"):
            item = self.client.get_item(
                TableName=self.settings.events_table_name, Key=job_key(session_hash, job_id), ConsistentRead=True
            ).get("Item")
        return job_of(item) if item else None

    def waiting_before(self, api_name: str, before: float) -> list[Job]:
        """The jobs of `api_name` still waiting that were counted before `before` (epoch seconds): a scan of
        the events table, made only by an idle worker whose queue is empty (`Worker._reconcile`)."""
        items = self.scan(
            "Looking for jobs without a message",
            TableName=self.settings.events_table_name,
            FilterExpression="#state = :waiting AND api_name = :api AND created_at < :before",
            ExpressionAttributeNames={"#state": "state"},
            ExpressionAttributeValues={
                ":waiting": s(JobState.WAITING.value),
                ":api": s(api_name),
                ":before": n(before),
            },
        )
        return [job_of(item) for item in items if not is_part(item) and not is_marker(item)]

    # ---- claim -----------------------------------------------------------------------------------

    def claim(self, jobs: Sequence[Job], worker_id: str) -> Claim:
        """Claim in transactions of at most `TRANSACTION_LIMIT` items (jobs plus the counters item)."""
        per_transaction = TRANSACTION_LIMIT - 1
        claimed: list[Job] = []
        refused: dict[str, Job | None] = {}
        for start in range(0, len(jobs), per_transaction):
            outcome = self._claim(jobs[start : start + per_transaction], worker_id)
            claimed.extend(outcome.claimed)
            refused.update(outcome.refused)
        return Claim(claimed, refused)

    def _claim(self, jobs: Sequence[Job], worker_id: str) -> Claim:
        """Move jobs to `running` for this worker in one transaction with the counters the waiting ones
        leave. A job is claimable while `waiting`, or while `running` at the attempt given (its worker
        is gone). Refused jobs are left out and the rest claimed again, so a duplicated message never
        runs a job twice. Jobs come from their messages: no read is needed first."""
        pending = list(jobs)
        refused: dict[str, Job | None] = {}
        while pending:
            now = time.time()
            transaction = Transaction("Claiming jobs")
            for job in pending:
                transaction.add(job.job_id, "Update", self._claim_update(job, worker_id, now))
            waiting = [j for j in pending if j.state is JobState.WAITING]
            leave_items(
                transaction,
                self.settings.state_table_name,
                waiting,
                out_item(worker_id, self.settings.admission_shards),
            )
            outcome = transaction.commit(self.client)
            if outcome is None:
                claimed = [
                    job.model_copy(
                        update={
                            "state": JobState.RUNNING,
                            "worker_id": worker_id,
                            "attempt": job.attempt + 1,
                            "started_at": now,
                        }
                    )
                    for job in pending
                ]
                return Claim(claimed, refused)
            for tag, old in outcome.tags.items():
                refused[tag] = job_of(old) if old else None
            pending = [job for job in pending if job.job_id not in outcome.tags]
        return Claim([], refused)

    def _claim_update(self, job: Job, worker_id: str, now: float) -> dict[str, Any]:
        values = {":running": s(JobState.RUNNING.value), ":me": s(worker_id), ":one": n(1), ":now": n(now)}
        if job.state is JobState.WAITING:
            condition = "#state = :waiting"
            values[":waiting"] = s(JobState.WAITING.value)
        else:
            # A takeover: the dead run's messages it carries (read from the refusal) must still be all of
            # them. A worker whose heartbeat lapsed while it ran may have added some since; the claim is
            # then refused again, with the list as it is now, which the next try carries.
            condition = "#state = :running AND attempt = :attempt AND " + (
                "size(chunks) = :streamed" if job.chunks else "attribute_not_exists(chunks)"
            )
            values[":attempt"] = n(job.attempt)
            if job.chunks:
                values[":streamed"] = n(len(job.chunks))
        return {
            "TableName": self.settings.events_table_name,
            "Key": job_key(job.session_hash, job.job_id),
            "UpdateExpression": "SET #state = :running, worker_id = :me, attempt = attempt + :one, started_at = :now",
            "ConditionExpression": condition,
            "ExpressionAttributeNames": {"#state": "state"},
            "ExpressionAttributeValues": values,
        }

    # ---- while running ---------------------------------------------------------------------------

    def record_live(self, job: Job, chunks: list[dict[str, Any]], progress: tuple[dict[str, Any], int] | None) -> bool:
        """A running job's generator messages and notices (after the ones before them) and its latest
        progress message (replacing the one before; reported after `progress[1]` messages), in one write.
        True when its visitor has cancelled it (`request_cancel`): then nothing is written."""
        sets: list[str] = []
        values: dict[str, Any] = {}
        if chunks:
            sets.append("chunks = list_append(if_not_exists(chunks, :none), :v)")
            values.update({":v": {"L": [s(stored_chunk(body)) for body in chunks]}, ":none": {"L": []}})
        if progress is not None:
            sets.append("progress = :p, progress_after = :a")
            values.update({":p": s(compact(progress[0])), ":a": n(progress[1])})
        if not sets:
            return False
        sets.append("first_output_at = if_not_exists(first_output_at, :now)")
        values[":now"] = n(time.time())
        # A write by the worker and attempt that hold the job; a stale one (the job moved on) is dropped.
        refused = self._update_running(
            job,
            "Recording an update",
            "SET " + ", ".join(sets),
            "attempt = :attempt AND worker_id = :me AND attribute_not_exists(cancel_requested)",
            {**values, ":attempt": n(job.attempt), ":me": s(job.worker_id or "")},
        )
        return refused is not None and "cancel_requested" in refused

    def request_cancel(self, job: Job) -> bool:
        """Ask the worker running this job to stop it: a generator stops at its next output, as Gradio
        closes it, and the job ends `cancelled` (the worker learns it from its next live write, so this
        costs the worker no call). False if the job is no longer running."""
        marked = self._update_running(
            job, "Cancelling the job", "SET cancel_requested = :now", "", {":now": n(time.time())}
        )
        return marked is None

    def _update_running(
        self,
        job: Job,
        what: str,
        expression: str,
        condition: str,
        values: dict[str, Any],
        names: dict[str, str] | None = None,
    ) -> dict[str, Any] | None:
        """Update the job's item if it is running and `condition` holds. None when applied; else the item as
        it was (ReturnValuesOnConditionCheckFailure; empty when it is gone)."""
        try:
            with aws_errors(what):
                self.client.update_item(
                    TableName=self.settings.events_table_name,
                    Key=job_key(job.session_hash, job.job_id),
                    UpdateExpression=expression,
                    ConditionExpression=" AND ".join(filter(None, ["#state = :running", condition])),
                    ExpressionAttributeNames={"#state": "state", **(names or {})},
                    ExpressionAttributeValues={**values, ":running": s(JobState.RUNNING.value)},
                    ReturnValuesOnConditionCheckFailure="ALL_OLD",
                )
        except ClientError as error:
            old = error.response.get("Item")
            return dict(old) if isinstance(old, dict) else {}
        return None

    # ---- finish ----------------------------------------------------------------------------------

    def finish(self, completions: Sequence[Completion], *, held: bool) -> list[str]:
        """Record terminal states with their final messages; returns the ids finished here.

        `held`: the worker's heartbeat is fresh, so no other worker can have taken these jobs over (a
        takeover needs the heartbeat to have lapsed). Then one unconditional batch write per 25 jobs
        records them (1 write unit each). Otherwise each job is finished only if this worker and
        attempt still hold it, in transactions (2 units each).
        """
        if held:
            self._put_all([self._final(c) for c in completions], self._done_notice(completions))
            return [c.job.job_id for c in completions]
        done: list[str] = []
        pending = list(completions)
        finals = dict(
            zip(
                (c.job.job_id for c in completions),
                self._with_parts_written([self._final(c) for c in completions]),
                strict=True,
            )
        )
        sizes = {job_id: stored_size(item) for job_id, item in finals.items()}
        while pending:
            chunk = in_groups(pending, lambda c: sizes[c.job.job_id], TRANSACTION_BYTES, TRANSACTION_LIMIT)[0]
            rest = pending[len(chunk) :]
            transaction = Transaction("Recording results")
            for completion in chunk:
                transaction.add(
                    completion.job.job_id,
                    "Put",
                    {
                        "TableName": self.settings.events_table_name,
                        "Item": finals[completion.job.job_id],
                        "ConditionExpression": "#state = :running AND worker_id = :me AND attempt = :attempt",
                        "ExpressionAttributeNames": {"#state": "state"},
                        "ExpressionAttributeValues": {
                            ":running": s(JobState.RUNNING.value),
                            ":me": s(completion.job.worker_id or ""),
                            ":attempt": n(completion.job.attempt),
                        },
                    },
                )
            outcome = transaction.commit(self.client)
            if outcome is None:
                done.extend(c.job.job_id for c in chunk)
                pending = rest
            else:
                pending = [c for c in chunk if c.job.job_id not in outcome.tags] + rest
        recorded = set(done)
        finished = [c for c in completions if c.job.job_id in recorded]
        if finished:
            self._batch_write([], "Recording results", self._done_notice(finished))
        return done

    def _done_notice(self, completions: Sequence[Completion]) -> dict[str, Any]:
        """One item per finished batch, `done#<api_name>` / `<epoch ms>#<worker>#<n>`, naming its jobs: a
        stream process reads the function's notices once per tick for all its sessions (`finished_since`),
        so a job that ran out of line is seen without reading its session's log on a schedule."""
        first = completions[0].job
        now = time.time()
        return {
            "PutRequest": {
                "Item": {
                    "pk": s(f"done#{first.api_name}"),
                    "sk": s(f"{int(now * 1000):013d}#{first.worker_id or '-'}#{first.job_id[:8]}"),
                    "jobs": s(",".join(c.job.job_id for c in completions)),
                    "expires_at": n(int(now) + DONE_KEEP_S),
                }
            }
        }

    def finished_since(self, api_name: str, after: str) -> list[tuple[str, list[str]]]:
        """The finish notices of `api_name` whose key sorts after `after` (oldest first): (key, job ids)."""
        items = self.query(
            "Reading finish notices",
            TableName=self.settings.state_table_name,
            KeyConditionExpression="pk = :pk AND sk > :after",
            ExpressionAttributeValues={":pk": s(f"done#{api_name}"), ":after": s(after)},
            ConsistentRead=True,
        )
        return [(item["sk"]["S"], item["jobs"]["S"].split(",")) for item in items]

    def _final(self, completion: Completion) -> Job:
        return completion.job.model_copy(
            update={"state": completion.state, "result": completion.body, "data": [], "finished_at": time.time()}
        )

    def _put_all(self, jobs: Sequence[Job], notice: dict[str, Any] | None = None) -> None:
        items = self._with_parts_written(jobs)
        requests = [{"PutRequest": {"Item": item}} for item in items]
        self._batch_write(requests, "Recording results", notice)

    def _with_parts_written(self, jobs: Sequence[Job]) -> list[dict[str, Any]]:
        """The jobs' items, after writing the parts of the results too large to be inline (before the
        items: a stream that sees an item finds its parts)."""
        items: list[dict[str, Any]] = []
        parts: list[dict[str, Any]] = []
        for job in jobs:
            extra, item = job_items(job, self.settings.job_ttl_s)
            parts.extend(extra)
            items.append(item)
        if parts:
            self._batch_write([{"PutRequest": {"Item": part}} for part in parts], "Recording a large result")
        return items

    def _batch_write(self, requests: list[dict[str, Any]], what: str, notice: dict[str, Any] | None = None) -> None:
        """Write `requests` to the events table (25 to a call); `notice`, a state-table put, rides in the
        last call (a stream that reads it before a job it names is visible, a retried unprocessed item,
        only reads that session's log once early)."""
        while requests or notice:
            chunk, requests = requests[:BATCH_WRITE_LIMIT], requests[BATCH_WRITE_LIMIT:]
            if notice is not None and not requests and len(chunk) == BATCH_WRITE_LIMIT:
                chunk, requests = chunk[:-1], chunk[-1:]
            unprocessed: Any = {self.settings.events_table_name: chunk} if chunk else {}
            if notice is not None and not requests:
                unprocessed[self.settings.state_table_name] = [notice]
                notice = None
            for delay in (0, 0.05, 0.1, 0.2, 0.4, 0.8, 1.6):
                time.sleep(delay)
                with aws_errors(what):
                    response = self.client.batch_write_item(RequestItems=unprocessed)
                unprocessed = response.get("UnprocessedItems") or {}
                if not unprocessed:
                    break
            else:
                raise Unavailable(f"{what} failed; please try again shortly.")

    # ---- ending jobs that never ran, and forgetting delivered ones --------------------------------

    def end_waiting(self, job: Job, state: JobState, body: dict[str, Any]) -> bool:
        """End a job that never started (cancelled, or failed before running), freeing its place: the
        job gets its final message and leaves its shard in one transaction. False if it was no longer
        waiting."""
        transaction = Transaction("Ending the job")
        transaction.add(
            "job",
            "Update",
            {
                "TableName": self.settings.events_table_name,
                "Key": job_key(job.session_hash, job.job_id),
                "UpdateExpression": "SET #state = :final, finished_at = :now, #result = :result",
                "ConditionExpression": "#state = :waiting",
                "ExpressionAttributeNames": {"#state": "state", "#result": "result"},
                "ExpressionAttributeValues": {
                    ":final": s(state.value),
                    ":now": n(time.time()),
                    ":result": s(compact(body)),
                    ":waiting": s(JobState.WAITING.value),
                },
            },
        )
        leave_items(transaction, self.settings.state_table_name, [job], job.shard)
        return transaction.commit(self.client) is None

    def fail_abandoned(self, job: Job, body: dict[str, Any]) -> bool:
        """Fail a job that no worker will finish (its message was dead-lettered). Works from `waiting`
        (the counters drop too) or `running`; False if the job already ended."""
        if job.state is JobState.WAITING:
            return self.end_waiting(job, JobState.FAILED, body)
        if job.state is not JobState.RUNNING:
            return False
        values = {":failed": s(JobState.FAILED.value), ":now": n(time.time()), ":result": s(compact(body))}
        failed = self._update_running(
            job,
            "Failing the job",
            "SET #state = :failed, finished_at = :now, #result = :result",
            "attempt = :attempt",
            {**values, ":attempt": n(job.attempt)},
            names={"#result": "result"},
        )
        return failed is None

    def forget_all(self, jobs: Sequence[Job]) -> None:
        """Delete jobs whose completion a stream has delivered (as its last read gave them), of any
        sessions, with the parts of a result kept in parts, 25 to a call (a later stream of the session
        must not deliver them again). A job whose cancellation was delivered while it still ran
        (`cancel_delivered`) gets its marker instead, since its worker will put its item anew; once
        ended, it is deleted with its marker."""
        requests = []
        for job in {(j.session_hash, j.job_id): j for j in jobs}.values():
            if job.cancel_delivered and job.state not in TERMINAL_STATES:
                requests.append({"PutRequest": {"Item": marker_item(job, self.settings.job_ttl_s)}})
                continue
            requests.append({"DeleteRequest": {"Key": job_key(job.session_hash, job.job_id)}})
            requests.extend(
                {"DeleteRequest": {"Key": job_key(job.session_hash, part_key(job.job_id, k))}}
                for k in range(job.result_parts)
            )
            if job.cancel_delivered:
                requests.append({"DeleteRequest": {"Key": marker_key(job.session_hash, job.job_id)}})
            if job.chunks_sent:
                requests.append({"DeleteRequest": {"Key": sent_key(job.session_hash, job.job_id)}})
        self._batch_write(requests, "Forgetting delivered jobs")

    def note_sent(self, jobs: Sequence[Job]) -> None:
        """For running jobs of a stream its client dropped: how many of their generator messages it had
        sent (`chunks_sent`), so that the session's next stream, in any process, sends from there."""
        requests = [
            {"PutRequest": {"Item": sent_item(job, self.settings.job_ttl_s)}}
            for job in {(j.session_hash, j.job_id): j for j in jobs}.values()
        ]
        self._batch_write(requests, "Noting the messages a dropped stream sent")
