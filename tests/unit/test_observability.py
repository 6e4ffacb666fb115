"""The deployed edges' observability: EMF metrics per function and JSON logs correlated per request."""

from __future__ import annotations

import asyncio
import io
import json
import logging
from typing import Any

import pytest

from surge.observability import CorrelationMiddleware, MetricsObserver, json_logger, request_id


def emf(output: str) -> list[dict[str, Any]]:
    return [line for line in (json.loads(x) for x in output.splitlines() if x.startswith("{")) if "_aws" in line]


def test_observer_publishes_each_observation_as_a_metric_per_function(capsys: pytest.CaptureFixture[str]) -> None:
    observer = MetricsObserver("worker", "Surge/test")
    observer.admitted("echo")
    observer.rejected("echo", "queue_full")
    observer.batch_ran("trim_words", 4, 0.25, 1.5)
    observer.job_failed("trim_words", "time_limit")
    metrics = emf(capsys.readouterr().out)
    values = {next(k for k in m if k not in ("_aws", "service", "function", "reason")): m for m in metrics}
    assert set(values) == {"admissions", "rejections", "batch_size", "batch_duration", "queue_wait", "job_failures"}
    assert (values["batch_size"]["function"], values["batch_size"]["batch_size"]) == ("trim_words", [4.0])
    assert (values["batch_duration"]["batch_duration"], values["queue_wait"]["queue_wait"]) == ([0.25], [1.5])
    assert values["rejections"]["reason"] == "queue_full" and values["job_failures"]["reason"] == "time_limit"
    for metric in metrics:
        (directive,) = metric["_aws"]["CloudWatchMetrics"]
        assert directive["Namespace"] == "Surge/test"
        assert {"service", "function"} <= set(directive["Dimensions"][0])
        assert metric["service"] == "worker"


def test_observer_never_raises(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(**_: Any) -> Any:
        raise RuntimeError("no stdout")

    monkeypatch.setattr("surge.observability.single_metric", broken)
    MetricsObserver("api").admitted("echo")


def test_core_loggers_write_json_through_the_edge_logger() -> None:
    logger = json_logger("deadletter")
    stream = io.StringIO()
    for handler in logging.getLogger("surge").handlers:
        handler.setStream(stream)  # type: ignore[attr-defined]
    logger.set_correlation_id("req-1")
    logging.getLogger("surge.worker").warning("lease lost")
    (line,) = [json.loads(x) for x in stream.getvalue().splitlines()]
    assert (line["message"], line["service"], line["correlation_id"], line["name"]) == (
        "lease lost",
        "deadletter",
        "req-1",
        "surge.worker",
    )


def test_request_id_comes_from_the_web_adapters_request_context() -> None:
    context = json.dumps({"requestId": "c6af9ac6-7b61", "stage": "live"}).encode()
    assert request_id({"headers": [(b"x-amzn-request-context", context)]}) == "c6af9ac6-7b61"
    assert request_id({"headers": [(b"x-amzn-request-context", b"not json")]}) is None
    assert request_id({"headers": []}) is None


def test_middleware_sets_the_correlation_id_for_each_request() -> None:
    logger = json_logger("stream")
    seen: list[str | None] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        seen.append(logger.get_correlation_id())

    middleware = CorrelationMiddleware(app, logger)
    for request in ("r-1", "r-2"):
        context = json.dumps({"requestId": request}).encode()
        scope = {"type": "http", "headers": [(b"x-amzn-request-context", context)]}
        asyncio.run(middleware(scope, None, None))  # type: ignore[arg-type]
    assert seen == ["r-1", "r-2"]
