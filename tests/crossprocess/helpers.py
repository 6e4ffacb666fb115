"""Helpers for cross-process tests: raw protocol calls and reads of the stack's state."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx

from surge.models import Counters
from surge.store import Store
from surge_local.launcher import LocalStack


def new_session() -> str:
    return uuid.uuid4().hex


def join(stack: LocalStack, session: str, api_name: str, data: list[Any]) -> httpx.Response:
    fn_index = [d["api_name"] for d in httpx.get(f"{stack.url}/config").json()["dependencies"]].index(api_name)
    return httpx.post(
        f"{stack.url}/gradio_api/queue/join",
        json={"data": data, "fn_index": fn_index, "session_hash": session},
        timeout=30,
    )


def messages(stack: LocalStack, session: str, timeout_s: float = 60) -> Iterator[dict[str, Any]]:
    """Read a session's SSE stream frame by frame until `close_stream` (checking the framing)."""
    with httpx.stream(
        "GET", f"{stack.url}/gradio_api/queue/data", params={"session_hash": session}, timeout=timeout_s
    ) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        buffer = ""
        for chunk in response.iter_text():
            buffer += chunk
            while "\n\n" in buffer:
                frame, buffer = buffer.split("\n\n", 1)
                assert frame.startswith("data: ") and "\r" not in frame and "\n" not in frame, frame
                message = json.loads(frame[len("data: ") :])
                yield message
                if message["msg"] == "close_stream":
                    return


def counters(stack: LocalStack) -> Counters:
    """Every admission shard, read as the front reads them (strongly consistent)."""
    assert stack.settings is not None
    client = stack.client("dynamodb")
    return Store(stack.settings, client=client).counters()


def queue_depth(stack: LocalStack, api_name: str) -> tuple[int, int]:
    """(visible, in flight) messages of a function's queue."""
    assert stack.settings is not None
    sqs = stack.client("sqs")
    attributes = sqs.get_queue_attributes(
        QueueUrl=stack.settings.queue_url(api_name),
        AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
    )["Attributes"]
    return int(attributes["ApproximateNumberOfMessages"]), int(attributes["ApproximateNumberOfMessagesNotVisible"])


def held_leases(stack: LocalStack, group: str) -> int:
    assert stack.settings is not None
    client = stack.client("dynamodb")
    items = client.query(
        TableName=stack.settings.state_table_name,
        KeyConditionExpression="pk = :pk",
        ExpressionAttributeValues={":pk": {"S": f"lease#{group}"}},
        ConsistentRead=True,
    )["Items"]
    return sum(1 for item in items if float(item["lease_until"]["N"]) >= time.time())


def records(directory: Path, name: str) -> list[dict[str, Any]]:
    path = directory / f"{name}.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def wait_until(condition: Callable[[], bool], timeout_s: float, interval_s: float = 0.1) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(interval_s)
    return condition()
