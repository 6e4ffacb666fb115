"""A Gradio page's lane in-process against moto with a real worker loop: a page step whose event limit is
full in the worker is parked, unclaimed, instead of holding one of the worker's loops, so the page's quick
steps run meanwhile; the limited ones never overlap, and one that waits behind several others is
received once (waiting costs no SQS receives and never reaches the queue's `maxReceiveCount`)."""

from __future__ import annotations

import itertools
import time

import boto3

from surge.application import load_app
from surge.broker import Broker
from surge.models import JoinBody
from surge.service import FrontService
from surge.store import Store
from tests.integration.conftest import settings_for
from tests.integration.test_worker import serving


def test_a_full_limit_parks_its_steps_and_quick_steps_pass_them(aws: None) -> None:
    # Two receives would dead-letter a message: the third slow step waits about 3 s behind the others.
    settings = settings_for("tests.apps.gradio_apps:gated", page_event_slots=2, max_receive_count=2)
    app = load_app(settings.app_module)
    lane = app.get("page_events")
    front = FrontService(app, settings, Store(settings), Broker(settings))
    slow, quick = sorted(lane.events or {})
    session = "lane" * 8
    steps = (("slow-a", slow), ("slow-b", slow), ("slow-c", slow), ("quick", quick))
    jobs = {
        name: front.join(JoinBody(data=[name], fn_index=fn_index, session_hash=session)).job_id
        for name, fn_index in steps
    }
    done: dict[str, float] = {}
    started = time.monotonic()
    with serving(settings, "page_events"):
        while len(done) < len(jobs) and time.monotonic() - started < 30:
            for name, job_id in jobs.items():
                job = front.store.get_job(session, job_id)
                if name not in done and job is not None and job.result is not None:
                    done[name] = time.monotonic() - started
            time.sleep(0.05)
    assert set(done) == set(jobs), done
    ran = {}
    for name, job_id in jobs.items():
        job = front.store.get_job(session, job_id)
        assert job is not None and job.state.value == "completed", (name, job)
        assert job.started_at is not None and job.finished_at is not None, (name, job)
        ran[name] = (job.started_at, job.finished_at)
    # the worker's own times, not when the poll above noticed each result
    slow_runs = sorted(ran[name] for name in ("slow-a", "slow-b", "slow-c"))
    assert ran["quick"][1] < slow_runs[0][1], f"the quick step waited behind a full limit: {ran}"
    # run together, two 1.5 s steps would overlap by about 1.5 s (a claim may come just before the
    # previous step's finish is stamped: its place is freed when its call returns)
    overlaps = [earlier[1] - later[0] for earlier, later in itertools.pairwise(slow_runs)]
    assert max(overlaps) < 0.75, f"the limit of 1 held: the slow steps ran one after the other: {ran}"
    sqs = boto3.client("sqs")
    dead = sqs.get_queue_attributes(
        QueueUrl=settings.dead_letter_queue_url("page_events"),
        AttributeNames=["ApproximateNumberOfMessages"],
    )
    assert dead["Attributes"]["ApproximateNumberOfMessages"] == "0"
