"""Dead-letter Lambda (DeadLetterFunction): fails the job of each message in a function's dead-letter queue."""

from __future__ import annotations

import os
from typing import Any

from surge.deadletter import SqsEvent, batch_response, fail_dead_lettered
from surge.observability import DEFAULT_NAMESPACE, MetricsObserver, json_logger
from surge.settings import Settings
from surge.store import Store

settings = Settings.from_env(os.environ)
logger = json_logger("deadletter")
observer = MetricsObserver("deadletter", os.environ.get("POWERTOOLS_METRICS_NAMESPACE", DEFAULT_NAMESPACE))
store = Store(settings)


@logger.inject_lambda_context(correlation_id_path="Records[0].messageId")
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return batch_response(fail_dead_lettered(SqsEvent.model_validate(event).records, store, observer))
