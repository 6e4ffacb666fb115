"""The local AWS stand-in: a moto server on 127.0.0.1 for SQS and DynamoDB, with three fidelity fixes.

1. moto 5.x re-reads every queue attribute, a full scan of the queue, for each message it receives,
   only to look up the retention period: a receive of 10 at depth 1,000 then costs about a second.
   `patch_moto` replaces that lookup with a direct attribute read (same result; a test checks both).
2. moto's threaded server runs DynamoDB requests concurrently without locks, so two conditional
   writes to one item can both pass their condition. DynamoDB applies each request atomically;
   `patch_moto` serialises DynamoDB requests so the emulator keeps that promise.
3. moto's DynamoDB Query on a table's key lists and sorts every item of the table, then keeps the
   partition asked for: a session's event-log read costs ~50 ms at 2,000 events and ~1 s at 40,000,
   so a local stack slows down as its tables fill. `patch_moto` hands that query the partition alone
   (same results; a test checks both).
"""

from __future__ import annotations

import argparse
import functools
import logging
import signal
import threading
from collections.abc import Callable
from typing import Any

from moto.core.utils import unix_time
from moto.dynamodb.models.table import Table
from moto.dynamodb.responses import DynamoHandler
from moto.server import ThreadedMotoServer
from moto.sqs.models import Message, SQSBackend

from surge.supervision import exit_with_parent

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


MOTO_TABLE_QUERY = Table.query
MOTO_ALL_ITEMS = Table.all_items
"""moto's own, kept for the test that compares both."""

_PARTITION = threading.local()
"""`scope`: the (table, hash key) of the base-table query running on this thread, else None."""
_QUERY_INDEX_NAME_ARG = 6
"""Position of `index_name` among `Table.query`'s arguments after `hash_key` (moto 5.x)."""


def _partition_query(query: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(query)
    def by_partition(self: Table, hash_key: Any, *args: Any, **kwargs: Any) -> Any:
        index_name = args[_QUERY_INDEX_NAME_ARG] if len(args) > _QUERY_INDEX_NAME_ARG else kwargs.get("index_name")
        if index_name is not None or hash_key is None:
            return query(self, hash_key, *args, **kwargs)
        _PARTITION.scope = (self, hash_key)
        try:
            return query(self, hash_key, *args, **kwargs)
        finally:
            _PARTITION.scope = None

    by_partition.__surge_partition__ = True  # type: ignore[attr-defined]
    return by_partition


def _partition_items(all_items: Callable[[Table], list[Any]]) -> Callable[[Table], list[Any]]:
    @functools.wraps(all_items)
    def items(self: Table) -> list[Any]:
        scope = getattr(_PARTITION, "scope", None)
        if scope is None or scope[0] is not self:
            return all_items(self)
        partition = self.items.get(scope[1])
        if partition is None:
            return []
        return list(partition.values()) if self.range_key_attr else [partition]

    return items


def patch_moto() -> None:
    """Apply the three fixes (idempotent)."""
    SQSBackend.is_message_valid_based_on_retention_period = _retention_check  # type: ignore[method-assign]
    if not getattr(DynamoHandler.call_action, "__surge_atomic__", False):
        DynamoHandler.call_action = _atomic(DynamoHandler.call_action)  # type: ignore[method-assign]
    if not getattr(Table.query, "__surge_partition__", False):
        Table.query = _partition_query(Table.query)  # type: ignore[method-assign]
        Table.all_items = _partition_items(Table.all_items)  # type: ignore[method-assign,assignment]


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
