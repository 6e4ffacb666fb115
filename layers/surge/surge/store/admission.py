"""Admission: the sharded counters items (jobs waiting, and per group how many joined and left).

Items `counters#<shard>` / `app` in the state table, attributes `waiting`, `tail_<group>` and
`head_<group>`. A join counts its job in one shard, in the same transaction that creates the job; a
claim or a cancel counts it out of that shard. `max_size` is split exactly between the shards.
"""

from __future__ import annotations

import random
from typing import Any

from surge.errors import QueueFull
from surge.models import Counters, Job, Shard
from surge.store.aws import Table, Transaction, aws_errors, n, s
from surge.store.schema import job_item


def shard_key(shard: int) -> dict[str, Any]:
    return {"pk": s(f"counters#{shard}"), "sk": s("app")}


def shard_caps(max_size: int, shards: int) -> list[int]:
    """`max_size` split between the shards, so that their waiting jobs never add up to more."""
    return [max_size // shards + (1 if i < max_size % shards else 0) for i in range(shards)]


def leave_items(transaction: Transaction, settings_table: str, jobs: list[Job]) -> None:
    """Add to `transaction` the counter updates for waiting `jobs` that leave the line (one per shard)."""
    by_shard: dict[int, dict[str, int]] = {}
    for job in jobs:
        groups = by_shard.setdefault(job.shard, {})
        groups[job.group] = groups.get(job.group, 0) + 1
    for shard, groups in sorted(by_shard.items()):
        names = {"#w": "waiting"}
        values: dict[str, Any] = {":minus": n(-sum(groups.values()))}
        parts = ["#w :minus"]
        for i, (group, count) in enumerate(sorted(groups.items())):
            names[f"#h{i}"] = f"head_{group}"
            values[f":c{i}"] = n(count)
            parts.append(f"#h{i} :c{i}")
        transaction.add(
            f"counters#{shard}",
            "Update",
            {
                "TableName": settings_table,
                "Key": shard_key(shard),
                "UpdateExpression": "ADD " + ", ".join(parts),
                "ExpressionAttributeNames": names,
                "ExpressionAttributeValues": values,
            },
        )


class AdmissionStore(Table):
    def admit(self, job: Job, max_size: int | None, retry_after_s: int) -> Job:
        """Create the job and count it waiting in one shard with room, in one transaction.

        Safe to retry: the transaction's token makes the SDK's retry of a lost answer a no-op, and the
        job item's condition stops a second count. Returns the job with its shard; raises `QueueFull`
        when every shard is at its share of `max_size`.
        """
        shards = self.settings.admission_shards
        caps = shard_caps(max_size, shards) if max_size is not None else None
        first = random.randrange(shards)
        for k in range(shards):
            shard = (first + k) % shards
            if caps is not None and caps[shard] == 0:
                continue
            placed = job.model_copy(update={"shard": shard})
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
                "Key": shard_key(shard),
                "UpdateExpression": "ADD #w :one, #t :one",
                "ExpressionAttributeNames": {"#w": "waiting", "#t": f"tail_{job.group}"},
                "ExpressionAttributeValues": {":one": n(1)},
            }
            if caps is not None:
                counter["ConditionExpression"] = "attribute_not_exists(#w) OR #w < :max"
                counter["ExpressionAttributeValues"][":max"] = n(caps[shard])
            transaction.add("counter", "Update", counter)
            refused = transaction.commit(self.client, token=f"{job.job_id}-{shard}")
            if refused is None:
                return placed
            if "job" in refused.tags:
                # Our own earlier attempt landed (its answer was lost): the job counts where it was put.
                stored = refused.tags["job"] or {}
                return job.model_copy(update={"shard": int(stored.get("shard", {}).get("N", shard))})
        raise QueueFull(max_size or 0, max_size or 0, retry_after_s)

    def counters(self, consistent: bool = True) -> Counters:
        """Every shard in one read (a stream process reads this once per tick for all its sessions)."""
        shards = self.settings.admission_shards
        keys = [shard_key(i) for i in range(shards)]
        found: dict[int, dict[str, Any]] = {}
        request: Any = {self.settings.state_table_name: {"Keys": keys, "ConsistentRead": consistent}}
        while request:
            with aws_errors("Reading counters"):
                response = self.client.batch_get_item(RequestItems=request)
            for item in response["Responses"].get(self.settings.state_table_name, []):
                found[int(item["pk"]["S"].split("#", 1)[1])] = item
            request = response.get("UnprocessedKeys") or {}
        return Counters(shards=[shard_of(found.get(i, {})) for i in range(shards)])


def shard_of(item: dict[str, Any]) -> Shard:
    shard = Shard(waiting=int(item.get("waiting", {}).get("N", 0)))
    for key, value in item.items():
        if key.startswith("tail_"):
            shard.tail[key[5:]] = int(value["N"])
        elif key.startswith("head_"):
            shard.head[key[5:]] = int(value["N"])
    return shard
