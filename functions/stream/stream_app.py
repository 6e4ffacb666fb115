"""Stream Lambda (StreamFunction): the session SSE routes, served by uvicorn under the Lambda Web Adapter."""

from __future__ import annotations

import os

from surge.front import create_stream_app
from surge.observability import DEFAULT_NAMESPACE, CorrelationMiddleware, MetricsObserver, json_logger
from surge.settings import Settings
from surge.wiring import build_front

settings = Settings.from_env(os.environ)
logger = json_logger("stream")
observer = MetricsObserver("stream", os.environ.get("POWERTOOLS_METRICS_NAMESPACE", DEFAULT_NAMESPACE))
service = build_front(settings, observer)


app = CorrelationMiddleware(create_stream_app(service), logger)
