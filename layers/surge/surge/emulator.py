"""The local AWS stand-in: a moto server on 127.0.0.1 for SQS and DynamoDB, with two fidelity fixes.

1. moto 5.x re-reads every queue attribute, a full scan of the queue, for each message it receives,
   only to look up the retention period: a receive of 10 at depth 1,000 then costs about a second.
   `patch_moto` replaces that lookup with a direct attribute read (same result; a test checks both).
2. moto's threaded server runs DynamoDB requests concurrently without locks, so two conditional
   writes to one item can both pass their condition. DynamoDB applies each request atomically;
   `patch_moto` serialises DynamoDB requests so the emulator keeps that promise.
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
from moto.dynamodb.responses import DynamoHandler
from moto.server import ThreadedMotoServer
from moto.sqs.models import Message, SQSBackend

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


def patch_moto() -> None:
    """Apply both fixes (idempotent)."""
    SQSBackend.is_message_valid_based_on_retention_period = _retention_check  # type: ignore[method-assign]
    if not getattr(DynamoHandler.call_action, "__surge_atomic__", False):
        DynamoHandler.call_action = _atomic(DynamoHandler.call_action)  # type: ignore[method-assign]


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
    serve(parser.parse_args().port)
