"""Stream Lambda (StreamFunction): the session SSE routes, served by uvicorn under the Lambda Web Adapter."""

from __future__ import annotations

import os

import anyio.to_thread

from surge.front import create_stream_app
from surge.observability import DEFAULT_NAMESPACE, CorrelationMiddleware, MetricsObserver, json_logger
from surge.settings import Settings
from surge.wiring import build_front

settings = Settings.from_env(os.environ)
logger = json_logger("stream")
observer = MetricsObserver("stream", os.environ.get("POWERTOOLS_METRICS_NAMESPACE", DEFAULT_NAMESPACE))
service = build_front(settings, observer)


def size_thread_pool() -> None:
    """THREAD_POOL_SIZE threads for the blocking DynamoDB calls (anyio's default is 40): on managed
    instances one process holds many streams (template.yaml, StreamThreadsPerWorker)."""
    size = os.environ.get("THREAD_POOL_SIZE")
    if size:
        anyio.to_thread.current_default_thread_limiter().total_tokens = int(size)


stream = create_stream_app(service)
stream.router.on_startup.append(size_thread_pool)
app = CorrelationMiddleware(stream, logger)
