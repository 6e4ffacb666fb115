"""The fleet: concurrency leases, worker liveness, statistics, and the operator's batch log and depth samples.

Items in the state table: `lease#<group>` / `<slot>`, `workers#<api_name>` / `<worker id>`,
`workers#<api_name>` / `~wake` and `~start-failed`,
`batches#<api_name>` / `<stamp>#<worker>` (one per batch, with the worker's smoothed statistics, which
the front's ETA reads), `depth#app` / `<epoch second>`. Each is read newest-first with bounded queries.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass

from botocore.exceptions import ClientError

from surge.models import Counters, FunctionStats
from surge.store.aws import CLOCK, Table, aws_errors, n, s

WAKE_SK = "~wake"
"""The item of a function's `workers#` partition that says a worker is starting (written by the front)."""
START_FAILED_SK = "~start-failed"
"""The item of a function's `workers#` partition that says its latest worker could not start."""
START_FAILURE_KEPT_S = 900.0
"""How long a worker's failed start stands for the function while no worker is live: ECS keeps
starting tasks, and one that starts clears it at once."""


@dataclass(frozen=True)
class Fleet:
    workers: dict[str, int]
    """Live worker id → slots."""
    starting_until: float | None = None
    """When (epoch s) a woken worker is expected, if the front woke the function's service."""
    start_failure: StartFailure | None = None
    """The latest worker of the function that could not start (its app's import or setup raised), until a
    worker starts or `START_FAILURE_KEPT_S` pass."""
    read_at: float = 0.0
    """When (epoch s) this was read."""

    @property
    def cannot_start(self) -> StartFailure | None:
        """Why no worker serves the function, when none is live and the latest one could not start."""
        return None if self.workers else self.start_failure


@dataclass(frozen=True)
class StartFailure:
    kind: str
    """The exception's type (`RuntimeError`), which every visitor is told."""
    detail: str
    """Its message, told to visitors only where the app shows errors (`show_error`)."""
    at: float
    count: int = 1
    """Failed starts in a row (since a worker last started)."""
    tried_at: float = 0.0
    """When (epoch s) a worker last began to start; after `at`, a try is under way."""

    @property
    def retrying(self) -> bool:
        """A worker began to start after the latest failure: its outcome is not known yet."""
        return self.tried_at > self.at

    def stands_for(self, joined_at: float) -> bool:
        """Whether a job that joined at `joined_at` is told it: a start failed while it waited, or it joined
        after several failures in a row while no worker is trying (after a single failure, or while a
        worker begins to start, it waits for that try, which may start)."""
        return self.at > joined_at or (self.count >= 2 and not self.retrying)


def _expiry(until: float) -> dict[str, str]:
    """An item's TTL (`expires_at`): an hour past the time it is needed `until`."""
    return n(int(until) + 3600)


class FleetStore(Table):
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
                            "pk": s(f"lease#{group}"),
                            "sk": s(f"{slot:05d}"),
                            "owner": s(owner),
                            "lease_until": n(now + self.settings.lease_ttl_s),
                            "expires_at": _expiry(now + self.settings.lease_ttl_s),
                        },
                        ConditionExpression="attribute_not_exists(pk) OR lease_until < :now OR #o = :me",
                        ExpressionAttributeNames={"#o": "owner"},
                        ExpressionAttributeValues={":now": n(now), ":me": s(owner)},
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
                    Key={"pk": s(f"lease#{group}"), "sk": s(f"{slot:05d}")},
                    # Its TTL moves too: a batch may hold a slot past the hour its take gave the item.
                    UpdateExpression="SET lease_until = :until, expires_at = :expires",
                    ConditionExpression="#o = :me",
                    ExpressionAttributeNames={"#o": "owner"},
                    ExpressionAttributeValues={
                        ":until": n(now + self.settings.lease_ttl_s),
                        ":expires": _expiry(now + self.settings.lease_ttl_s),
                        ":me": s(owner),
                    },
                )
        except ClientError:
            return False
        return True

    def release_lease(self, group: str, slot: int, owner: str) -> None:
        try:
            with aws_errors("Releasing a lease"):
                self.client.delete_item(
                    TableName=self.settings.state_table_name,
                    Key={"pk": s(f"lease#{group}"), "sk": s(f"{slot:05d}")},
                    ConditionExpression="#o = :me",
                    ExpressionAttributeNames={"#o": "owner"},
                    ExpressionAttributeValues={":me": s(owner)},
                )
        except ClientError:
            return

    def held_leases(self, group: str) -> int:
        """Leases of the group that have not expired (running batches, fleet-wide)."""
        now = time.time()
        items = self.state_partition("Reading leases", f"lease#{group}", ConsistentRead=True)
        return sum(1 for item in items if float(item["lease_until"]["N"]) >= now)

    # ---- workers and statistics -----------------------------------------------------------------

    def worker_alive(self, api_name: str, worker_id: str, alive_for_s: float, slots: int) -> None:
        now = time.time()
        with aws_errors("Worker heartbeat"):
            self.client.put_item(
                TableName=self.settings.state_table_name,
                Item={
                    "pk": s(f"workers#{api_name}"),
                    "sk": s(worker_id),
                    "alive_until": n(now + alive_for_s),
                    "slots": n(slots),
                    "expires_at": _expiry(now + alive_for_s),
                },
            )

    def worker_gone(self, api_name: str, worker_id: str) -> None:
        with aws_errors("Worker sign-off"):
            self.client.delete_item(
                TableName=self.settings.state_table_name,
                Key={"pk": s(f"workers#{api_name}"), "sk": s(worker_id)},
            )

    def live_workers(self, api_name: str) -> dict[str, int]:
        """Worker id → slots, for workers of the function whose heartbeat has not lapsed."""
        return self.fleet(api_name).workers

    def fleet(self, api_name: str) -> Fleet:
        """The function's live workers and, when none is live, until when one is expected (one query)."""
        now = time.time()
        items = self.state_partition("Reading workers", f"workers#{api_name}")
        workers = {
            item["sk"]["S"]: int(item["slots"]["N"])
            for item in items
            if item["sk"]["S"] not in (WAKE_SK, START_FAILED_SK) and float(item["alive_until"]["N"]) >= now
        }
        wake = [float(item["starting_until"]["N"]) for item in items if item["sk"]["S"] == WAKE_SK]
        failed = [
            StartFailure(
                item["kind"]["S"],
                item["detail"]["S"],
                float(item["failed_at"]["N"]),
                int(item.get("failures", {}).get("N", 1)),
                float(item.get("tried_at", {}).get("N", 0)),
            )
            for item in items
            if item["sk"]["S"] == START_FAILED_SK and float(item["failed_at"]["N"]) + START_FAILURE_KEPT_S >= now
        ]
        return Fleet(workers, wake[0] if wake else None, failed[0] if failed else None, now)

    def record_start_failure(self, api_name: str, error: BaseException) -> None:
        """A worker of the function could not start (its app's import or setup raised): every stream
        fails the jobs waiting, saying so, until a worker starts (joins still wake the service)."""
        now = time.time()
        with aws_errors("Recording a failed start"):
            self.client.update_item(
                TableName=self.settings.state_table_name,
                Key={"pk": s(f"workers#{api_name}"), "sk": s(START_FAILED_SK)},
                # `alive_until` 0: a front from before this item existed reads it as a dead worker.
                UpdateExpression=(
                    "SET kind = :kind, detail = :detail, failed_at = :now, alive_until = :zero, "
                    "expires_at = :expires ADD failures :one"
                ),
                ExpressionAttributeValues={
                    ":kind": s(type(error).__name__),
                    ":detail": s(str(error)[:500] or type(error).__name__),
                    ":now": n(now),
                    ":zero": n(0),
                    ":one": n(1),
                    ":expires": _expiry(now + START_FAILURE_KEPT_S),
                },
            )

    def note_start_attempt(self, api_name: str) -> None:
        """A worker of the function begins to start (before its app loads): where its last start failed,
        jobs that join meanwhile wait for this try's outcome (one conditional write per worker start)."""
        try:
            with aws_errors("Noting a start"):
                self.client.update_item(
                    TableName=self.settings.state_table_name,
                    Key={"pk": s(f"workers#{api_name}"), "sk": s(START_FAILED_SK)},
                    UpdateExpression="SET tried_at = :now",
                    ConditionExpression="attribute_exists(pk)",
                    ExpressionAttributeValues={":now": n(time.time())},
                )
        except ClientError:
            return  # no failed start stands

    def clear_start_failure(self, api_name: str) -> None:
        """A worker of the function started: an earlier failed start no longer stands."""
        with aws_errors("Clearing a failed start"):
            self.client.delete_item(
                TableName=self.settings.state_table_name,
                Key={"pk": s(f"workers#{api_name}"), "sk": s(START_FAILED_SK)},
            )

    def record_wake(self, api_name: str, expected_in_s: float) -> None:
        """A worker of the function is starting and expected in `expected_in_s` (for every front's ETA)."""
        now = time.time()
        with aws_errors("Recording a wake-up"):
            self.client.put_item(
                TableName=self.settings.state_table_name,
                Item={
                    "pk": s(f"workers#{api_name}"),
                    "sk": s(WAKE_SK),
                    "starting_until": n(now + expected_in_s),
                    "expires_at": _expiry(now + expected_in_s),
                },
            )

    def is_worker_alive(self, api_name: str, worker_id: str) -> bool:
        with aws_errors("Reading a worker"):
            item = self.client.get_item(
                TableName=self.settings.state_table_name,
                Key={"pk": s(f"workers#{api_name}"), "sk": s(worker_id)},
                ConsistentRead=True,
            ).get("Item")
        return item is not None and float(item["alive_until"]["N"]) >= time.time()

    def stats(self, api_name: str) -> FunctionStats:
        """The function's smoothed batch duration and size, from its latest batch record (one read)."""
        items = self.state_partition("Reading statistics", f"batches#{api_name}", ScanIndexForward=False, Limit=1)
        if not items or "avg_batch_s" not in items[0]:
            return FunctionStats()
        item = items[0]
        return FunctionStats(
            avg_batch_s=float(item["avg_batch_s"]["N"]),
            avg_batch_size=float(item["avg_batch_size"]["N"]),
            batches=int(item.get("batches", {}).get("N", 0)),
            avg_cycle_s=float(item["avg_cycle_s"]["N"]) if "avg_cycle_s" in item else None,
        )

    # ---- operator view: recent batches and queue-depth samples (read by `surge.status`) ----------
    #
    # Items: `batches#<api_name>` / `<stamp>#<worker>` (one per batch a worker ran) and `depth#app` /
    # `<epoch second>` (one per sampling bucket). Both are read newest-first with bounded queries, so
    # they cost nothing to keep until their `expires_at` (TTL) removes them.

    def record_batch(self, api_name: str, batch: BatchRecord, stats: FunctionStats) -> None:
        """Log one batch a worker ran with the worker's smoothed statistics (one put): the status page
        shows the latest few, and the front's ETA reads the newest."""
        size, failed, duration_s, worker_id = batch.size, batch.failed, batch.duration_s, batch.worker_id
        now = time.time()
        cycle = {"avg_cycle_s": n(float(stats.avg_cycle_s))} if stats.avg_cycle_s is not None else {}
        with aws_errors("Recording a batch"):
            self.client.put_item(
                TableName=self.settings.state_table_name,
                Item={
                    **cycle,
                    "pk": s(f"batches#{api_name}"),
                    "sk": s(f"{CLOCK.next():020d}#{worker_id}"),
                    "finished_at": n(now),
                    "size": n(size),
                    "failed": n(failed),
                    "duration_s": n(float(duration_s)),
                    "worker_id": s(worker_id),
                    "avg_batch_s": n(float(stats.avg_batch_s or duration_s)),
                    "avg_batch_size": n(float(stats.avg_batch_size or size)),
                    "batches": n(stats.batches),
                    "expires_at": n(int(now) + OPERATOR_ITEMS_KEEP_S),
                },
            )

    def recent_batches(self, api_name: str, limit: int) -> list[BatchRecord]:
        """The function's last `limit` batches, oldest first."""
        items = self.state_partition(
            "Reading recent batches", f"batches#{api_name}", ScanIndexForward=False, Limit=limit
        )
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
                        "pk": s("depth#app"),
                        "sk": s(f"{bucket:012d}"),
                        "waiting": n(counters.waiting),
                        "groups": s(json.dumps(groups, separators=(",", ":"))),
                        "expires_at": n(int(now) + OPERATOR_ITEMS_KEEP_S),
                    },
                    ConditionExpression="attribute_not_exists(pk)",
                )
        except ClientError:
            return False
        return True

    def depth_history(self, since: float) -> list[DepthSample]:
        """Depth samples from epoch second `since` on, oldest first."""
        items = self.query(
            "Reading queue depth history",
            TableName=self.settings.state_table_name,
            KeyConditionExpression="pk = :pk AND sk >= :since",
            ExpressionAttributeValues={":pk": s("depth#app"), ":since": s(f"{max(0, int(since)):012d}")},
        )
        return [
            DepthSample(
                t=float(item["sk"]["S"]), waiting=int(item["waiting"]["N"]), groups=json.loads(item["groups"]["S"])
            )
            for item in items
        ]


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
