"""The join path wakes a sleeping worker service and the visitor's ETA counts the measured start; a job
that no worker ever serves fails with a clear message and frees its place (moto: ECS, DynamoDB, SQS)."""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any

import boto3

from surge.application import App
from surge.front import session_hub
from surge.models import JobState, JoinBody
from surge.session import PollPolicy, SessionStream
from surge.settings import Settings
from surge.wiring import build_front
from tests.integration.conftest import settings_for


def _sleeping_service(cluster: str) -> None:
    ecs = boto3.client("ecs")
    ecs.create_cluster(clusterName=cluster)
    ecs.register_task_definition(
        family="surge-echo", containerDefinitions=[{"name": "worker", "image": "worker:1", "memory": 512}]
    )
    ecs.create_service(cluster=cluster, serviceName="echo", taskDefinition="surge-echo", desiredCount=0)


async def _read(stream: SessionStream, seconds: float) -> list[dict[str, Any]]:
    seen: list[dict[str, Any]] = []

    async def read() -> None:
        async for message in stream.messages():
            seen.append(message)

    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(read(), seconds)
    return seen


def test_a_join_with_no_live_worker_wakes_the_service_and_the_eta_says_a_worker_is_starting(
    demo: tuple[App, Settings],
) -> None:
    _, settings = demo
    _sleeping_service("surge-workers")
    front = build_front(settings.model_copy(update={"worker_cluster_name": "surge-workers", "counters_tick_s": 0.1}))
    session = "s" * 32
    front.join(JoinBody(data=["hi"], api_name="/echo", session_hash=session))
    service = boto3.client("ecs").describe_services(cluster="surge-workers", services=["echo"])["services"][0]
    assert service["desiredCount"] == 1
    fleet = front.store.fleet("echo")
    assert not fleet.workers and fleet.starting_until is not None
    assert fleet.starting_until - time.time() > 500  # no start measured yet: the default (600 s)

    seen = asyncio.run(_read(SessionStream(session_hub(front), session, PollPolicy()), 1.5))
    (estimation,) = [m for m in seen if m["msg"] == "estimation"]
    assert estimation["rank"] == 0 and estimation["rank_eta"] > 500


def test_a_job_no_worker_serves_within_the_bound_fails_clearly_and_frees_its_place(demo: tuple[App, Settings]) -> None:
    _, settings = demo
    front = build_front(settings.model_copy(update={"worker_start_limit_s": 0.5, "counters_tick_s": 0.1}))
    session = "t" * 32
    job = front.join(JoinBody(data=["hi"], api_name="/echo", session_hash=session))
    assert front.store.counters().waiting == 1

    seen = asyncio.run(_read(SessionStream(session_hub(front), session, PollPolicy()), 5.0))
    (completed,) = [m for m in seen if m["msg"] == "process_completed"]
    assert completed["success"] is False and "could be started within 0 s" in completed["output"]["error"]
    assert seen[-1]["msg"] == "close_stream"
    assert front.store.counters().waiting == 0
    assert front.store.get_job(session, job.job_id) is None  # delivered, then forgotten
    assert JobState.FAILED.value == "failed"


def test_a_page_event_wakes_the_service_of_the_apps_first_function(aws: None) -> None:
    """A Gradio page's own events have no service: their join wakes the workers that serve them."""
    settings = settings_for("tests.apps.gradio_apps:chat")
    ecs = boto3.client("ecs")
    ecs.create_cluster(clusterName="surge-workers")
    ecs.register_task_definition(
        family="surge-reply", containerDefinitions=[{"name": "worker", "image": "worker:1", "memory": 512}]
    )
    ecs.create_service(cluster="surge-workers", serviceName="reply", taskDefinition="surge-reply", desiredCount=0)
    front = build_front(settings.model_copy(update={"worker_cluster_name": "surge-workers"}))
    lane = front.app.get("page_events")
    event = min(lane.events or {})
    inputs = (lane.events or {})[event].inputs
    front.join(JoinBody(data=[None] * inputs, fn_index=event, session_hash="p" * 32))
    service = ecs.describe_services(cluster="surge-workers", services=["reply"])["services"][0]
    assert service["desiredCount"] == 1
    assert front.store.fleet("page_events").starting_until is not None, "the page's visitor is told a worker starts"
