"""Preflight's boto3 adapter: EC2 and IAM through moto; Lambda, Service Quotas and API Gateway, which moto
does not answer (account settings, quotas by code), through botocore's Stubber."""

from __future__ import annotations

from collections.abc import Iterator

import boto3
import pytest
from botocore.stub import Stubber
from moto import mock_aws

from tools.preflight import AwsAccount, Plan, check


@pytest.fixture
def account() -> Iterator[tuple[AwsAccount, dict[str, Stubber]]]:
    with mock_aws():
        session = boto3.session.Session(region_name="us-east-1")
        adapter = AwsAccount(session)
        stubbers = {}
        for name in ("lambda", "service-quotas", "apigateway"):
            client = session.client(name)
            adapter._clients[name] = client
            stubbers[name] = Stubber(client)
            stubbers[name].activate()
        yield adapter, stubbers


def test_adapter_reads_types_zones_and_the_missing_ecs_role_from_the_account(
    account: tuple[AwsAccount, dict[str, Stubber]],
) -> None:
    adapter, _ = account
    assert adapter.vcpus(["g5.xlarge", "g5.12xlarge"]) == {"g5.xlarge": 4, "g5.12xlarge": 48}
    zones = adapter.zones()
    assert "us-east-1a" in zones
    assert adapter.zones_offering("g5.xlarge") <= set(zones)
    assert not adapter.has_role("AWSServiceRoleForECS")
    # As ECS names it (moto's create_service_linked_role spells it AWSServiceRoleForecs).
    boto3.client("iam").create_role(
        RoleName="AWSServiceRoleForECS", Path="/aws-service-role/ecs.amazonaws.com/", AssumeRolePolicyDocument="{}"
    )
    assert adapter.has_role("AWSServiceRoleForECS")


def test_preflight_reads_quotas_by_code_and_codebuild_by_name(account: tuple[AwsAccount, dict[str, Stubber]]) -> None:
    adapter, stub = account
    stub["lambda"].add_response(
        "get_account_settings", {"AccountLimit": {"ConcurrentExecutions": 10, "UnreservedConcurrentExecutions": 10}}
    )
    stub["service-quotas"].add_response(
        "get_service_quota",
        {"Quota": {"QuotaCode": "L-DB2E81BA", "Value": 0.0}},
        {"ServiceCode": "ec2", "QuotaCode": "L-DB2E81BA"},
    )
    stub["service-quotas"].add_response(
        "list_service_quotas",
        {"Quotas": [{"QuotaName": "Concurrently running builds for Linux/Large environment", "Value": 0.0}]},
        {"ServiceCode": "codebuild"},
    )
    stub["apigateway"].add_response("get_account", {"throttleSettings": {"burstLimit": 5000, "rateLimit": 10000.0}})
    plan = Plan("us-east-1", ("g5.xlarge",), max_workers=4, zones=3, concurrent_waiters=1000)
    findings = {finding.check: finding for finding in check(adapter, plan)}
    assert not findings["ECS service-linked role"].ok
    assert "10 concurrent executions" in findings["Lambda concurrency"].detail
    assert "--desired-value 16" in findings["EC2 vCPU quota"].action
    assert "quota 0" in findings["CodeBuild Linux/Large builds"].detail
    assert findings["API Gateway throttle"].ok
    for stubber in stub.values():
        stubber.assert_no_pending_responses()
