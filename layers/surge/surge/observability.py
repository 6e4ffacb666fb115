"""Where the deployed edges send what the core observes: Powertools JSON logs and EMF metrics per function.

Metrics are CloudWatch embedded-metric-format lines on stdout (Lambda and the ECS awslogs driver ship
them); every metric has the dimensions `service` (api, stream, worker, deadletter) and `function`.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.logging.utils import copy_config_to_registered_loggers
from aws_lambda_powertools.metrics import MetricUnit, single_metric

from surge.observer import Observer

DEFAULT_NAMESPACE = "Surge"

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]
Asgi = Callable[[Scope, Receive, Send], Awaitable[None]]


def json_logger(service: str) -> Logger:
    """A Powertools logger for `service` that also formats the core's `surge.*` loggers as JSON."""
    logger = Logger(service=service)
    # Powertools configures top-level loggers only: make `surge` a real logger so that every
    # `surge.*` record propagates to it and leaves through the JSON handler.
    logging.getLogger("surge")
    copy_config_to_registered_loggers(source_logger=logger, include={"surge"})
    return logger


class MetricsObserver(Observer):
    """Publishes the core's observations as EMF metrics: admissions, rejections, queue wait, batch
    size, batch duration and failures, each per function. Never raises (a metric is not worth a job)."""

    def __init__(self, service: str, namespace: str = DEFAULT_NAMESPACE) -> None:
        self.service = service
        self.namespace = namespace
        self._log = logging.getLogger("surge.observability")

    def _put(self, name: str, unit: MetricUnit, value: float, api_name: str, **dimensions: str) -> None:
        try:
            with single_metric(
                name=name,
                unit=unit,
                value=value,
                namespace=self.namespace,
                default_dimensions={"service": self.service, "function": api_name, **dimensions},
            ):
                pass
        except Exception:
            self._log.warning("could not publish metric %s", name, exc_info=True)

    def admitted(self, api_name: str) -> None:
        self._put("admissions", MetricUnit.Count, 1, api_name)

    def rejected(self, api_name: str, reason: str) -> None:
        self._put("rejections", MetricUnit.Count, 1, api_name, reason=reason)

    def batch_ran(self, api_name: str, size: int, duration_s: float, queue_wait_s: float) -> None:
        self._put("batch_size", MetricUnit.Count, size, api_name)
        self._put("batch_duration", MetricUnit.Seconds, duration_s, api_name)
        self._put("queue_wait", MetricUnit.Seconds, queue_wait_s, api_name)

    def job_failed(self, api_name: str, reason: str) -> None:
        self._put("job_failures", MetricUnit.Count, 1, api_name, reason=reason)


def request_id(scope: Scope) -> str | None:
    """The API Gateway request id of an ASGI request served under the Lambda Web Adapter, which passes
    the request context as the `x-amzn-request-context` JSON header."""
    for name, value in scope.get("headers", []):
        if name == b"x-amzn-request-context":
            try:
                context = json.loads(value)
            except ValueError:
                return None
            found = context.get("requestId") if isinstance(context, dict) else None
            return str(found) if found else None
    return None


class CorrelationMiddleware:
    """ASGI middleware: each request's logs carry its API Gateway request id as the correlation id.

    Plain ASGI (not Starlette's BaseHTTPMiddleware) so that streamed responses pass through untouched.
    """

    def __init__(self, app: Asgi, logger: Logger) -> None:
        self.app = app
        self.logger = logger

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope.get("type") == "http":
            self.logger.set_correlation_id(request_id(scope))
        await self.app(scope, receive, send)
