"""Waking a function's sleeping workers from the join path, and an honest estimate of how long that takes.

Autoscaling wakes a service from zero only after SQS metrics reach an alarm, which after six idle
hours resumes up to 15 minutes late; the front knows at once. `Waker.wake` raises the function's ECS
service from zero to one desired task when the caller has seen no live worker. The port is
`WorkerServices`; `EcsWorkerServices` is its boto3 adapter (ECS service name = the function's api_name,
as gpu_worker/service.yaml names it).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from surge.errors import Unavailable

logger = logging.getLogger("surge.wake")

DEFAULT_START_S = 600.0
"""Expected cold start (GPU instance boot, image pull, model load) until one has been measured."""


@dataclass(frozen=True)
class ServiceState:
    desired: int
    running: int
    pending: int
    starting_for_s: float | None = None
    """Age of the oldest task not yet running (None when none is starting)."""
    last_start_s: float | None = None
    """How long the most recent running task took from creation to running (None if unknown)."""


@dataclass(frozen=True)
class WakeState:
    """What a waiting client can be told: whether a worker is on its way and about when."""

    woke: bool
    """This call raised the desired count (False: already raised, or rate-limited, or failed)."""
    starting: bool
    expected_start_s: float
    starting_for_s: float = 0.0
    asked: bool = True
    """This call asked ECS (False: the answer of a recent call, held for `min_interval_s`)."""

    @property
    def eta_s(self) -> float:
        """Seconds until a worker should be up (never negative; a late start reads as 'any moment')."""
        return max(0.0, self.expected_start_s - self.starting_for_s)


class WorkerServices(Protocol):
    def describe(self, api_name: str) -> ServiceState: ...
    def set_desired(self, api_name: str, count: int) -> None: ...


class Waker:
    """Raises a sleeping function's workers to one, at most once per `min_interval_s` per function and
    process (every join of a burst must not call ECS).

    Idempotent: it only ever sets the desired count to 1, and only when it reads 0, so concurrent
    callers in other processes converge on 1 and a service that autoscaling has raised further is
    left alone. Never raises: a failed wake is logged and reported as not woken, and the join goes on.
    """

    def __init__(
        self,
        services: WorkerServices,
        min_interval_s: float = 30.0,
        default_start_s: float = DEFAULT_START_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.services = services
        self.min_interval_s = min_interval_s
        self.clock = clock
        self._expected_start_s = default_start_s
        self._last_call: dict[str, float] = {}
        self._last_state: dict[str, WakeState] = {}
        self._lock = threading.Lock()

    def wake(self, api_name: str) -> WakeState:
        """Call when no worker of `api_name` is live. Returns the best estimate it has."""
        now = self.clock()
        with self._lock:
            last = self._last_call.get(api_name)
            if last is not None and now - last < self.min_interval_s:
                held = self._last_state[api_name]
                return WakeState(
                    False, held.starting, held.expected_start_s, held.starting_for_s + now - last, asked=False
                )
            self._last_call[api_name] = now
        state = self._wake_now(api_name)
        with self._lock:
            self._last_state[api_name] = state
        return state

    def _wake_now(self, api_name: str) -> WakeState:
        try:
            service = self.services.describe(api_name)
            if service.last_start_s is not None:
                self._expected_start_s = service.last_start_s
            if service.desired >= 1:
                return WakeState(False, True, self._expected_start_s, service.starting_for_s or 0.0)
            self.services.set_desired(api_name, 1)
        except Unavailable:
            logger.exception("could not wake the workers of %s", api_name)
            return WakeState(False, False, self._expected_start_s)
        logger.info("woke the workers of %s (expected start %.0f s)", api_name, self._expected_start_s)
        return WakeState(True, True, self._expected_start_s)


class EcsWorkerServices:
    """`WorkerServices` on ECS: one service per function in `cluster`, named by its api_name.

    Needs ecs:DescribeServices and ecs:UpdateService on each function's service, and ecs:ListTasks /
    ecs:DescribeTasks in the cluster for the measured start time (template.yaml grants exactly these).
    """

    def __init__(self, cluster: str, region_name: str | None = None) -> None:
        self.cluster = cluster
        self.region_name = region_name
        self._client: Any = None

    @property
    def client(self) -> Any:
        # Built on first use, once per execution environment (moto must be in place first in tests).
        if self._client is None:
            config = Config(retries={"mode": "standard", "max_attempts": 3}, connect_timeout=2, read_timeout=5)
            self._client = boto3.client("ecs", region_name=self.region_name, config=config)
        return self._client

    def describe(self, api_name: str) -> ServiceState:
        with _ecs_errors("Reading the worker service"):
            services = self.client.describe_services(cluster=self.cluster, services=[api_name])["services"]
            if not services:
                raise Unavailable(f"No worker service {api_name} in {self.cluster}.")
            service = services[0]
            tasks = self._tasks(api_name)
        now = datetime.now(UTC)
        starting = [t for t in tasks if t.get("lastStatus") != "RUNNING"]
        started = [t for t in tasks if t.get("lastStatus") == "RUNNING" and t.get("startedAt")]
        return ServiceState(
            desired=int(service["desiredCount"]),
            running=int(service["runningCount"]),
            pending=int(service["pendingCount"]),
            starting_for_s=max(((now - t["createdAt"]).total_seconds() for t in starting), default=None),
            last_start_s=max(((t["startedAt"] - t["createdAt"]).total_seconds() for t in started), default=None),
        )

    def set_desired(self, api_name: str, count: int) -> None:
        with _ecs_errors("Waking the worker service"):
            self.client.update_service(cluster=self.cluster, service=api_name, desiredCount=count)

    def _tasks(self, api_name: str) -> list[dict[str, Any]]:
        arns = self.client.list_tasks(cluster=self.cluster, serviceName=api_name)["taskArns"]
        if not arns:
            return []
        found: list[dict[str, Any]] = self.client.describe_tasks(cluster=self.cluster, tasks=arns[:100])["tasks"]
        return found


@contextmanager
def _ecs_errors(what: str) -> Iterator[None]:
    """Translate a failed ECS call into `Unavailable`."""
    try:
        yield
    except (ClientError, BotoCoreError) as error:
        raise Unavailable(f"{what} failed.") from error
