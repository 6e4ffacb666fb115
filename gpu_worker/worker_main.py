"""Entry point of a worker process (ECS task or local CPU process): wiring only; the loop is `surge.worker`."""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import threading

from surge.application import App, Function, load_app
from surge.broker import Broker
from surge.errors import Unavailable
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


def started(settings: Settings, api_names: str) -> App:
    """The app, loaded and set up (`@app.setup`). When its import or setup raises, the failure is recorded
    for each function this worker serves, before the process exits: streams then fail the waiting jobs,
    saying so, where visitors would otherwise wait for a worker that fails the same way (on ECS, until
    `WORKER_START_LIMIT_S`). A worker that starts clears it."""
    store = Store(settings)
    names = [name.strip() for name in api_names.split(",")]
    for name in names:
        with contextlib.suppress(Unavailable):
            store.note_start_attempt(name)
    try:
        app = load_app(settings.app_module, settings)
        names = [served.api_name for name in names for served in app.served_by(app.get(name))]
        app.run_setup()
    except Exception as error:
        logging.getLogger("surge.worker").exception("the app could not start in this worker")
        for name in names:
            try:
                store.record_start_failure(name, error)
            except Unavailable:
                logging.getLogger("surge.worker").warning("could not record the failed start of %s", name)
        raise SystemExit(1) from None  # its traceback is logged once, above
    for name in names:
        with contextlib.suppress(Unavailable):
            store.clear_start_failure(name)
    return app


def main() -> None:
    observer = observer_from_env()
    settings = Settings.from_env(os.environ)
    # Signals are taken before the app loads: a stop during a long setup (a deploy, a scale-in) is kept,
    # and the worker exits once set up, before it takes a job (PID 1 in a container drops a signal it has
    # no handler for; ECS would then kill it mid-batch after its stop timeout).
    stopping = threading.Event()
    workers: list[Worker] = []

    def stop(*_: object) -> None:
        stopping.set()
        for worker in workers:
            worker.stop()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    app = started(settings, os.environ["WORKER_API_NAME"])
    if stopping.is_set():
        return
    turns = LeaseTurns()  # the process's loops line up for a shared concurrency group's slots
    workers.extend(
        Worker(app, served, settings, Store(settings), Broker(settings), slots=slots, observer=observer, turns=turns)
        for served, slots in served_here(app, os.environ["WORKER_API_NAME"], os.environ.get("WORKER_SLOTS", "auto"))
    )
    if stopping.is_set():
        return
    beside = [threading.Thread(target=w.serve, name=f"serve-{w.function.api_name}") for w in workers[1:]]
    for thread in beside:
        thread.start()
    workers[0].serve()
    for thread in beside:
        thread.join()


if __name__ == "__main__":
    main()
