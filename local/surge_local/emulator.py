"""The local AWS stand-in: moto servers on 127.0.0.1 for SQS and DynamoDB, with fidelity and speed fixes.

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
5. moto's `SendMessage` reads `queue.attributes` for the one `ContentBasedDeduplication` flag, and that
   property counts the queue's messages by scanning all of them: a send cost O(queue depth), 37 ms of
   server CPU at a depth of 1,000. While moto sends, `patch_moto` has the property answer that flag alone
   (the send path reads no other attribute; a test checks moto's source and the results).
6. moto's dispatcher looks a request's host up in a list of its module folders, listing the folder on
   disk for every request. `patch_moto` remembers the answer per host (the folders do not change).
7. werkzeug's server (moto's) answers every request with `Connection: close`, so each call paid a new TCP
   connection on both sides and a new server thread. `serve` runs moto's WSGI app under waitress instead:
   HTTP/1.1 keep-alive and a pool of threads, wide enough for every worker's SQS long poll at once.

8. moto keeps DynamoDB items past their TTL (AWS deletes them, at no write cost, within days of
   expiry): locally the finish notices, batch records and cancelled jobs of a long run piled up, and
   queries of those partitions grew with them. `serve` deletes expired items of tables whose TTL is on
   every `TTL_SWEEP_S` (`sweep_expired`); `provision` turns TTL on as the template does.

9. moto records every model object it ever creates (`BaseModel.__new__` appends each to its class's
   `instances_tracked`, for its dashboard) and never lets go: each DynamoDB item put, and every copy
   moto makes of one per query or update, stayed alive, and the DynamoDB emulator grew by about 155 MB
   per 1,000 jobs (2,000 gradio_client calls: 94 MB to 414 MB). `patch_moto` leaves DynamoDB's and
   SQS's models untracked (S3's stay tracked: moto's reset disposes of their files through the list).

The launcher runs two of these processes, one for SQS and one for DynamoDB (`--services`), so the two
use both cores; children find them through `AWS_ENDPOINT_URL_SQS` and `AWS_ENDPOINT_URL_DYNAMODB`.
A process refuses requests for any other service, so a call sent to the wrong one fails loudly.
`--fidelity` (or `SURGE_EMULATOR_FIDELITY=1`) adds DynamoDB's per-item transaction conflicts and
throughput caps, see `surge_local.fidelity`.

Server CPU per call (`python -m bench.emulator_cpu`: one client, sequential calls, the emulator's user +
system time from /proc divided by the calls; 2-core machine shared with other work, 2026-12-01):

| call                          | before (fixes 1-4) | after (fixes 1-7) | after, fidelity mode |
|-------------------------------|--------------------|-------------------|----------------------|
| GetItem                       | 3.05 ms            | 1.1-1.3 ms        | 1.5 ms               |
| TransactWriteItems (2 items)  | 3.78 ms            | 1.5-1.9 ms        | 2.5-3.2 ms           |
| SendMessage at depth 1,000    | 36.8 ms            | 0.9-1.0 ms        | 1.0-1.6 ms           |
| SendMessage at depth 0        |                    | 1.2 ms            |                      |

(ranges: two or three runs each on the loaded machine. The fidelity checks alone take 0.05-0.3 ms a
call in process, so part of that column's difference is noise. Before the fixes, py-spy `--gil` put
about 10 % of the samples in the host lookup and 10-14 % in thread and connection set-up.)
"""

from __future__ import annotations

import argparse
import copy
import functools
import inspect
import logging
import os
import signal
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

import moto.dynamodb.models as dynamodb_models
from moto.core.common_models import BaseModel
from moto.core.model_instances import model_data
from moto.core.utils import unix_time
from moto.dynamodb.models import DynamoDBBackend
from moto.dynamodb.models.table import Table
from moto.dynamodb.responses import DynamoHandler
from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app
from moto.sqs.models import Message, Queue, SQSBackend
from waitress.server import create_server

from surge_local import ALSO_SERVED, FIDELITY_VARIABLE, SERVICES
from surge_local.fidelity import Fidelity
from surge_local.supervision import exit_with_parent

TTL_SWEEP_S = 30.0
"""How often the DynamoDB emulator deletes the items past their TTL (see fix 8)."""

MOTO_RETENTION_CHECK = SQSBackend.is_message_valid_based_on_retention_period
"""moto's own check, kept for the test that compares both."""


def _retention_check(self: SQSBackend, queue_name: str, message: Message) -> bool:
    retention_s = int(self.get_queue(queue_name).message_retention_period)  # type: ignore[attr-defined]
    return bool(retention_s + (message.sent_timestamp or 0) / 1000 > unix_time())


_DYNAMODB_LOCK = threading.RLock()
_FIDELITY: list[Fidelity] = []
"""The fidelity mode in force, if any (`patch_moto(fidelity=...)`)."""


def _atomic(call_action: Callable[[DynamoHandler], Any]) -> Callable[[DynamoHandler], Any]:
    @functools.wraps(call_action)
    def locked(self: DynamoHandler) -> Any:
        fidelity = _FIDELITY[0] if _FIDELITY else None
        arrived = fidelity.clock() if fidelity else 0.0
        with _DYNAMODB_LOCK:
            if fidelity is None:
                return call_action(self)
            refusal = _fidelity_refusal(fidelity, self, arrived)
            if refusal:
                return refusal
            try:
                response = call_action(self)
            finally:
                answer_in = fidelity.applied()
        if answer_in > 0:
            time.sleep(answer_in)  # a transaction is answered when it ends (see surge_local.fidelity)
        return response

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


MOTO_SEND_MESSAGE = SQSBackend.send_message
MOTO_QUEUE_ATTRIBUTES: property = Queue.attributes  # type: ignore[assignment]
"""moto's own send and attribute read, which the patched ones still run."""
_SENDING = threading.local()


def _send_message(self: SQSBackend, *args: Any, **kwargs: Any) -> Message:
    _SENDING.active = True
    try:
        return MOTO_SEND_MESSAGE(self, *args, **kwargs)
    finally:
        _SENDING.active = False


def _queue_attributes(self: Queue) -> dict[str, Any]:
    if not getattr(_SENDING, "active", False):
        return MOTO_QUEUE_ATTRIBUTES.fget(self)  # type: ignore[misc,no-any-return]
    flag = getattr(self, "content_based_deduplication", None) if self.fifo_queue else None
    return {} if flag is None else {"ContentBasedDeduplication": str(flag).lower()}


MOTO_MODEL_NEW = BaseModel.__new__
"""moto's own model constructor, which records every instance (fix 9)."""
UNTRACKED_SERVICES = frozenset({"dynamodb", "sqs"})


def _model_new(cls: type[BaseModel], *args: Any, **kwargs: Any) -> BaseModel:
    if cls.__module__.split(".")[1] in UNTRACKED_SERVICES:
        return object.__new__(cls)
    return MOTO_MODEL_NEW(cls, *args, **kwargs)


_model_new.__surge_untracked__ = True  # type: ignore[attr-defined]


MOTO_BACKEND_FOR_HOST = DomainDispatcherApplication.get_backend_for_host


def _backend_for_host(self: DomainDispatcherApplication, host: str | None) -> Any:
    cache: dict[str | None, Any] = self.__dict__.setdefault("_surge_backends", {})
    if host not in cache:  # called under the dispatcher's own lock
        cache[host] = MOTO_BACKEND_FOR_HOST(self, host)
    return cache[host]


def _fidelity_refusal(fidelity: Fidelity, handler: DynamoHandler, arrived: float) -> Any:
    environ = getattr(getattr(handler, "normalized_request", None), "environ", {})
    connection = f"{environ['REMOTE_ADDR']}:{environ['REMOTE_PORT']}" if "REMOTE_PORT" in environ else None
    try:
        params = getattr(handler, "params", {})
        return fidelity.check(handler._get_action(), params, handler.dynamodb_backend, arrived, connection)
    except Exception:  # a malformed request or unknown table: moto answers it with its own error
        return None


def patch_moto(fidelity: Fidelity | None = None) -> None:
    """Apply the fixes (idempotent), and the fidelity mode if given (or turn it off if not)."""
    SQSBackend.is_message_valid_based_on_retention_period = _retention_check  # type: ignore[method-assign]
    if not getattr(DynamoHandler.call_action, "__surge_atomic__", False):
        DynamoHandler.call_action = _atomic(DynamoHandler.call_action)  # type: ignore[method-assign]
    dynamodb_models.copy = _TablesNotCopied  # type: ignore[attr-defined,assignment]
    DynamoDBBackend.transact_write_items = _transact_write_items  # type: ignore[method-assign]
    Table.query = _partition_query  # type: ignore[method-assign]
    SQSBackend.send_message = _send_message  # type: ignore[method-assign]
    Queue.attributes = property(_queue_attributes)  # type: ignore[assignment,method-assign]
    DomainDispatcherApplication.get_backend_for_host = _backend_for_host  # type: ignore[method-assign]
    if not getattr(BaseModel.__new__, "__surge_untracked__", False):
        BaseModel.__new__ = staticmethod(_model_new)  # type: ignore[method-assign]
        for service in UNTRACKED_SERVICES:
            for model in model_data[service].values():
                model.instances_tracked = []  # type: ignore[attr-defined]
    _FIDELITY[:] = [fidelity] if fidelity else []


def sweep_expired(now: float | None = None) -> int:
    """Delete every item whose TTL attribute (a number of epoch seconds) is past `now`, in every table with
    TTL on, as DynamoDB's TTL does; returns how many were deleted. Under the emulator's request lock."""
    now = time.time() if now is None else now
    deleted = 0
    with _DYNAMODB_LOCK:
        for _, _, backend in dynamodb_models.dynamodb_backends.iter_backends():
            for table in list(backend.tables.values()):  # type: ignore[attr-defined]
                if table.ttl.get("TimeToLiveStatus") != "ENABLED":
                    continue
                attribute = table.ttl["AttributeName"]
                for item in table.all_items():
                    expiry = item.attrs.get(attribute)
                    if expiry is not None and expiry.type == "N" and float(expiry.value) < now:
                        table.delete_item(item.hash_key, item.range_key)
                        deleted += 1
                for hash_key in [key for key, part in table.items.items() if isinstance(part, dict) and not part]:
                    del table.items[hash_key]  # moto leaves a partition's dict behind its last delete
    return deleted


def _sweep_forever(every_s: float) -> None:
    while True:
        time.sleep(every_s)
        try:
            sweep_expired()
        except Exception:  # never stop the emulator for its housekeeping
            logging.getLogger(__name__).exception("deleting expired items failed")


def signed_service(environ: dict[str, Any]) -> str | None:
    """The service a SigV4-signed request names in its credential scope (`.../us-east-1/sqs/aws4_request`)."""
    try:
        scope = environ["HTTP_AUTHORIZATION"].split(",")[0].split()[1]
        return str(scope.split("/")[3]).lower()
    except (KeyError, IndexError):
        return None


def only(services: Iterable[str], app: Callable[..., Any]) -> Callable[..., Any]:
    """The WSGI `app`, refusing signed requests for any service but `services` with a 400."""
    allowed = frozenset(services)

    def guarded(environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        service = signed_service(environ)
        if service is None or service in allowed:
            return app(environ, start_response)
        body = f"this emulator serves {', '.join(sorted(allowed))}, not {service}".encode()
        start_response("400 Bad Request", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
        return [body]

    return guarded


def serve(port: int, services: Iterable[str] = SERVICES, fidelity: bool = False, threads: int = 64) -> None:
    """Run moto for `services` on 127.0.0.1:`port` until SIGTERM or SIGINT.

    `threads` bounds the requests in progress at once; each SQS long poll holds one for its wait, so it
    must exceed the pollers of the whole stack (a request beyond it waits, it is not refused)."""
    services = frozenset(services)
    patch_moto(Fidelity() if fidelity else None)
    logging.getLogger("waitress").setLevel(logging.ERROR)
    app = only(services, DomainDispatcherApplication(create_backend_app))
    server = create_server(
        app,
        host="127.0.0.1",
        port=port,
        threads=threads,
        connection_limit=2000,
        channel_timeout=300,
        asyncore_use_poll=True,
        ident="surge-emulator",
    )

    if "dynamodb" in services:
        threading.Thread(target=_sweep_forever, args=(TTL_SWEEP_S,), name="ttl-sweep", daemon=True).start()

    def stop(*_: Any) -> None:
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    server.run()  # returns on SystemExit, once its threads have stopped


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--port", type=int, required=True)
    every = ",".join((*SERVICES, *(also for extra in ALSO_SERVED.values() for also in extra)))
    parser.add_argument("--services", default=every, help=f"comma-separated (default: {every})")
    parser.add_argument("--fidelity", action="store_true", help=f"model per-item limits (or {FIDELITY_VARIABLE}=1)")
    parser.add_argument("--parent-pid", type=int, help="stop when this process is no longer the parent")
    arguments = parser.parse_args(argv)
    if arguments.parent_pid:
        exit_with_parent(arguments.parent_pid)
    fidelity = arguments.fidelity or os.environ.get(FIDELITY_VARIABLE, "") not in ("", "0")
    serve(arguments.port, arguments.services.split(","), fidelity)


if __name__ == "__main__":
    main()
