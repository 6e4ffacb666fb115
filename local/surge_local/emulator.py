"""The local AWS stand-in: a moto server on 127.0.0.1 for SQS and DynamoDB, with fidelity and speed fixes.

1. moto 5.x re-reads every queue attribute, a full scan of the queue, for each message it receives,
   only to look up the retention period: a receive of 10 at depth 1,000 then costs about a second.
   `patch_moto` replaces that lookup with a direct attribute read (same result; a test checks both).
2. moto's threaded server runs DynamoDB requests concurrently without locks, so two conditional
   writes to one item can both pass their condition. DynamoDB applies each request atomically;
   `patch_moto` serialises DynamoDB requests so the emulator keeps that promise.
3. moto's `TransactWriteItems` deep-copies every table it touches, once per item, to roll back on
   failure: a transaction of n items costs n copies of whole tables that grow all day (a worker's
   result write for a batch of 16 took seconds after some thousand jobs). `patch_moto` keeps moto's
   transaction code but saves and restores only the items the transaction names (same results).
4. moto's `Query` on a table sorts every item of the table, then keeps the partition asked for: a
   session's stream poll cost grew with every event ever written. `patch_moto` hands moto's query
   only the items of that partition (same results, in the same order).
"""

from __future__ import annotations

import argparse
import copy
import functools
import inspect
import logging
import signal
import threading
from collections.abc import Callable
from typing import Any

import moto.dynamodb.models as dynamodb_models
from moto.core.utils import unix_time
from moto.dynamodb.models import DynamoDBBackend
from moto.dynamodb.models.table import Table
from moto.dynamodb.responses import DynamoHandler
from moto.server import ThreadedMotoServer
from moto.sqs.models import Message, SQSBackend

from surge_local.supervision import exit_with_parent

MOTO_RETENTION_CHECK = SQSBackend.is_message_valid_based_on_retention_period
"""moto's own check, kept for the test that compares both."""


def _retention_check(self: SQSBackend, queue_name: str, message: Message) -> bool:
    retention_s = int(self.get_queue(queue_name).message_retention_period)  # type: ignore[attr-defined]
    return bool(retention_s + (message.sent_timestamp or 0) / 1000 > unix_time())


_DYNAMODB_LOCK = threading.RLock()


def _atomic(call_action: Callable[[DynamoHandler], Any]) -> Callable[[DynamoHandler], Any]:
    @functools.wraps(call_action)
    def locked(self: DynamoHandler) -> Any:
        with _DYNAMODB_LOCK:
            return call_action(self)

    locked.__surge_atomic__ = True  # type: ignore[attr-defined]
    return locked


MOTO_TRANSACT_WRITE = DynamoDBBackend.transact_write_items
"""moto's own transaction, which the patched one still runs (kept for the test that checks the copy)."""


class _TablesNotCopied:
    """Stands in for the `copy` module inside moto's DynamoDB backend: tables are not deep-copied.

    Only `transact_write_items` deep-copies tables there (for its rollback); `_transact_write_items`
    does that rollback item by item instead, and moto's own "restore" then puts back the same table.
    """

    @staticmethod
    def deepcopy(value: Any, memo: dict[int, Any] | None = None) -> Any:
        return value if isinstance(value, Table) else copy.deepcopy(value, memo)


def _transact_write_items(self: DynamoDBBackend, transact_items: list[dict[str, Any]]) -> None:
    saved: list[tuple[str, dict[str, Any], dict[str, Any] | None]] = []
    for entry in transact_items:
        op: dict[str, Any] = next(iter(entry.values()), {})
        try:
            table = self.get_table(op["TableName"])
            key = op.get("Key") or {
                name: op["Item"][name] for name in (table.hash_key_attr, table.range_key_attr) if name
            }
            current = self.get_item(op["TableName"], key)
        except Exception:
            continue
        saved.append((op["TableName"], key, current.to_json()["Attributes"] if current else None))
    try:
        MOTO_TRANSACT_WRITE(self, transact_items)
    except Exception:
        for table_name, key, attributes in reversed(saved):
            if attributes is None:
                self.delete_item(table_name, key)
            else:
                self.put_item(table_name, copy.deepcopy(attributes))
        raise


MOTO_QUERY = Table.query
"""moto's own query, which the patched one still runs on the partition's items."""
_QUERY_SIGNATURE = inspect.signature(MOTO_QUERY)


def _partition_query(self: Table, *args: Any, **kwargs: Any) -> Any:
    arguments = _QUERY_SIGNATURE.bind(self, *args, **kwargs).arguments
    hash_key = arguments.get("hash_key")
    if arguments.get("index_name") or hash_key is None:
        return MOTO_QUERY(self, *args, **kwargs)
    partition = self.items.get(hash_key)
    if partition is None:
        items = []
    elif self.range_key_attr:
        items = sorted(partition.values(), key=lambda item: item.range_key)
    else:
        items = [partition]
    self.all_items = lambda: items  # type: ignore[method-assign]
    try:
        return MOTO_QUERY(self, *args, **kwargs)
    finally:
        del self.all_items


def patch_moto() -> None:
    """Apply the fixes (idempotent)."""
    SQSBackend.is_message_valid_based_on_retention_period = _retention_check  # type: ignore[method-assign]
    if not getattr(DynamoHandler.call_action, "__surge_atomic__", False):
        DynamoHandler.call_action = _atomic(DynamoHandler.call_action)  # type: ignore[method-assign]
    dynamodb_models.copy = _TablesNotCopied  # type: ignore[attr-defined,assignment]
    DynamoDBBackend.transact_write_items = _transact_write_items  # type: ignore[method-assign]
    Table.query = _partition_query  # type: ignore[method-assign]


def serve(port: int) -> None:
    """Run the server on 127.0.0.1:`port` until SIGTERM or SIGINT."""
    patch_moto()
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    signal.signal(signal.SIGINT, lambda *_: done.set())
    done.wait()
    server.stop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--parent-pid", type=int, help="stop when this process is no longer the parent")
    arguments = parser.parse_args()
    if arguments.parent_pid:
        exit_with_parent(arguments.parent_pid)
    serve(arguments.port)
