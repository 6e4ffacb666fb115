"""The workloads as Surge apps, one app per workload (each has its own `max_size`).

Served as `bench.apps.surge_apps:<workload>`. No fleet concurrency limit: each worker process is one
simulated device running one batch at a time, so K workers are K devices (Gradio gets
`concurrency_limit=K`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import surge
from bench.workloads import WORKLOADS, Workload, run_batch


def _app(workload: Workload) -> surge.App:
    app = surge.App(title=f"bench {workload.name}", max_size=workload.max_size, default_concurrency_limit=None)
    fn: Callable[..., Any]
    if workload.batch:

        def batched(texts: list[str]) -> list[list[str]]:
            return [run_batch(workload, texts)]

        fn = batched
    else:

        def single(text: str) -> str:
            return run_batch(workload, [text])[0]

        fn = single
    app.function(
        inputs=["textbox"],
        outputs=["textbox"],
        api_name=workload.name,
        batch=workload.batch,
        max_batch_size=workload.max_batch_size,
        # `echo` costs nothing: no hint (a hint must be > 0), its ETA is learned from its runs.
        eta_hint_s=workload.cost_s(workload.max_batch_size) or None,
    )(fn)
    return app


echo = _app(WORKLOADS["echo"])
sim_gpu = _app(WORKLOADS["sim_gpu"])
sim_gpu_unbatched = _app(WORKLOADS["sim_gpu_unbatched"])
slow_model = _app(WORKLOADS["slow_model"])

# A crowd that waits: no max_size, batches of 4 taking a second each (a queue that moves slowly), for
# `python -m bench.stream_capacity` (what one stream process pays per waiting visitor).
crowd = _app(Workload("crowd", batch=True, max_batch_size=4, fixed_s=1.0, per_item_s=0.0, max_size=0))
crowd.max_size = None
