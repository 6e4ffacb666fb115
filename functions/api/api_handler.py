"""API Lambda (ApiFunction): the front's buffered routes (config, info, join, cancel) under Mangum."""

from __future__ import annotations

import os

from aws_lambda_powertools.logging import correlation_paths
from mangum import Mangum

from surge.front import create_api_app
from surge.observability import DEFAULT_NAMESPACE, MetricsObserver, json_logger
from surge.settings import Settings
from surge.wiring import build_front

settings = Settings.from_env(os.environ)
logger = json_logger("api")
observer = MetricsObserver("api", os.environ.get("POWERTOOLS_METRICS_NAMESPACE", DEFAULT_NAMESPACE))
service = build_front(settings, observer)
handler = logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_REST)(
    Mangum(create_api_app(service), lifespan="off")
)
