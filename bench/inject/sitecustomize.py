"""Counts the AWS API calls of a benchmarked process, by operation, through botocore's event hooks.

Python imports `sitecustomize` at start-up from the path; the benchmark puts this folder on the
`PYTHONPATH` of the Surge processes it starts, with `BENCH_CALLCOUNT_DIR` set. Nothing in Surge knows.
Each process keeps `{"service.Operation label": [calls, capacity units]}` (label: table and kind of
key, e.g. `dynamodb.BatchGetItem state/counters`, `dynamodb.Query events`,
`dynamodb.TransactWriteItems events+state/counters`, `dynamodb.BatchWriteItem events (delete)`) and writes it to
`<dir>/<role>-<pid>.json` on SIGUSR1 and at exit. Capacity units follow DynamoDB's billing for
items under 1 KB (writes) and reads under 4 KB: 1 WRU per written item (2 in a transaction),
1 RRU per strongly consistent read, 0.5 per eventually consistent one.
"""

from __future__ import annotations

import atexit
import json
import os
import signal
import sys
import threading
from typing import Any

_COUNTS: dict[str, list[float]] = {}
_LOCK = threading.RLock()
"""Re-entrant: `_dump` runs as a signal handler in the main thread, which may be inside `_count` holding it."""


def _units(operation: str, params: dict[str, Any]) -> float:
    consistent = 1.0 if params.get("ConsistentRead") else 0.5
    if operation in ("PutItem", "UpdateItem", "DeleteItem"):
        return 1.0
    if operation == "TransactWriteItems":
        return 2.0 * len(params.get("TransactItems", []))
    if operation == "BatchWriteItem":
        return float(sum(len(v) for v in params.get("RequestItems", {}).values()))
    if operation in ("GetItem", "Query"):
        return consistent
    if operation == "BatchGetItem":
        tables = params.get("RequestItems", {}).values()
        return float(sum(len(t.get("Keys", [])) * (1.0 if t.get("ConsistentRead") else 0.5) for t in tables))
    return 0.0


def _label(table: str, key: dict[str, Any]) -> str:
    """The last word of the table's name and, for state items, the kind of key: `counters#3` → `state/counters`.
    Events-table items (session_hash, sk) are `events`."""
    name = table.rsplit("-", 1)[-1].rsplit("_", 1)[-1]
    pk = key.get("pk", {}).get("S")
    return f"{name}/{pk.split('#', 1)[0]}" if pk else name


def _items(operation: str, params: dict[str, Any]) -> list[tuple[str, dict[str, Any], str]]:
    """(table, key, request kind) of every item a multi-item call names."""
    if operation == "TransactWriteItems":
        return [
            (str(body.get("TableName", "")), body.get("Key") or body.get("Item") or {}, "")
            for item in params.get("TransactItems", [])
            for body in item.values()
        ]
    if operation == "BatchWriteItem":
        return [
            (str(name), body.get("Key") or body.get("Item") or {}, kind.removesuffix("Request").lower())
            for name, requests in params.get("RequestItems", {}).items()
            for request in requests
            for kind, body in request.items()
        ]
    if operation == "BatchGetItem":
        return [
            (str(name), key, "")
            for name, spec in params.get("RequestItems", {}).items()
            for key in spec.get("Keys", [])
        ]
    return []


def _what(operation: str, params: dict[str, Any]) -> str:
    """Which tables and kinds of key a call touches: ` state/counters`, ` events`; for multi-item
    calls every label it touches (` events+state/counters`), batch writes with their request kinds
    (` events (delete)`)."""
    table = str(params.get("TableName", ""))
    if table:
        key = params.get("Key") or params.get("Item") or {}
        pk = params.get("ExpressionAttributeValues", {}).get(":pk", {}).get("S")
        if "pk" not in key and pk:
            key = {"pk": {"S": pk}}
        return " " + _label(table, key)
    items = _items(operation, params)
    if not items:
        return ""
    labels = "+".join(sorted({_label(name, key) for name, key, _ in items}))
    kinds = "+".join(sorted({kind for _, _, kind in items if kind}))
    return f" {labels} ({kinds})" if kinds else f" {labels}"


def _count(params: dict[str, Any], model: Any, **_: Any) -> None:
    service = model.service_model.service_name
    key = f"{service}.{model.name}" + (_what(model.name, params) if service == "dynamodb" else "")
    units = _units(model.name, params) if service == "dynamodb" else 0.0
    with _LOCK:
        entry = _COUNTS.setdefault(key, [0, 0.0])
        entry[0] += 1
        entry[1] += units


def _role() -> str:
    if os.environ.get("WORKER_API_NAME"):
        return f"worker.{os.environ['WORKER_API_NAME']}"
    if any("uvicorn" in arg for arg in sys.argv):
        return "front"
    return "other"


def _dump(*_: Any) -> None:
    """Write the counts. Runs as the SIGUSR1 handler, in the measured process's main thread: an
    exception raised here would surface in whatever that thread runs (the front's event loop, the
    worker's `serve`) and end the process, so a failed write is only reported."""
    folder = os.environ["BENCH_CALLCOUNT_DIR"]
    path = os.path.join(folder, f"{_role()}-{os.getpid()}.json")
    with _LOCK:
        text = json.dumps(_COUNTS)
    try:
        os.makedirs(folder, exist_ok=True)
        with open(path + ".tmp", "w") as out:
            out.write(text)
        os.replace(path + ".tmp", path)
    except OSError as error:
        print(f"bench callcount: could not write {path}: {error}", file=sys.stderr, flush=True)


def _install() -> None:
    import boto3

    boto3.setup_default_session()
    session = boto3.DEFAULT_SESSION
    assert session is not None
    session.events.register("before-parameter-build", _count)
    signal.signal(signal.SIGUSR1, _dump)
    atexit.register(_dump)


if os.environ.get("BENCH_CALLCOUNT_DIR"):
    _install()
