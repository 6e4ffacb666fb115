"""AWS list prices (us-east-1, on demand) and the cost of one request from what the benchmark measured.

Prices: /work/shared/research/aws-platform.md §8; Lambda sizes and architecture: template.yaml
(ApiFunction 512 MB, StreamFunction 256 MB, arm64). Not counted: the GPU workers' instances (per
hour, not per request), data transfer, CloudWatch logs.
"""

from __future__ import annotations

from dataclasses import dataclass

from surge.session import SLOW_TICK_S, TICKS_PER_ETA
from surge.settings import Settings

PER_MILLION = 1_000_000
API_GATEWAY_REST_PER_REQUEST = 3.50 / PER_MILLION
LAMBDA_PER_REQUEST = 0.20 / PER_MILLION
LAMBDA_ARM_PER_GB_S = 0.0000133334
SQS_PER_REQUEST = 0.40 / PER_MILLION
DYNAMODB_PER_WRU = 0.625 / PER_MILLION
DYNAMODB_PER_RRU = 0.125 / PER_MILLION
API_LAMBDA_GB = 0.5
STREAM_LAMBDA_GB = 0.25
HTTP_REQUESTS_PER_JOB = 2
"""A join (ApiFunction) and a session stream (StreamFunction): two API Gateway requests, two invocations."""


@dataclass(frozen=True)
class RequestCost:
    """Dollars per million requests, by item."""

    api_gateway: float
    lambda_requests: float
    lambda_api_gb_s: float
    lambda_stream_gb_s: float
    sqs: float
    dynamodb_writes: float
    dynamodb_reads: float

    @property
    def total(self) -> float:
        return float(sum(vars(self).values()))


def per_million(join_s: float, stream_s: float, sqs_calls: float, write_units: float, read_units: float) -> RequestCost:
    """Cost of a million requests, each with these means (seconds, calls and capacity units per request)."""
    m = PER_MILLION
    return RequestCost(
        api_gateway=m * HTTP_REQUESTS_PER_JOB * API_GATEWAY_REST_PER_REQUEST,
        lambda_requests=m * HTTP_REQUESTS_PER_JOB * LAMBDA_PER_REQUEST,
        lambda_api_gb_s=m * join_s * API_LAMBDA_GB * LAMBDA_ARM_PER_GB_S,
        lambda_stream_gb_s=m * stream_s * STREAM_LAMBDA_GB * LAMBDA_ARM_PER_GB_S,
        sqs=m * sqs_calls * SQS_PER_REQUEST,
        dynamodb_writes=m * write_units * DYNAMODB_PER_WRU,
        dynamodb_reads=m * read_units * DYNAMODB_PER_RRU,
    )


# ---- by stream mode and wait (README "Cost") ------------------------------------------------------

MANAGED_INSTANCE_PER_H = 0.0816
"""m7g.large (2 vCPU, 8 GiB, arm64) on demand, us-east-1: the managed-instances stream's EC2 unit."""
MANAGED_FEE = 0.15
"""Lambda Managed Instances' management fee on the EC2 price."""
ENVIRONMENTS_PER_INSTANCE = 2
"""Execution environments of `StreamManagedMemoryMB` = 2 GB on one m7g.large (8 GiB, 2 vCPU)."""
STREAMS_PER_ENVIRONMENT = 64
"""`StreamConcurrencyPerEnvironment`'s default: concurrent streams one environment serves."""
ALWAYS_ON_ENVIRONMENTS = 3
"""Managed instances keep at least three environments running (no scale to zero)."""
HOURS_PER_MONTH = 730
STREAM_TAIL_S = 1.3
"""Seconds a stream stays open beyond the wait: the run and the closing frames."""
ADMISSION_SHARDS: int = Settings.model_fields["admission_shards"].default
"""The default: a counters read gets an `in` and an `out` item per shard."""
COUNTERS_TICK_S: float = Settings.model_fields["counters_tick_s"].default
"""How often a stream process reads the counters while one of its visitors may be near the front."""
COUNTERS_READ_RRU = 2 * ADMISSION_SHARDS * 0.5
"""Read units of one tick's counters read: eventually consistent (half a unit per item of under 4 KB)
once every waiting job here has its first rank, which takes one strongly consistent read."""


def counters_rru_per_wait_s(streams_per_process: int) -> float:
    """Counters read units per second of one visitor's wait at the base tick. The benchmark's one front
    process shares its ticks among every stream it holds, and so does a managed-instances environment
    (one visitor near the front keeps the base tick for all); on demand each visitor's stream is a
    Lambda environment of its own, see `lone_counters_rru`."""
    return COUNTERS_READ_RRU / COUNTERS_TICK_S / streams_per_process


def lone_counters_rru(wait_s: float) -> float:
    """Counters read units of one visitor's wait alone in its process (on demand): the hub reads every
    quarter of the expected wait left, between `COUNTERS_TICK_S` and `SLOW_TICK_S` apart
    (`SessionHub.tick_s`), the expected wait falling from `wait_s` to 0."""
    left, reads = wait_s, 0
    while left > 0:
        reads += 1
        left -= min(max(COUNTERS_TICK_S, left / TICKS_PER_ETA), max(COUNTERS_TICK_S, SLOW_TICK_S))
    return reads * COUNTERS_READ_RRU


@dataclass(frozen=True)
class ModeCost:
    mode: str
    wait_s: float
    front_and_queue: float
    """Dollars per million predictions: API Gateway, Lambda, the stream's compute, DynamoDB, SQS."""


def by_mode(wait_s: float, join_s: float, sqs_calls: float, write_units: float, read_units: float) -> list[ModeCost]:
    """Front and queue cost per million predictions for each stream mode at this wait."""
    stream_s = wait_s + STREAM_TAIL_S
    on_demand = per_million(join_s, stream_s, sqs_calls, write_units, read_units + lone_counters_rru(wait_s))
    shared = per_million(
        join_s, stream_s, sqs_calls, write_units, read_units + wait_s * counters_rru_per_wait_s(STREAMS_PER_ENVIRONMENT)
    )
    stream_instance_h = PER_MILLION * stream_s / 3600 / (STREAMS_PER_ENVIRONMENT * ENVIRONMENTS_PER_INSTANCE)
    managed = shared.total - shared.lambda_stream_gb_s + stream_instance_h * MANAGED_INSTANCE_PER_H * (1 + MANAGED_FEE)
    return [ModeCost("on demand", wait_s, on_demand.total), ModeCost("managed instances", wait_s, managed)]


def managed_floor_per_month() -> float:
    """What the managed-instances stream costs with no traffic: its always-on environments."""
    instances = ALWAYS_ON_ENVIRONMENTS / ENVIRONMENTS_PER_INSTANCE
    return instances * MANAGED_INSTANCE_PER_H * (1 + MANAGED_FEE) * HOURS_PER_MONTH


def crossover_per_month(wait_s: float, join_s: float, sqs_calls: float, write_units: float, read_units: float) -> float:
    """Predictions per month above which managed instances cost less than on-demand streams (floor included)."""
    on_demand, managed = by_mode(wait_s, join_s, sqs_calls, write_units, read_units)
    saving_per_prediction = (on_demand.front_and_queue - managed.front_and_queue) / PER_MILLION
    return managed_floor_per_month() / saving_per_prediction if saving_per_prediction > 0 else float("inf")
