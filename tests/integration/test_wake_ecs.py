"""The ECS adapter of the waker against moto's ECS: reads the count, raises it, names a missing service."""

from __future__ import annotations

from collections.abc import Iterator

import boto3
import pytest
from moto import mock_aws

from surge.errors import Unavailable
from surge.wake import EcsWorkerServices, Waker


@pytest.fixture
def cluster() -> Iterator[str]:
    with mock_aws():
        ecs = boto3.client("ecs")
        ecs.create_cluster(clusterName="surge-workers")
        ecs.register_task_definition(
            family="surge-echo", containerDefinitions=[{"name": "worker", "image": "worker:1", "memory": 512}]
        )
        ecs.create_service(cluster="surge-workers", serviceName="echo", taskDefinition="surge-echo", desiredCount=0)
        yield "surge-workers"


def test_adapter_reads_and_raises_the_desired_count_of_the_functions_service(cluster: str) -> None:
    services = EcsWorkerServices(cluster)
    assert services.describe("echo").desired == 0
    assert Waker(services).wake("echo").woke
    described = boto3.client("ecs").describe_services(cluster=cluster, services=["echo"])["services"][0]
    assert described["desiredCount"] == 1
    assert not Waker(services).wake("echo").woke, "already raised: nothing to do"


def test_adapter_reports_a_missing_service_as_unavailable(cluster: str) -> None:
    with pytest.raises(Unavailable):
        EcsWorkerServices(cluster).describe("no_such_function")
    assert not Waker(EcsWorkerServices(cluster)).wake("no_such_function").starting
