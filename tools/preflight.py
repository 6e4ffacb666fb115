"""`make preflight`: read the account's quotas and prerequisites the stack needs, print what to request
or create. Read-only: it calls only Get/List/Describe APIs and changes nothing.

    python -m tools.preflight --region us-east-1 --instance-types g5.xlarge,g6.xlarge --max-workers 4
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import boto3
from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError

# Service Quotas codes (https://docs.aws.amazon.com/servicequotas/latest/userguide/): Lambda
# "Concurrent executions"; EC2 "Running On-Demand ... instances", counted in vCPUs per family group.
LAMBDA_CONCURRENCY = ("lambda", "L-B99A9384")
EC2_VCPU_QUOTAS = {
    "g": ("L-DB2E81BA", "Running On-Demand G and VT instances"),
    "p": ("L-417A185B", "Running On-Demand P instances"),
    "standard": ("L-1216C47A", "Running On-Demand Standard (A, C, D, H, I, M, R, T, Z) instances"),
}
ECS_SERVICE_LINKED_ROLE = "AWSServiceRoleForECS"
# Lambda keeps this much of the account's concurrency unreserved; a reservation below it fails a deploy.
LAMBDA_UNRESERVED_MINIMUM = 100
# The stage throttle template.yaml sets per method (SurgeApi MethodSettings).
STAGE_RATE_PER_S = 1000
STAGE_BURST = 2000


@dataclass(frozen=True)
class Plan:
    """What the deploy will ask of the account."""

    region: str
    instance_types: tuple[str, ...]
    max_workers: int
    zones: int
    concurrent_waiters: int


@dataclass(frozen=True)
class Finding:
    check: str
    ok: bool
    detail: str
    action: str = ""


class Account(Protocol):
    """The read-only questions preflight asks; `AwsAccount` answers them with boto3."""

    def lambda_concurrency(self) -> int: ...
    def quota(self, service: str, code: str) -> float | None: ...
    def codebuild_linux_large_builds(self) -> float | None: ...
    def vcpus(self, instance_types: Sequence[str]) -> dict[str, int]: ...
    def zones(self) -> list[str]: ...
    def zones_offering(self, instance_type: str) -> set[str]: ...
    def has_role(self, name: str) -> bool: ...
    def api_gateway_account_throttle(self) -> tuple[float, int]: ...


def quota_group(instance_type: str) -> str:
    family = instance_type.split(".")[0]
    if family.startswith("p"):
        return "p"
    return "g" if family.startswith("g") else "standard"


def check(account: Account, plan: Plan) -> list[Finding]:
    return [
        _ecs_role(account),
        _lambda(account, plan),
        *_gpu_vcpus(account, plan),
        _zones(account, plan),
        _codebuild(account, plan),
        _api_gateway(account),
    ]


def _ecs_role(account: Account) -> Finding:
    if account.has_role(ECS_SERVICE_LINKED_ROLE):
        return Finding("ECS service-linked role", True, f"{ECS_SERVICE_LINKED_ROLE} exists")
    return Finding(
        "ECS service-linked role",
        False,
        "missing: the first deploy's capacity provider would fail and roll the stack back",
        "aws iam create-service-linked-role --aws-service-name ecs.amazonaws.com",
    )


def _lambda(account: Account, plan: Plan) -> Finding:
    limit = account.lambda_concurrency()
    # Each waiting client holds one stream environment; joins and pages need some on top.
    needed = plan.concurrent_waiters + LAMBDA_UNRESERVED_MINIMUM
    detail = f"{limit} concurrent executions in {plan.region}; {plan.concurrent_waiters} waiters need about {needed}"
    if limit >= needed:
        return Finding("Lambda concurrency", True, detail)
    return Finding("Lambda concurrency", False, detail, _increase(plan, *LAMBDA_CONCURRENCY, needed))


def _gpu_vcpus(account: Account, plan: Plan) -> list[Finding]:
    vcpus = account.vcpus(plan.instance_types)
    findings = []
    for group in sorted({quota_group(t) for t in plan.instance_types}):
        code, name = EC2_VCPU_QUOTAS[group]
        largest = max(vcpus.get(t, 0) for t in plan.instance_types if quota_group(t) == group)
        needed = largest * plan.max_workers
        quota = account.quota("ec2", code)
        shown = "unknown" if quota is None else f"{quota:g}"
        detail = f"{name}: quota {shown} vCPUs, {plan.max_workers} workers need {needed}"
        if quota is not None and quota >= needed:
            findings.append(Finding("EC2 vCPU quota", True, detail))
        else:
            findings.append(Finding("EC2 vCPU quota", False, detail, _increase(plan, "ec2", code, needed)))
    return findings


def _zones(account: Account, plan: Plan) -> Finding:
    zones = account.zones()
    # !GetAZs lists the region's zones in alphabetical order; the stack takes the first `zones`.
    used = sorted(zones)[: plan.zones]
    offered = set().union(*(account.zones_offering(t) for t in plan.instance_types))
    without = [zone for zone in used if zone not in offered]
    detail = f"{len(zones)} zones in {plan.region}, the stack uses {', '.join(used)}"
    if len(zones) < plan.zones:
        return Finding("Availability Zones", False, detail, f"deploy with WorkerAvailabilityZones={len(zones)}")
    if without:
        return Finding(
            "Availability Zones",
            False,
            f"{detail}; none of {', '.join(plan.instance_types)} is offered in {', '.join(without)}",
            "add an instance type offered there, or lower WorkerAvailabilityZones",
        )
    return Finding("Availability Zones", True, detail)


def _codebuild(account: Account, plan: Plan) -> Finding:
    quota = account.codebuild_linux_large_builds()
    if quota is not None and quota >= 1:
        return Finding("CodeBuild Linux/Large builds", True, f"{quota:g} concurrent builds allowed")
    return Finding(
        "CodeBuild Linux/Large builds",
        False,
        f"quota {quota if quota is not None else 'not found'}: the worker image build would fail the first deploy",
        "request 'Concurrently running builds for Linux/Large environment' >= 1 in the Service Quotas console "
        f"(CodeBuild, {plan.region})",
    )


def _api_gateway(account: Account) -> Finding:
    rate, burst = account.api_gateway_account_throttle()
    detail = f"account throttle {rate:g} requests/s, burst {burst}; the stage allows {STAGE_RATE_PER_S}/s per method"
    if rate >= STAGE_RATE_PER_S and burst >= STAGE_BURST:
        return Finding("API Gateway throttle", True, detail)
    return Finding("API Gateway throttle", False, detail, "request a higher API Gateway account throttle quota")


def _increase(plan: Plan, service: str, code: str, value: float) -> str:
    return (
        f"aws service-quotas request-service-quota-increase --region {plan.region} "
        f"--service-code {service} --quota-code {code} --desired-value {value:g}"
    )


class AwsAccount:
    """`Account` over boto3; clients are built on first use, once each."""

    def __init__(self, session: boto3.session.Session) -> None:
        self.session = session
        self._clients: dict[str, Any] = {}

    def _client(self, name: str) -> Any:
        if name not in self._clients:
            self._clients[name] = self.session.client(name)  # type: ignore[call-overload]
        return self._clients[name]

    def lambda_concurrency(self) -> int:
        return int(self._client("lambda").get_account_settings()["AccountLimit"]["ConcurrentExecutions"])

    def quota(self, service: str, code: str) -> float | None:
        try:
            value = self._client("service-quotas").get_service_quota(ServiceCode=service, QuotaCode=code)
        except ClientError:
            return None
        return float(value["Quota"]["Value"])

    def codebuild_linux_large_builds(self) -> float | None:
        paginator = self._client("service-quotas").get_paginator("list_service_quotas")
        for page in paginator.paginate(ServiceCode="codebuild"):
            for quota in page["Quotas"]:
                name = quota["QuotaName"].lower()
                if "linux/large" in name and "concurrent" in name:
                    return float(quota["Value"])
        return None

    def vcpus(self, instance_types: Sequence[str]) -> dict[str, int]:
        found = self._client("ec2").describe_instance_types(InstanceTypes=list(instance_types))["InstanceTypes"]
        return {item["InstanceType"]: int(item["VCpuInfo"]["DefaultVCpus"]) for item in found}

    def zones(self) -> list[str]:
        found = self._client("ec2").describe_availability_zones(
            Filters=[{"Name": "zone-type", "Values": ["availability-zone"]}]
        )["AvailabilityZones"]
        return [zone["ZoneName"] for zone in found]

    def zones_offering(self, instance_type: str) -> set[str]:
        offerings = self._client("ec2").describe_instance_type_offerings(
            LocationType="availability-zone", Filters=[{"Name": "instance-type", "Values": [instance_type]}]
        )["InstanceTypeOfferings"]
        return {offer["Location"] for offer in offerings}

    def has_role(self, name: str) -> bool:
        try:
            self._client("iam").get_role(RoleName=name)
        except ClientError as error:
            if error.response["Error"]["Code"] == "NoSuchEntity":
                return False
            raise
        return True

    def api_gateway_account_throttle(self) -> tuple[float, int]:
        settings = self._client("apigateway").get_account()["throttleSettings"]
        return float(settings["rateLimit"]), int(settings["burstLimit"])


def report(findings: Sequence[Finding]) -> str:
    lines = []
    for finding in findings:
        lines.append(f"{'ok  ' if finding.ok else 'TODO'}  {finding.check}: {finding.detail}")
        if finding.action:
            lines.append(f"      -> {finding.action}")
    todo = sum(not finding.ok for finding in findings)
    lines.append("Ready to deploy." if not todo else f"{todo} thing(s) to request or create before deploying.")
    return "\n".join(lines)


def parse(argv: Sequence[str]) -> Plan:
    parser = argparse.ArgumentParser(prog="make preflight", description=__doc__.splitlines()[0])
    parser.add_argument("--region", default=None, help="default: the profile's region")
    parser.add_argument("--instance-types", default="g5.xlarge,g6.xlarge", help="WorkerInstanceTypes")
    parser.add_argument("--max-workers", type=int, default=4, help="MaxWorkers")
    parser.add_argument("--zones", type=int, default=3, help="WorkerAvailabilityZones")
    parser.add_argument("--concurrent-waiters", type=int, default=1000, help="clients waiting at the peak")
    args = parser.parse_args(argv)
    region = args.region or boto3.session.Session().region_name or "us-east-1"
    types = tuple(t.strip() for t in args.instance_types.split(",") if t.strip())
    return Plan(region, types, args.max_workers, args.zones, args.concurrent_waiters)


NO_CREDENTIALS = (
    "make preflight: no AWS credentials found. It reads your account with the credentials `sam deploy` will "
    "use: run `aws configure` (or `aws sso login`, or set AWS_PROFILE, or AWS_ACCESS_KEY_ID and "
    "AWS_SECRET_ACCESS_KEY), then run it again."
)


def main(argv: Sequence[str] | None = None) -> int:
    plan = parse(sys.argv[1:] if argv is None else argv)
    try:
        findings = check(AwsAccount(boto3.session.Session(region_name=plan.region)), plan)
    except NoCredentialsError:
        sys.stderr.write(NO_CREDENTIALS + "\n")
        return 2
    except (ClientError, BotoCoreError) as error:
        sys.stderr.write(
            f"make preflight: AWS refused a read ({error}). It changes nothing, and needs read access to IAM, "
            "Lambda, Service Quotas, EC2, CodeBuild and API Gateway (for example the ReadOnlyAccess policy).\n"
        )
        return 2
    sys.stdout.write(report(findings) + "\n")
    return 0 if all(finding.ok for finding in findings) else 1


if __name__ == "__main__":
    raise SystemExit(main())
