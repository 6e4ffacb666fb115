"""Entry point of a worker process (ECS task or local CPU process): wiring only; the loop is `surge.worker`."""

from __future__ import annotations

import logging
import os
import signal
import threading

from surge.application import App, Function, load_app
from surge.broker import Broker
from surge.observability import MetricsObserver, json_logger
from surge.observer import Observer
from surge.settings import Settings
from surge.store import Store
from surge.worker import LeaseTurns, Worker


def observer_from_env() -> Observer:
    """Deployed (the task sets POWERTOOLS_METRICS_NAMESPACE): JSON logs and EMF metrics on stdout for
    awslogs; locally: plain logs and no metrics."""
    namespace = os.environ.get("POWERTOOLS_METRICS_NAMESPACE")
    if not namespace:
        logging.basicConfig(
            level=os.environ.get("LOG_LEVEL", "INFO"), format="%(asctime)s %(name)s %(levelname)s %(message)s"
        )
        return Observer()
    json_logger("worker")
    return MetricsObserver("worker", namespace)


def worker_slots(app: App, function: Function, setting: str) -> int:
    """Batches one worker runs at once: `WORKER_SLOTS`, or with `auto` the function's concurrency limit
    (as Gradio's one process runs `concurrency_limit=3` three at a time; the group's leases still cap it
    fleet-wide), one where the limit is 1. With no limit, what the app says (`App.unlimited_batches_at_once`):
    one in a Surge app (a worker is one device), `max_threads` in a Gradio app, as Gradio's process runs
    them. A lane of a page's events keeps its own count (`Settings.page_event_slots`)."""
    if setting != "auto":
        return max(1, int(setting))
    limit = app.concurrency_limit(function.concurrency_id)
    if limit is None:
        plain = function.events is None and function.reserve is None
        return app.unlimited_batches_at_once() if plain else 1
    return max(1, limit)


def served_here(app: App, api_names: str, setting: str) -> list[tuple[Function, int]]:
    """What one worker process serves, each with its slots: one function on ECS; locally one process may
    serve several (`WORKER_API_NAME=a,b`), each on its own loops, as Gradio's one process serves every
    event. A Gradio page's own events (`page_events`) run beside the app's first function, in its
    workers, with the lane's own count (not its host's: forty loops of an unlimited host, each polling)."""
    functions = [app.get(name.strip()) for name in api_names.split(",")]
    return [
        (served, worker_slots(app, served, setting)) for function in functions for served in app.served_by(function)
    ]


def main() -> None:
    observer = observer_from_env()
    settings = Settings.from_env(os.environ)
    app = load_app(settings.app_module, settings)
    turns = LeaseTurns()  # the process's loops line up for a shared concurrency group's slots
    workers = [
        Worker(app, served, settings, Store(settings), Broker(settings), slots=slots, observer=observer, turns=turns)
        for served, slots in served_here(app, os.environ["WORKER_API_NAME"], os.environ.get("WORKER_SLOTS", "auto"))
    ]

    def stop(*_: object) -> None:
        for worker in workers:
            worker.stop()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    app.run_setup()
    beside = [threading.Thread(target=w.serve, name=f"serve-{w.function.api_name}") for w in workers[1:]]
    for thread in beside:
        thread.start()
    workers[0].serve()
    for thread in beside:
        thread.join()


if __name__ == "__main__":
    main()
