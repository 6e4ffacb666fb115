"""AWS list prices (us-east-1, on demand) and the cost of one request from what the benchmark measured.

Prices: /work/shared/research/aws-platform.md §8; Lambda sizes and architecture: template.yaml
(ApiFunction 512 MB, StreamFunction 256 MB, arm64). Not counted: the GPU workers' instances (per
hour, not per request), data transfer, CloudWatch logs.
"""

from __future__ import annotations

from dataclasses import dataclass

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
