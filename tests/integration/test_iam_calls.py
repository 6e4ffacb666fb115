"""Each deployed role is granted every AWS call its code makes: the real front, stream, worker and
dead-letter code run against moto while every request is recorded, then checked against the
template's policies (actions, tables or queues, and the DynamoDB leading-key conditions).

The template tests pin the policies from above (nothing wider); this pins them from below (nothing a
deploy would refuse at run time, which moto cannot tell because it does not enforce IAM).
"""

from __future__ import annotations

import asyncio
import fnmatch
import re
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import boto3
import pytest
from moto import mock_aws

from surge.application import load_app
from surge.broker import Broker
from surge.deadletter import SqsRecord, fail_dead_lettered
from surge.front import create_api_app, session_hub
from surge.models import Job, JobMessage, JobState, JoinBody
from surge.observer import Observer
from surge.service import FrontService
from surge.session import PollPolicy, SessionStream
from surge.settings import Settings
from surge.store import Store
from surge.worker import Worker
from surge_local.provision import provision
from tests.template.stack import SERVICE_TEMPLATE, TEMPLATE, load, statements, transformed

APP = "examples.demo_app:app"
FAST_POLL = PollPolicy(min_s=0.01, max_s=0.05, empty_session_s=0.2)

TRANSACT_ACTIONS = {
    "Put": "PutItem",
    "Update": "UpdateItem",
    "Delete": "DeleteItem",
    "ConditionCheck": "ConditionCheckItem",
}


@dataclass(frozen=True)
class Call:
    """One IAM-checked request: the action, the table or queue it names, and the partition key it touches."""

    action: str
    resource: str
    leading_key: str | None = None


@dataclass
class Recorder:
    """Turns botocore requests into `Call`s, labelled with the role whose code is running."""

    settings: Settings
    role: str = "none"
    calls: dict[str, set[Call]] = field(default_factory=dict)

    def table(self, name: str) -> str:
        tables = {
            self.settings.events_table_name: "events",
            self.settings.state_table_name: "state",
        }
        return tables[name]

    def add(self, action: str, resource: str, leading_key: str | None = None) -> None:
        self.calls.setdefault(self.role, set()).add(Call(action, resource, leading_key))

    def __call__(self, params: dict[str, Any], model: Any, **_: Any) -> None:
        service = model.service_model.service_name
        if service == "sqs":
            queue = "dlq" if params["QueueUrl"].endswith("-dlq") else "queue"
            self.add(f"sqs:{model.name.removesuffix('Batch')}", queue)
        elif service == "dynamodb":
            self._dynamodb(model.name, params)

    def _dynamodb(self, operation: str, params: dict[str, Any]) -> None:
        if operation == "TransactWriteItems":
            for item in params["TransactItems"]:
                ((kind, action),) = item.items()
                self.add(f"dynamodb:{TRANSACT_ACTIONS[kind]}", self.table(action["TableName"]), _key(action))
        elif operation == "BatchGetItem":
            for table, request in params["RequestItems"].items():
                for key in request["Keys"]:
                    self.add("dynamodb:BatchGetItem", self.table(table), _partition(key))
        elif operation == "BatchWriteItem":
            for table, requests in params["RequestItems"].items():
                for request in requests:
                    ((_, write),) = request.items()
                    self.add(
                        "dynamodb:BatchWriteItem", self.table(table), _partition(write.get("Item") or write["Key"])
                    )
        elif operation == "Query":
            self.add("dynamodb:Query", self.table(params["TableName"]), _queried(params))
        else:
            self.add(f"dynamodb:{operation}", self.table(params["TableName"]), _key(params))


def _partition(key: dict[str, Any]) -> str | None:
    for name in ("pk", "job_id", "session_hash"):
        if name in key:
            return str(key[name]["S"])
    return None


def _key(params: dict[str, Any]) -> str | None:
    return _partition(params.get("Key") or params.get("Item") or {})


def _queried(params: dict[str, Any]) -> str | None:
    match = re.search(r"\b(?:pk|session_hash) = (:\w+)", params["KeyConditionExpression"])
    return str(params["ExpressionAttributeValues"][match.group(1)]["S"]) if match else None


@pytest.fixture
def recorded(monkeypatch: pytest.MonkeyPatch) -> Iterator[Recorder]:
    with mock_aws():
        resources = provision(load_app(APP), prefix="surge-", max_receive_count=5)
        settings = Settings(app_module=APP, **vars(resources), poll_wait_s=1, session_grace_s=0.0)
        boto3.setup_default_session()
        recorder = Recorder(settings)
        boto3.DEFAULT_SESSION.events.register("before-parameter-build.*.*", recorder)  # type: ignore[union-attr]
        yield recorder


def _service(settings: Settings) -> FrontService:
    return FrontService(load_app(APP), settings, Store(settings), Broker(settings))


def _api_calls(recorder: Recorder) -> list[str]:
    """Through the API app: pages, config, status JSON, joins, a cancel."""
    from fastapi.testclient import TestClient

    recorder.role = "api"
    client = TestClient(create_api_app(_service(recorder.settings)))
    for path in ("/", "/status", "/config", "/gradio_api/info", "/gradio_api/surge/status"):
        assert client.get(path).status_code == 200, path
    # echo jobs get a worker below; the trim_words job never does, so its client's drop releases it.
    joins = [
        client.post("/gradio_api/queue/join", json={"data": data, "fn_index": index, "session_hash": session})
        for data, index, session in [
            (["done"], 0, "session-done-000001"),
            (["cancel"], 0, "session-done-000001"),
            (["dropped", 3], 1, "session-gone-000001"),
        ]
    ]
    event_ids = [response.json()["event_id"] for response in joins]
    sessions = ["session-done-000001", "session-done-000001", "session-gone-000001"]
    cancel = {"event_id": event_ids[1], "session_hash": "session-done-000001"}
    assert client.post("/gradio_api/cancel", json=cancel).json() == {"success": True}
    return list(zip(sessions, event_ids, strict=True))


def _job_state(settings: Settings, session_hash: str, job_id: str) -> str | None:
    unrecorded = boto3.session.Session().client("dynamodb")  # the test's own reads are nobody's role
    key = {"session_hash": {"S": session_hash}, "sk": {"S": job_id}}
    item = unrecorded.get_item(TableName=settings.events_table_name, Key=key, ConsistentRead=True).get("Item")
    return item["state"]["S"] if item else None


def _worker_calls(recorder: Recorder, job: tuple[str, str]) -> None:
    """One echo worker serves until the first job is done."""
    recorder.role = "worker:echo"
    app = load_app(APP)
    settings = recorder.settings
    worker = Worker(app, app.get("echo"), settings, Store(settings), Broker(settings))
    thread = threading.Thread(target=worker.serve)
    thread.start()
    try:
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and _job_state(settings, *job) != JobState.COMPLETED.value:
            time.sleep(0.05)
    finally:
        worker.stop()
        thread.join(timeout=10)
        # Idle long enough, with its queue empty and a job counted that has no message: it looks for
        # such jobs (this one is too young to end).
        recorder.role = "none"
        store = Store(settings)
        orphan = store.admit(
            Job(
                job_id="orphan",
                session_hash="session-lost-000001",
                api_name="echo",
                group="echo",
                state=JobState.WAITING,
                data=["lost"],
                created_at=time.time(),
            ),
            None,
            1,
        )
        recorder.role = "worker:echo"
        worker.received_at = worker.reconciled_at = time.monotonic() - 2 * settings.reconcile_every_s
        worker._reconcile()
        recorder.role = "none"
        assert {"dynamodb:Scan", "sqs:GetQueueAttributes"} <= {c.action for c in recorder.calls["worker:echo"]}
        assert store.end_waiting(orphan, JobState.CANCELLED, {"msg": "process_completed"})


async def _stream(service: FrontService, session_hash: str, dropped_job: str | None = None) -> None:
    """Read a session's stream to its end, or (with `dropped_job`) go away after the first message
    and wait for the stream to release that waiting job, as it does for a client that drops."""
    messages = SessionStream(session_hub(service), session_hash, FAST_POLL).messages()
    async for message in messages:
        if dropped_job or message["msg"] == "close_stream":
            break
    await messages.aclose()
    for _ in range(200 if dropped_job else 0):
        if _job_state(service.settings, session_hash, dropped_job or "") == JobState.CANCELLED.value:
            return
        await asyncio.sleep(0.05)


def _stream_calls(recorder: Recorder, dropped_job: str) -> None:
    """A session read to its end, and a session whose client drops while its job waits."""
    recorder.role = "stream"
    service = _service(recorder.settings)
    asyncio.run(_stream(service, "session-done-000001"))
    asyncio.run(_stream(service, "session-gone-000001", dropped_job))


def _deadletter_calls(recorder: Recorder) -> None:
    recorder.role = "api"
    job = _service(recorder.settings).join(JoinBody(data=["x"], fn_index=0, session_hash="session-dlq-0000001"))
    recorder.role = "deadletter"
    record = SqsRecord(messageId="m-1", body=JobMessage.of(job).model_dump_json())
    assert fail_dead_lettered([record], Store(recorder.settings), Observer()) == []


# ---- what the template grants -------------------------------------------------------------------------

ROOT_RESOURCES = {"EventsTable": "events", "StateTable": "state", "PageEventsQueue": "page_events"}
PARAMETERS = {"PageEventsQueueArn": "page_events", "PageEventsDeadLetterQueueArn": "page_events_dlq"}
"""ARNs a function's stack is given (a Gradio page's queue, which the demo app, a surge.App, never calls)."""
NESTED_RESOURCES = {
    "${EventsTableName}": "events",
    "${StateTableName}": "state",
    "Queue": "queue",
    "DeadLetterQueue": "dlq",
}
ROOT_PATTERNS = {"${AWS::StackName}-*-dlq": "dlq"}
"""ARNs the root stack grants by name pattern (the dead-letter role drains every function's queue)."""


@dataclass(frozen=True)
class Grant:
    actions: frozenset[str]
    resource: str
    leading_keys: tuple[str, ...] | None

    def allows(self, call: Call) -> bool:
        if call.action not in self.actions or call.resource != self.resource:
            return False
        if self.leading_keys is None:
            return True
        return call.leading_key is not None and any(fnmatch.fnmatchcase(call.leading_key, p) for p in self.leading_keys)


def _resource(node: Any) -> str:
    if "Ref" in node:
        return PARAMETERS[node["Ref"]]
    if "Fn::GetAtt" in node:
        name = node["Fn::GetAtt"][0]
        return ROOT_RESOURCES.get(name) or NESTED_RESOURCES[name]
    text = node["Fn::Sub"]
    return next(value for key, value in {**NESTED_RESOURCES, **ROOT_PATTERNS}.items() if text.endswith(key))


def _grants(holder: dict[str, Any], api_name: str = "") -> list[Grant]:
    found = []
    for statement in statements(holder):
        if not any(action.startswith(("dynamodb:", "sqs:")) for action in _actions(statement)):
            continue  # the ECS grants of the wake-up are pinned by tests/template (this records data calls)
        condition = statement.get("Condition", {})
        keys = None
        for operator in condition.values():
            values = operator["dynamodb:LeadingKeys"]
            keys = tuple(v["Fn::Sub"].replace("${ApiName}", api_name) if isinstance(v, dict) else v for v in values)
        actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
        found.append(Grant(frozenset(actions), _resource(statement["Resource"]), keys))
    return found


def _actions(statement: dict[str, Any]) -> list[str]:
    action = statement["Action"]
    return action if isinstance(action, list) else [action]


def granted() -> dict[str, list[Grant]]:
    root = transformed(load(TEMPLATE))["Resources"]
    nested = load(SERVICE_TEMPLATE)["Resources"]
    return {
        "api": _grants(root["ApiFunctionRole"]) + _grants(nested["FrontSendPolicy"]),
        "stream": _grants(root["StreamFunctionRole"]),
        "deadletter": _grants(root["DeadLetterFunctionRole"]),
        "worker:echo": _grants(nested["WorkerRole"], "echo"),
    }


def test_every_call_of_every_role_is_granted_by_the_template(recorded: Recorder) -> None:
    done, _cancelled, dropped = _api_calls(recorded)
    _worker_calls(recorded, done)
    _stream_calls(recorded, dropped[1])
    _deadletter_calls(recorded)
    assert _job_state(recorded.settings, *dropped) == JobState.CANCELLED.value

    grants = granted()
    assert set(recorded.calls) - {"none"} == set(grants)
    refused = {
        role: sorted(str(call) for call in calls if not any(grant.allows(call) for grant in grants[role]))
        for role, calls in recorded.calls.items()
        if role != "none"
    }
    assert refused == {role: [] for role in grants}


def test_the_check_refuses_a_call_outside_the_grants() -> None:
    grants = granted()
    outside = [
        ("stream", Call("dynamodb:PutItem", "state", "counters")),
        ("stream", Call("sqs:SendMessage", "queue")),
        ("worker:echo", Call("dynamodb:PutItem", "state", "workers#trim_words")),
        ("api", Call("dynamodb:DeleteItem", "jobs", "abc")),
        ("deadletter", Call("dynamodb:UpdateItem", "state", "lease#echo")),
    ]
    for role, call in outside:
        assert not any(grant.allows(call) for grant in grants[role]), (role, call)
