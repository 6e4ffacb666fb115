"""Entry point of a worker process (ECS task or local CPU process): wiring only; the loop is `surge.worker`."""

from __future__ import annotations

import logging
import os
import signal

from surge.application import load_app
from surge.broker import Broker
from surge.settings import Settings
from surge.store import Store
from surge.supervision import PARENT_PID_VARIABLE, exit_with_parent
from surge.worker import Worker


def main() -> None:
    logging.basicConfig(
        level=os.environ.get("LOG_LEVEL", "INFO"), format="%(asctime)s %(name)s %(levelname)s %(message)s"
    )
    settings = Settings.from_env(os.environ)
    app = load_app(settings.app_module)
    function = app.get(os.environ["WORKER_API_NAME"])
    worker = Worker(
        app, function, settings, Store(settings), Broker(settings), slots=int(os.environ.get("WORKER_SLOTS", "1"))
    )
    signal.signal(signal.SIGTERM, lambda *_: worker.stop())
    signal.signal(signal.SIGINT, lambda *_: worker.stop())
    if PARENT_PID_VARIABLE in os.environ:  # started by the local launcher: end with it
        exit_with_parent(int(os.environ[PARENT_PID_VARIABLE]))
    app.run_setup()
    worker.serve()


if __name__ == "__main__":
    main()
