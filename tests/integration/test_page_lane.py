"""A Gradio page's lane in-process against moto with a real worker loop: a page step whose event limit is
full in the worker stays in the queue instead of holding one of the worker's loops, so the page's quick
steps run meanwhile, and the limited ones still never overlap."""

from __future__ import annotations

import time

from surge.application import load_app
from surge.broker import Broker
from surge.models import JoinBody
from surge.service import FrontService
from surge.store import Store
from tests.integration.conftest import settings_for
from tests.integration.test_worker import serving


def test_a_full_limit_leaves_its_step_queued_and_quick_steps_pass_it(aws: None) -> None:
    settings = settings_for("tests.apps.gradio_apps:gated", page_event_slots=2)
    app = load_app(settings.app_module)
    lane = app.get("page_events")
    front = FrontService(app, settings, Store(settings), Broker(settings))
    slow, quick = sorted(lane.events or {})
    session = "lane" * 8
    jobs = {
        name: front.join(JoinBody(data=[name], fn_index=fn_index, session_hash=session)).job_id
        for name, fn_index in (("slow-a", slow), ("slow-b", slow), ("quick", quick))
    }
    done: dict[str, float] = {}
    started = time.monotonic()
    with serving(settings, "page_events"):
        while len(done) < len(jobs) and time.monotonic() - started < 20:
            for name, job_id in jobs.items():
                job = front.store.get_job(session, job_id)
                if name not in done and job is not None and job.result is not None:
                    done[name] = time.monotonic() - started
            time.sleep(0.05)
    assert set(done) == set(jobs), done
    first_slow, second_slow = sorted((done["slow-a"], done["slow-b"]))
    assert done["quick"] < first_slow, f"the quick step waited behind a full limit: {done}"
    assert second_slow - first_slow >= 1.4, f"the limit of 1 held: the slow steps ran one after the other: {done}"
