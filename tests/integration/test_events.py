"""Every file in events/ drives the real Lambda handler it belongs to, against moto (in-process)."""

from __future__ import annotations

import importlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import boto3
import pytest
from moto import mock_aws

from surge import protocol
from surge.application import load_app
from surge.deadletter import DEAD_LETTER_MESSAGE
from surge.models import Job, JobMessage, JobState
from surge.settings import Settings
from surge.store import Store
from surge_local.provision import provision
from tests.integration.test_worker import serving

EVENTS = Path(__file__).resolve().parents[2] / "events"
APP = "examples.demo_app:app"
SESSION = "3f7c2a9e-5b1d-4c8e-9a6f-2d4b8e1c7a90"
"""The session of events/apigateway/post_join.json and post_cancel.json."""


def load_event(name: str) -> dict[str, Any]:
    event: dict[str, Any] = json.loads((EVENTS / name).read_text())
    return event


@dataclass(frozen=True)
class LambdaContext:
    """The attributes of Lambda's context object that Powertools and Mangum read."""

    function_name: str = "surge-ApiFunction"
    memory_limit_in_mb: int = 512
    invoked_function_arn: str = "arn:aws:lambda:us-east-1:123456789012:function:surge-ApiFunction"
    aws_request_id: str = "4a1f9c8e-0000-4000-8000-000000000001"


@dataclass
class Deployed:
    settings: Settings
    store: Store

    def handler(self, module: str) -> Any:
        """Import (again) an edge module, so it reads this stack's environment as it would at cold start."""
        loaded: ModuleType = importlib.import_module(module)
        return importlib.reload(loaded).handler


@pytest.fixture
def stack(monkeypatch: pytest.MonkeyPatch) -> Iterator[Deployed]:
    with mock_aws():
        resources = provision(load_app(APP), prefix="surge-", max_receive_count=5)
        settings = Settings(app_module=APP, **vars(resources))
        for name, value in settings.to_env().items():
            monkeypatch.setenv(name, value)
        monkeypatch.setenv("POWERTOOLS_METRICS_NAMESPACE", "Surge/test")
        yield Deployed(settings, Store(settings))


def emf_metrics(output: str) -> list[dict[str, Any]]:
    """The CloudWatch embedded-metric-format lines a handler printed."""
    lines = [json.loads(line) for line in output.splitlines() if line.startswith("{")]
    return [line for line in lines if "_aws" in line]


def test_get_config_event_returns_gradios_config(stack: Deployed) -> None:
    response = stack.handler("api_handler")(load_event("apigateway/get_config.json"), LambdaContext())
    assert response["statusCode"] == 200
    config = json.loads(response["body"])
    assert config["protocol"] == "sse_v3"
    assert [d["api_name"] for d in config["dependencies"]] == ["echo", "trim_words", "stream_tokens", "sim_gpu"]


def test_get_info_event_lists_named_endpoints(stack: Deployed) -> None:
    response = stack.handler("api_handler")(load_event("apigateway/get_info.json"), LambdaContext())
    assert response["statusCode"] == 200
    info = json.loads(response["body"])
    assert "/trim_words" in info["named_endpoints"]
    assert info["unnamed_endpoints"] == {}


def test_post_join_event_admits_and_enqueues_the_job(stack: Deployed, capsys: pytest.CaptureFixture[str]) -> None:
    event = load_event("apigateway/post_join.json")
    response = stack.handler("api_handler")(event, LambdaContext())
    assert response["statusCode"] == 200
    event_id = json.loads(response["body"])["event_id"]
    job = stack.store.get_job(SESSION, event_id)
    assert job is not None
    assert (job.api_name, job.state) == ("trim_words", JobState.WAITING)
    messages = boto3.client("sqs").receive_message(QueueUrl=stack.settings.queue_url("trim_words"))["Messages"]
    sent = [JobMessage.model_validate_json(m["Body"]) for m in messages]
    assert [(m.job_id, m.session_hash, m.api_name, m.shard, m.data) for m in sent] == [
        (event_id, SESSION, "trim_words", job.shard, ["hello", 3])
    ], "the message carries the job's key, shard and inputs (the inputs are not stored in the table)"
    assert stack.store.counters().shards[job.shard].waiting == 1
    admissions = [m for m in emf_metrics(capsys.readouterr().out) if "admissions" in m]
    assert [(m["function"], m["service"], m["admissions"]) for m in admissions] == [("trim_words", "api", [1.0])]
    assert admissions[0]["_aws"]["CloudWatchMetrics"][0]["Namespace"] == "Surge/test"


def test_a_join_through_api_gateway_records_the_apps_public_url_with_its_stage(stack: Deployed) -> None:
    """Output files' URLs start with it: without the stage (which Mangum strips from the path) they
    would name a path API Gateway does not serve."""
    event = load_event("apigateway/post_join.json")
    assert event["requestContext"]["path"] == "/live" + event["path"]
    assert stack.handler("api_handler")(event, LambdaContext())["statusCode"] == 200
    (message,) = boto3.client("sqs").receive_message(QueueUrl=stack.settings.queue_url("trim_words"))["Messages"]
    caller = JobMessage.model_validate_json(message["Body"]).caller
    assert caller is not None
    assert caller.root_url == "https://a1b2c3d4e5.execute-api.us-east-1.amazonaws.com/live"


def test_api_handler_logs_with_the_request_id_as_correlation_id(stack: Deployed) -> None:
    event = load_event("apigateway/post_join.json")
    event["body"] = event["body"].replace('"fn_index":1', '"fn_index":99')
    response = stack.handler("api_handler")(event, LambdaContext())
    assert response["statusCode"] == 404
    logger = importlib.import_module("api_handler").logger
    assert logger.get_correlation_id() == event["requestContext"]["requestId"]


def test_post_run_event_answers_the_output_within_the_invocation(
    stack: Deployed, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Gradio's direct call through API Gateway and Mangum: the invocation's response is the output, and
    the job is gone from the log once it returns (nothing runs after a Lambda's response); past
    `RUN_WAIT_S`, a 504 and the job cancelled, before the function's own timeout."""
    event = load_event("apigateway/post_run.json")
    with serving(stack.settings, "echo"):
        response = stack.handler("api_handler")(event, LambdaContext())
    assert response["statusCode"] == 200
    answer = json.loads(response["body"])
    assert answer["data"] == ["hello"] and answer["is_generating"] is False
    assert _events_items(stack) == [] and stack.store.counters().waiting == 0
    monkeypatch.setenv("RUN_WAIT_S", "0.5")
    late = stack.handler("api_handler")(event, LambdaContext())  # no worker: it waits its limit
    assert late["statusCode"] == 504 and "did not finish within 0.5 s" in json.loads(late["body"])["error"]
    assert stack.store.counters().waiting == 0, "the cancelled job left its place"


def _events_items(stack: Deployed) -> list[dict[str, Any]]:
    return list(boto3.resource("dynamodb").Table(stack.settings.events_table_name).scan()["Items"])


def test_post_cancel_event_cancels_the_sessions_waiting_job(stack: Deployed) -> None:
    handler = stack.handler("api_handler")
    joined = handler(load_event("apigateway/post_join.json"), LambdaContext())
    event_id = json.loads(joined["body"])["event_id"]
    cancel = load_event("apigateway/post_cancel.json")
    unknown = handler(cancel, LambdaContext())
    assert unknown["statusCode"] == 404
    body = json.loads(cancel["body"])
    cancel["body"] = json.dumps({**body, "event_id": event_id})
    response = handler(cancel, LambdaContext())
    assert (response["statusCode"], json.loads(response["body"])) == (200, {"success": True})
    job = stack.store.get_job(SESSION, event_id)
    assert job is not None and job.state is JobState.CANCELLED
    assert job.result == protocol.cancelled(event_id)
    assert stack.store.counters().waiting == 0
    again = handler(cancel, LambdaContext())
    assert (again["statusCode"], json.loads(again["body"])) == (200, {"success": False}), "an ended job stays ended"
    cancel["body"] = json.dumps({**body, "event_id": event_id, "session_hash": "0" * 32})
    assert handler(cancel, LambdaContext())["statusCode"] == 404, "another session cannot cancel this job"


def _admitted_job(stack: Deployed, job_id: str, session_hash: str = SESSION) -> Job:
    job = Job(
        job_id=job_id,
        session_hash=session_hash,
        api_name="trim_words",
        group="trim_words",
        state=JobState.WAITING,
        data=["hello", 3],
        created_at=1764190496.0,
    )
    return stack.store.admit(job, None, 1)


def dead_letter_event(job: Job | None = None) -> dict[str, Any]:
    """events/sqs/dead_letter.json with its body the message of `job` (as SQS moved it to the DLQ).

    The stored body names a job of its own; the tests admit theirs and put its message there."""
    event = load_event("sqs/dead_letter.json")
    if job is not None:
        event["Records"][0]["body"] = JobMessage.of(job).model_dump_json()
    return event


def _job_id_of_event() -> str:
    job_id: str = json.loads(load_event("sqs/dead_letter.json")["Records"][0]["body"])["job_id"]
    return job_id


def test_dead_letter_event_fails_the_job_and_tells_its_session(stack: Deployed) -> None:
    job_id = _job_id_of_event()
    job = _admitted_job(stack, job_id)
    event = dead_letter_event(job)
    handler = stack.handler("deadletter_handler")
    assert handler(event, LambdaContext(function_name="surge-DeadLetterFunction")) == {"batchItemFailures": []}
    (failed,) = stack.store.read_session(job.session_hash)
    assert failed.job_id == job_id and failed.state is JobState.FAILED
    assert failed.result == protocol.failed(job_id, DEAD_LETTER_MESSAGE)
    assert stack.store.counters().waiting == 0
    handler(event, LambdaContext(function_name="surge-DeadLetterFunction"))
    (again,) = stack.store.read_session(job.session_hash)
    assert again == failed, "a second delivery of the dead letter changes nothing"
    assert stack.store.counters().waiting == 0, "the job left its shard once"


def test_dead_letter_event_for_a_running_job_fails_it_once(stack: Deployed) -> None:
    job_id = _job_id_of_event()
    (running,) = stack.store.claim([_admitted_job(stack, job_id)], "worker-gone").claimed
    stack.handler("deadletter_handler")(
        dead_letter_event(running), LambdaContext(function_name="surge-DeadLetterFunction")
    )
    failed = stack.store.get_job(SESSION, job_id)
    assert failed is not None and failed.state is JobState.FAILED
    assert failed.result == protocol.failed(job_id, DEAD_LETTER_MESSAGE)
    assert stack.store.fail_abandoned(running, protocol.failed(job_id, "again")) is False
    assert stack.store.counters().waiting == 0


def test_dead_letter_event_whose_body_names_no_job_is_dropped(stack: Deployed) -> None:
    job = _admitted_job(stack, _job_id_of_event())
    event = dead_letter_event()  # the stored body, `{"job_id": ...}`: not a job message
    handler = stack.handler("deadletter_handler")
    assert handler(event, LambdaContext(function_name="surge-DeadLetterFunction")) == {"batchItemFailures": []}
    assert stack.store.get_job(SESSION, job.job_id).state is JobState.WAITING  # type: ignore[union-attr]


def test_dead_letter_event_whose_body_pydantic_cannot_parse_still_fails_its_job(stack: Deployed) -> None:
    """A message nested deeper than pydantic's parser reads (200 levels) is dead-lettered by the worker;
    its job was dropped as "names no job", counted and awaited for good. Python's parser reads it."""
    job = _admitted_job(stack, _job_id_of_event())
    event = dead_letter_event(job)
    deep: Any = "x"
    for _ in range(210):
        deep = [deep]
    body = json.loads(event["Records"][0]["body"])
    event["Records"][0]["body"] = json.dumps({**body, "data": [deep, 3]})
    handler = stack.handler("deadletter_handler")
    assert handler(event, LambdaContext(function_name="surge-DeadLetterFunction")) == {"batchItemFailures": []}
    failed = stack.store.get_job(SESSION, job.job_id)
    assert failed is not None and failed.state is JobState.FAILED
    assert stack.store.counters().waiting == 0


def test_dead_letter_event_retries_only_what_aws_refused(stack: Deployed, monkeypatch: pytest.MonkeyPatch) -> None:
    from surge.errors import Unavailable
    from surge.store import Store as StoreClass

    event = dead_letter_event(_admitted_job(stack, _job_id_of_event()))
    handler = stack.handler("deadletter_handler")

    def refuse(self: StoreClass, session_hash: str, job_id: str) -> Job | None:
        raise Unavailable("DynamoDB is throttling")

    monkeypatch.setattr(StoreClass, "get_job", refuse)
    response = handler(event, LambdaContext(function_name="surge-DeadLetterFunction"))
    assert response == {"batchItemFailures": [{"itemIdentifier": event["Records"][0]["messageId"]}]}


def test_local_env_file_names_what_the_local_emulator_gets_provisioned(stack: Deployed) -> None:
    """events/local-env.json (for `sam local invoke`) must name the tables and queues that
    `provision` creates and every setting the handlers require."""
    variables = load_event("local-env.json")["Parameters"]
    settings = Settings.from_env(variables)
    assert settings.events_table_name == stack.settings.events_table_name
    assert settings.state_table_name == stack.settings.state_table_name
    assert settings.queue_url_prefix.startswith(variables["AWS_ENDPOINT_URL"])
    assert settings.queue_url_prefix.endswith("/123456789012/surge-")
    assert stack.settings.queue_url_prefix.endswith("/123456789012/surge-")
