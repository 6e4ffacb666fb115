"""The one composition root: every edge (API Lambda, stream Lambda, dead-letter Lambda, worker task,
local front) builds its object graph here from `Settings`, so the graph is written once."""

from __future__ import annotations

from surge.application import App, load_app
from surge.broker import Broker
from surge.observer import Observer
from surge.service import FrontService
from surge.settings import Settings
from surge.store import Store
from surge.wake import EcsWorkerServices, Waker
from surge.worker import Worker


def build_front(settings: Settings, observer: Observer | None = None, app: App | None = None) -> FrontService:
    """The front's service: the app, its store and queues, and (deployed) the waker of its workers."""
    waker = Waker(EcsWorkerServices(settings.worker_cluster_name)) if settings.worker_cluster_name else None
    if app is None and settings.app_declaration_path:
        from surge.declared import load_declared

        app = load_declared(settings.app_declaration_path, settings)
    app = app or load_app(settings.app_module, settings)
    return FrontService(app, settings, Store(settings), Broker(settings), observer, waker=waker)


def build_worker(settings: Settings, api_name: str, slots: int = 1, observer: Observer | None = None) -> Worker:
    """A worker of one function of the app (`api_name`), with `slots` loops."""
    app = load_app(settings.app_module, settings)
    return Worker(app, app.get(api_name), settings, Store(settings), Broker(settings), slots=slots, observer=observer)
