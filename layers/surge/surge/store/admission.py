"""Admission: the sharded counters (how many jobs joined and left, app-wide and per group).

Each shard `<n>` counts in two kinds of item of the state table: `counters#<n>` / `in`, written only by
joins (`joined`, `tail_<group>`), and the `out` items, written only by the claims and cancels that take
jobs out of the line: `counters#<k>` / `out` holds, per shard `<n>`, `left:<n>` and `head:<n>:<group>`,
and a shard's count of jobs that left is the sum over every `out` item. A claim writes the one `out`
item of its worker (`out_item`), whichever shards its batch's jobs were counted in, and a cancel the
one of its job's shard. Joins and claims therefore never touch the same item, so they never cancel each
other's transactions (DynamoDB cancels concurrent transactions on one item); a hot shard takes joins
at its full write rate; workers' claims spread over the `out` items; and a claim's transaction pays for
one counters item, not one per shard its batch came from.

`max_size` is split exactly between the shards. A join's condition is `joined < share + left`, with
`left` from a recent read: `left` only grows, so a stale value is stricter, never looser. A join tries
the shards with room by that read, most room first; when none is left it reads afresh once more, and
only then is the queue full, so a full queue costs reads, not refused transactions.

Within one process, joins do not stampede a nearly full queue: a shard is tried by at most as many joins
at once as it has room by the process's read, a shard whose condition refused a join counts as full until
the next read, and the joins that find no room share one fresh read (`FRESH_SHARE_S`). A crowd refused
at the door costs the process and DynamoDB almost nothing, as in Gradio, where a full queue is a length
check.
"""

from __future__ import annotations

import hashlib
import random
import threading
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from surge.errors import QueueFull, Unavailable
from surge.models import Counters, Job, Shard
from surge.store.aws import Conflicted, Table, Transaction, aws_errors, n, s
from surge.store.schema import job_item

ADMISSION_ROUNDS = 6
"""Rounds over the busy shards before a join gives up with a 503 (each round backs off a little more)."""

COUNTS_FRESH_S = 0.25
"""How long a process reuses its read of the shards' counts to choose a shard for a join."""

COUNTS_ROOMY_S = 2.0
"""How long it is reused instead when every shard had at least half its share free: far from full, the
read only spreads joins, and the transaction's condition stays exact whatever the read's age."""

FRESH_SHARE_S = 0.05
"""Joins that found no room by the recent read share a fresh read made this recently."""

_GATES = threading.Lock()


@dataclass
class _Gate:
    """One process's view of the shards for its joins: the last read, and the joins trying each shard."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    reading: threading.Lock = field(default_factory=threading.Lock)
    counted: tuple[float, list[tuple[int, int]]] | None = None
    tails: list[dict[str, int]] = field(default_factory=list)
    """Each shard's tails per group at the last read: the jobs counted before any join made after it."""
    trying: dict[int, int] = field(default_factory=dict)

    def reserve(self, shard: int, room: int | None) -> bool:
        """Whether a join may try `shard`: fewer joins of this process are trying it than it has room."""
        with self.lock:
            if room is not None and room - self.trying.get(shard, 0) <= 0:
                return False
            self.trying[shard] = self.trying.get(shard, 0) + 1
            return True

    def release(self, shard: int) -> None:
        with self.lock:
            self.trying[shard] -= 1

    def joined(self, shard: int) -> None:
        """A join of this process was counted in the shard: one less room there until the next read."""
        self._count(shard, lambda joined: joined + 1)

    def full(self, shard: int, limit: int) -> None:
        """The shard's condition refused a join: no room there until the next read."""
        self._count(shard, lambda joined: max(joined, limit))

    def _count(self, shard: int, joined: Callable[[int], int]) -> None:
        """Change the shard's `joined` in the last read (nothing before the first read)."""
        with self.lock:
            if self.counted is not None:
                counts = list(self.counted[1])
                counts[shard] = (joined(counts[shard][0]), counts[shard][1])
                self.counted = (self.counted[0], counts)


def _reuse_s(fresh: bool, counts: list[tuple[int, int]], caps: list[int]) -> float:
    """How old a read of the shards may be to choose a shard for a join (see `AdmissionStore._counts`)."""
    if fresh:
        return FRESH_SHARE_S
    roomy = all(2 * (cap + left - joined) >= cap for cap, (joined, left) in zip(caps, counts, strict=True))
    return COUNTS_ROOMY_S if roomy else COUNTS_FRESH_S


def shard_key(shard: int, side: str) -> dict[str, Any]:
    return {"pk": s(f"counters#{shard}"), "sk": s(side)}


def shard_caps(max_size: int, shards: int) -> list[int]:
    """`max_size` split between the shards, so that their waiting jobs never add up to more."""
    return [max_size // shards + (1 if i < max_size % shards else 0) for i in range(shards)]


def out_item(worker_id: str, shards: int) -> int:
    """The `out` item a worker's claims count in: one per worker, spread over the shards' `out` items."""
    return zlib.crc32(worker_id.encode()) % shards


def leave_items(transaction: Transaction, settings_table: str, jobs: list[Job], out: int) -> None:
    """Add to `transaction` the one counter update, on `out` item `out`, for waiting `jobs` that leave
    the line (whichever shards they were counted in)."""
    if not jobs:
        return
    counts: dict[tuple[int, str | None], int] = {}
    for job in jobs:
        for key in ((job.shard, None), (job.shard, job.group)):
            counts[key] = counts.get(key, 0) + 1
    names: dict[str, str] = {}
    values: dict[str, Any] = {}
    parts = []
    for i, ((shard, group), count) in enumerate(sorted(counts.items(), key=lambda kv: (kv[0][0], kv[0][1] or ""))):
        names[f"#c{i}"] = f"left:{shard}" if group is None else f"head:{shard}:{group}"
        values[f":c{i}"] = n(count)
        parts.append(f"#c{i} :c{i}")
    transaction.add(
        f"counters#{out}",
        "Update",
        {
            "TableName": settings_table,
            "Key": shard_key(out, "out"),
            "UpdateExpression": "ADD " + ", ".join(parts),
            "ExpressionAttributeNames": names,
            "ExpressionAttributeValues": values,
        },
    )


class AdmissionStore(Table):
    _admission_gate: _Gate | None = None

    @property
    def _gate(self) -> _Gate:
        if self._admission_gate is None:
            with _GATES:
                if self._admission_gate is None:
                    self._admission_gate = _Gate()
        return self._admission_gate

    def admit(self, job: Job, max_size: int | None, retry_after_s: int) -> Job:
        """Create the job and count it in one shard with room, in one transaction.

        Safe to retry: the transaction's token makes the SDK's retry of a lost answer a no-op, and the
        job item's condition stops a second count. Returns the job with its shard; raises `QueueFull`
        when every shard is at its share of `max_size`.
        """
        shards = self.settings.admission_shards
        if max_size is None:
            order = list(range(shards))
            random.shuffle(order)
            placed = self._place(job, order, [None] * shards, [None] * shards)
            if placed is None:
                raise QueueFull(0, 0, retry_after_s)  # an unconditional count is never refused
            return placed
        caps = shard_caps(max_size, shards)
        for fresh in (False, True):
            # Shards with room by a recent read, in random order (joins spread, so they seldom meet on one
            # item); the transaction's condition itself stays exact.
            shard_counts = self._counts(fresh, caps)
            job = self._with_ahead(job)
            rooms: list[int | None] = [caps[i] + left - joined for i, (joined, left) in enumerate(shard_counts)]
            with_room = [i for i, room in enumerate(rooms) if room is not None and room > 0]
            random.shuffle(with_room)
            placed = self._place(job, with_room, [caps[i] + shard_counts[i][1] for i in range(shards)], rooms)
            if placed is not None:
                return placed
        raise QueueFull(max_size, max_size, retry_after_s)

    def _with_ahead(self, job: Job) -> Job:
        """The job with the tails of the read its join chose a shard by: that read ended before the job is
        counted, so every job it counted is ahead of this one. A stream in any process (a fresh Lambda
        environment has no reads of its own from before the join) knows from it when the job is near the
        front."""
        tails = self._gate.tails
        if not tails:
            return job
        return job.model_copy(update={"ahead": [shard.get(job.group, 0) for shard in tails]})

    def _place(self, job: Job, order: list[int], limits: list[int | None], rooms: list[int | None]) -> Job | None:
        """Try the shards in `order` that this process is not already filling (`rooms`: their room by
        the recent read); a shard busy with another transaction is passed over at once (the next shard
        takes the join), and only when every one was busy is the round tried again."""
        gate = self._gate
        for round_ in range(ADMISSION_ROUNDS):
            busy = []
            for shard in order:
                if not gate.reserve(shard, rooms[shard]):
                    continue
                try:
                    placed, refused = self._try(job, shard, limits[shard])
                except Conflicted:
                    busy.append(shard)
                    continue
                finally:
                    gate.release(shard)
                if placed is not None:
                    gate.joined(placed.shard)
                    return placed
                limit = limits[shard]
                if refused and limit is not None:
                    gate.full(shard, limit)
            if not busy:
                return None
            order = busy
            time.sleep(0.005 * (round_ + 1) * (0.5 + random.random()))
        raise Unavailable("Admission failed; please try again shortly.")

    def _try(self, job: Job, shard: int, limit: int | None) -> tuple[Job | None, bool]:
        """(the admitted job, or None; whether the shard's condition refused it).

        The job's `created_at` is this try's: streams order waiting jobs by it (`session._behind`), and a
        join whose earlier tries met a conflict or a full shard is counted, and enqueued, only now, after
        joins that began later and were counted first."""
        placed = job.model_copy(update={"shard": shard, "created_at": time.time()})
        transaction = Transaction("Admission")
        transaction.add(
            "job",
            "Put",
            {
                "TableName": self.settings.events_table_name,
                "Item": job_item(placed, self.settings.job_ttl_s),
                "ConditionExpression": "attribute_not_exists(sk)",
            },
        )
        counter: dict[str, Any] = {
            "TableName": self.settings.state_table_name,
            "Key": shard_key(shard, "in"),
            "UpdateExpression": "ADD #j :one, #t :one",
            "ExpressionAttributeNames": {"#j": "joined", "#t": f"tail_{job.group}"},
            "ExpressionAttributeValues": {":one": n(1)},
        }
        if limit is not None:
            counter["ConditionExpression"] = "attribute_not_exists(#j) OR #j < :limit"
            counter["ExpressionAttributeValues"][":limit"] = n(limit)
        transaction.add("counter", "Update", counter)
        # One token per try: the SDK's retry of the same request is idempotent, another try is not (the job
        # item's condition stops a second count).
        token = hashlib.sha256(f"{job.job_id}/{shard}/{limit}/{placed.created_at!r}".encode()).hexdigest()[:36]
        outcome = transaction.commit(self.client, token=token, conflict_retries=0)
        if outcome is None:
            return placed, False
        if "job" in outcome.tags:
            # Our own earlier attempt landed (its answer was lost): the job counts where it was put.
            stored = outcome.tags["job"] or {}
            landed: dict[str, Any] = {"shard": int(stored.get("shard", {}).get("N", shard))}
            if "created_at" in stored:
                landed["created_at"] = float(stored["created_at"]["N"])
            return job.model_copy(update=landed), False
        return None, True

    def _counts(self, fresh: bool, caps: list[int]) -> list[tuple[int, int]]:
        """(joined, left) of every shard: from a read of at most `COUNTS_FRESH_S` ago (`COUNTS_ROOMY_S`
        while every shard has half its share free), or (`fresh`) one consistent read of at most
        `FRESH_SHARE_S` ago, which the joins asking meanwhile share."""
        gate = self._gate
        cached = gate.counted
        if cached is not None and time.monotonic() - cached[0] < _reuse_s(fresh, cached[1], caps):
            return cached[1]
        with gate.reading:
            cached = gate.counted
            if cached is not None and time.monotonic() - cached[0] < _reuse_s(fresh, cached[1], caps):
                return cached[1]
            shards = self.counters(consistent=fresh).shards
            counts = [(shard.joined, shard.left) for shard in shards]
            with gate.lock:
                gate.counted = (time.monotonic(), counts)
                gate.tails = [dict(shard.tail) for shard in shards]
            return counts

    def counters(self, consistent: bool = True) -> Counters:
        """Every shard in one read (a stream process reads this once per tick for all its sessions)."""
        shards = self.settings.admission_shards
        keys = [shard_key(i, side) for i in range(shards) for side in ("in", "out")]
        found: dict[tuple[int, str], dict[str, Any]] = {}
        request: Any = {self.settings.state_table_name: {"Keys": keys, "ConsistentRead": consistent}}
        delay = 0.02
        while request:
            with aws_errors("Reading counters"):
                response = self.client.batch_get_item(RequestItems=request)
            for item in response["Responses"].get(self.settings.state_table_name, []):
                found[(int(item["pk"]["S"].split("#", 1)[1]), item["sk"]["S"])] = item
            request = response.get("UnprocessedKeys") or {}
            if request:  # throttled keys: DynamoDB asks for a backoff before they are asked again
                time.sleep(delay)
                delay = min(delay * 2, 0.5)
        outs = [found.get((i, "out"), {}) for i in range(shards)]
        return Counters(shards=[shard_of(i, found.get((i, "in"), {}), outs) for i in range(shards)])


def shard_of(shard: int, joined: dict[str, Any], outs: list[dict[str, Any]]) -> Shard:
    """Shard `shard` from its `in` item and every `out` item (see the module's docstring)."""
    counted = Shard(joined=int(joined.get("joined", {}).get("N", 0)))
    for key, value in joined.items():
        if key.startswith("tail_"):
            counted.tail[key[5:]] = int(value["N"])
    left_key, head_prefix = f"left:{shard}", f"head:{shard}:"
    for out in outs:
        counted.left += int(out.get(left_key, {}).get("N", 0))
        for key, value in out.items():
            if key.startswith(head_prefix):
                group = key[len(head_prefix) :]
                counted.head[group] = counted.head.get(group, 0) + int(value["N"])
    return counted
