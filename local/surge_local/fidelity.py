"""The emulator's fidelity mode: DynamoDB behaviour moto does not model, per item (`SURGE_EMULATOR_FIDELITY=1`).

1. Transaction conflicts. DynamoDB cancels a `TransactWriteItems` with `TransactionCanceledException`
   (the item's reason `TransactionConflict`) when another transaction is under way on one of its items,
   and refuses a plain `PutItem`/`UpdateItem`/`DeleteItem` on such an item with
   `TransactionConflictException`. moto applies requests one at a time (`emulator.patch_moto` serialises
   them), so transactions never overlap there. The model: a transaction A is under way on its items for
   `conflict_window_s` (10 ms by default: about a small transaction's latency inside one region, twice a
   plain write's) from the moment the emulator runs it. A request B from another connection that the
   emulator runs inside that window overlaps A; B on A's own connection after A's answer is the same
   client's next call, which DynamoDB never refuses for A. The window is counted from when each
   request runs, not from when it arrived: time a request spends queued behind the emulator's lock is
   the emulator's, not DynamoDB's (counting it made every join of a busy minute conflict). A
   transaction is answered when its window ends, as DynamoDB answers one when it has committed: a call
   that follows from the answer (a worker claiming the job whose message the join sent after its
   transaction) comes after the transaction and never meets it. Answered at once, such claims met their
   own join's window: 0.7 extra claim transactions per job for a lone `echo` user.
2. Per-item throughput. One item (one partition key value) serves about 1,000 write units and 3,000
   read units per second; beyond that DynamoDB throttles, on-demand tables too. A write costs 1 unit
   per KB (the larger of the item before and after, rounded up), doubled inside a transaction; a
   strongly consistent read 1 unit per 4 KB, an eventually consistent one half that. Each item has a
   token bucket of one second's units. A throttled plain request gets
   `ProvisionedThroughputExceededException` with a `TableWriteKeyRangeThroughputExceeded` (or `Read`)
   throttling reason, which the SDKs retry with backoff; a throttled transaction is cancelled with the
   item's reason `ThrottlingError`, which they do not retry.

Not modelled: `Query`, `Scan` and the batch operations (neither conflicts nor throttling), table-level
and account-level limits, adaptive capacity splitting a hot partition.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from moto.dynamodb.models import DynamoDBBackend

Key = tuple[str, str, str]
"""(table, partition key value, sort key value) of one item."""

Response = tuple[int, dict[str, str], str]

PLAIN_WRITES = {"PutItem", "UpdateItem", "DeleteItem"}
ERROR_PREFIX = "com.amazonaws.dynamodb.v20120810#"
THROTTLED_MESSAGE = (
    "Throughput exceeds the current capacity of your table or index. DynamoDB is automatically scaling your "
    "table or index so please try again shortly. If exceptions persist, check if you have a hot key."
)


@dataclass
class _Hold:
    arrived: float
    connection: str | None


@dataclass
class _Bucket:
    tokens: float
    at: float


@dataclass
class Fidelity:
    """Per-item conflicts and throughput caps, checked before moto runs a DynamoDB request."""

    conflict_window_s: float = 0.010
    write_units_per_s: float = 1000.0
    read_units_per_s: float = 3000.0
    clock: Callable[[], float] = time.monotonic
    holds: dict[Key, _Hold] = field(default_factory=dict)
    buckets: dict[tuple[str, Key], _Bucket] = field(default_factory=dict)
    _running: list[_Hold] = field(default_factory=list)

    def check(
        self, action: str, params: dict[str, Any], backend: DynamoDBBackend, arrived: float, connection: str | None
    ) -> Response | None:
        """The error DynamoDB would answer instead of running the request, or None to run it (then call
        `applied` once moto has run it). `arrived` is the request's `clock()` time before it waited for
        the emulator's DynamoDB lock; the lock is held here, so checks and charges are atomic."""
        now = self.clock()
        self._running = []
        if action == "TransactWriteItems":
            return self._transaction(params, backend, now, _Hold(now, connection))
        if action in PLAIN_WRITES:
            return self._plain_write(params, backend, now, _Hold(now, connection))
        if action == "GetItem":
            key = _key(backend, params["TableName"], params.get("Key") or {})
            size = _stored_size(backend, params["TableName"], params.get("Key") or {})
            units = max(1, math.ceil(size / 4096)) * (1.0 if params.get("ConsistentRead") else 0.5)
            if not self._take("read", key, units, now):
                return _throttled(backend, params["TableName"], "Read")
        return None

    def applied(self) -> float:
        """The request `check` let through has been applied: its transaction's items are free after the window.
        Returns the seconds until then, which the emulator waits (outside its lock) before answering."""
        now = self.clock()
        answer_in = max((hold.arrived + self.conflict_window_s - now for hold in self._running), default=0.0)
        self._running = []
        return max(0.0, answer_in)

    def _overlaps(self, key: Key, request: _Hold) -> bool:
        hold = self.holds.get(key)
        if hold is None:
            return False
        other_client = request.connection is None or request.connection != hold.connection
        return other_client and request.arrived < hold.arrived + self.conflict_window_s

    def _plain_write(
        self, params: dict[str, Any], backend: DynamoDBBackend, now: float, request: _Hold
    ) -> Response | None:
        table = params["TableName"]
        item_key = params.get("Key") or _key_of_item(backend, table, params.get("Item") or {})
        key = _key(backend, table, item_key)
        if self._overlaps(key, request):
            return _error(ERROR_PREFIX + "TransactionConflictException", "Transaction is ongoing for the item")
        if not self._take("write", key, _write_units(backend, table, item_key, params.get("Item")), now):
            return _throttled(backend, table, "Write")
        return None

    def _transaction(
        self, params: dict[str, Any], backend: DynamoDBBackend, now: float, request: _Hold
    ) -> Response | None:
        entries = []
        for entry in params.get("TransactItems", []):
            op: dict[str, Any] = next(iter(entry.values()), {})
            table = op["TableName"]
            item_key = op.get("Key") or _key_of_item(backend, table, op.get("Item") or {})
            units = 2 * _write_units(backend, table, item_key, op.get("Item"))
            entries.append((table, _key(backend, table, item_key), units))
        conflicts = [self._overlaps(key, request) for _, key, _ in entries]
        if any(conflicts):
            return _cancelled(["TransactionConflict" if hit else "None" for hit in conflicts])
        starved = [not self._has("write", key, units, now) for _, key, units in entries]
        if any(starved):
            return _cancelled(["ThrottlingError" if hit else "None" for hit in starved])
        if len(self.holds) > 10_000:
            self.holds = {k: h for k, h in self.holds.items() if h.arrived + self.conflict_window_s > now}
        for _, key, units in entries:
            self._take("write", key, units, now)
            self.holds[key] = request
        self._running = [request]
        return None

    def _bucket(self, kind: str, key: Key, now: float) -> _Bucket:
        rate = self.write_units_per_s if kind == "write" else self.read_units_per_s
        bucket = self.buckets.get((kind, key))
        if bucket is None:
            if len(self.buckets) > 10_000:  # forget items that are back to a full second's units
                self.buckets = {k: b for k, b in self.buckets.items() if b.tokens + (now - b.at) * rate < rate}
            bucket = self.buckets[(kind, key)] = _Bucket(rate, now)
        bucket.tokens = min(rate, bucket.tokens + (now - bucket.at) * rate)
        bucket.at = now
        return bucket

    def _has(self, kind: str, key: Key, units: float, now: float) -> bool:
        return self._bucket(kind, key, now).tokens >= units

    def _take(self, kind: str, key: Key, units: float, now: float) -> bool:
        bucket = self._bucket(kind, key, now)
        if bucket.tokens < units:
            return False
        bucket.tokens -= units
        return True


def _key_of_item(backend: DynamoDBBackend, table_name: str, item: dict[str, Any]) -> dict[str, Any]:
    table = backend.get_table(table_name)
    return {name: item[name] for name in (table.hash_key_attr, table.range_key_attr) if name and name in item}


def _key(backend: DynamoDBBackend, table_name: str, item_key: dict[str, Any]) -> Key:
    table = backend.get_table(table_name)
    names = (table.hash_key_attr, table.range_key_attr)
    parts = [json.dumps(item_key.get(name) if name else None, sort_keys=True) for name in names]
    return (table_name, parts[0], parts[1])


def _stored_size(backend: DynamoDBBackend, table_name: str, item_key: dict[str, Any]) -> int:
    try:
        item = backend.get_item(table_name, item_key)
    except Exception:  # an invalid key: moto answers the request with its own validation error
        return 0
    return item.size() if item is not None else 0


def _write_units(backend: DynamoDBBackend, table: str, item_key: dict[str, Any], new: dict[str, Any] | None) -> int:
    new_size = sum(len(name.encode()) + len(json.dumps(value).encode()) for name, value in (new or {}).items())
    return max(1, math.ceil(max(new_size, _stored_size(backend, table, item_key)) / 1024))


def _error(error_type: str, message: str, **extra: Any) -> Response:
    body = json.dumps({"__type": error_type, "message": message, **extra})
    return 400, {"Content-Type": "application/x-amz-json-1.0"}, body


def _throttled(backend: DynamoDBBackend, table_name: str, operation: str) -> Response:
    arn = backend.get_table(table_name).table_arn
    reasons = [{"reason": f"Table{operation}KeyRangeThroughputExceeded", "resource": arn}]
    return _error(ERROR_PREFIX + "ProvisionedThroughputExceededException", THROTTLED_MESSAGE, ThrottlingReasons=reasons)


def _cancelled(codes: list[str]) -> Response:
    message = f"Transaction cancelled, please refer cancellation reasons for specific reasons [{', '.join(codes)}]"
    reasons = [{"Code": code} if code == "None" else {"Code": code, "Message": _REASONS[code]} for code in codes]
    return _error(ERROR_PREFIX + "TransactionCanceledException", message, CancellationReasons=reasons)


_REASONS = {
    "TransactionConflict": "Transaction is ongoing for the item",
    "ThrottlingError": "Throughput exceeds the current capacity for one or more tables or indexes.",
}
