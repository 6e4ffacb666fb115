"""Stream Lambda (StreamFunction): the session SSE routes, served by uvicorn under the Lambda Web Adapter."""

from __future__ import annotations

import os

from surge.application import load_app
from surge.broker import Broker
from surge.front import create_stream_app
from surge.observability import DEFAULT_NAMESPACE, CorrelationMiddleware, MetricsObserver, json_logger
from surge.service import FrontService
from surge.settings import Settings
from surge.store import Store

settings = Settings.from_env(os.environ)
logger = json_logger("stream")
observer = MetricsObserver("stream", os.environ.get("POWERTOOLS_METRICS_NAMESPACE", DEFAULT_NAMESPACE))
service = FrontService(load_app(settings.app_module), settings, Store(settings), Broker(settings), observer=observer)
app = CorrelationMiddleware(create_stream_app(service), logger)
