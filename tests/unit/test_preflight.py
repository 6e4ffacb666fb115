"""Preflight's judgement of an account, on an in-memory account: what a fresh account must request."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from tools.preflight import NO_CREDENTIALS, Plan, check, report

PLAN = Plan("us-east-1", ("g5.xlarge", "g6.xlarge"), max_workers=4, zones=3, concurrent_waiters=1000)
ZONES = ["us-east-1a", "us-east-1b", "us-east-1c", "us-east-1d"]


@dataclass
class InMemoryAccount:
    concurrency: int = 10_000
    quotas: dict[str, float] = field(default_factory=lambda: {"L-DB2E81BA": 64.0, "L-417A185B": 0.0})
    codebuild_large: float | None = 5.0
    region_zones: list[str] = field(default_factory=lambda: list(ZONES))
    offered: dict[str, set[str]] = field(default_factory=lambda: {"g5.xlarge": set(ZONES), "g6.xlarge": set()})
    roles: set[str] = field(default_factory=lambda: {"AWSServiceRoleForECS"})
    throttle: tuple[float, int] = (10_000.0, 5_000)

    def lambda_concurrency(self) -> int:
        return self.concurrency

    def quota(self, service: str, code: str) -> float | None:
        return self.quotas.get(code)

    def codebuild_linux_large_builds(self) -> float | None:
        return self.codebuild_large

    def vcpus(self, instance_types: Sequence[str]) -> dict[str, int]:
        sizes = {"xlarge": 4, "2xlarge": 8, "48xlarge": 192}
        return {t: sizes[t.split(".")[1]] for t in instance_types}

    def zones(self) -> list[str]:
        return self.region_zones

    def zones_offering(self, instance_type: str) -> set[str]:
        return self.offered.get(instance_type, set())

    def has_role(self, name: str) -> bool:
        return name in self.roles

    def api_gateway_account_throttle(self) -> tuple[float, int]:
        return self.throttle


def test_preflight_passes_an_account_that_has_everything() -> None:
    findings = check(InMemoryAccount(), PLAN)
    assert all(finding.ok for finding in findings), report(findings)
    assert report(findings).endswith("Ready to deploy.")


def test_preflight_tells_a_fresh_account_what_to_request_and_create() -> None:
    fresh = InMemoryAccount(concurrency=10, quotas={}, codebuild_large=0.0, roles=set())
    findings = {finding.check: finding for finding in check(fresh, PLAN)}
    assert (
        "create-service-linked-role --aws-service-name ecs.amazonaws.com" in findings["ECS service-linked role"].action
    )
    assert "--service-code lambda --quota-code L-B99A9384 --desired-value 1100" in findings["Lambda concurrency"].action
    assert "--quota-code L-DB2E81BA --desired-value 16" in findings["EC2 vCPU quota"].action
    assert not findings["CodeBuild Linux/Large builds"].ok
    assert report(list(findings.values())).endswith("4 thing(s) to request or create before deploying.")


def test_preflight_sizes_the_vcpu_quota_by_the_largest_type_of_each_family_group() -> None:
    plan = Plan("us-east-1", ("p5.48xlarge",), max_workers=2, zones=3, concurrent_waiters=10)
    (gpu,) = [f for f in check(InMemoryAccount(), plan) if f.check == "EC2 vCPU quota"]
    assert not gpu.ok and "--quota-code L-417A185B --desired-value 384" in gpu.action


def test_preflight_flags_zones_the_stack_would_use_that_offer_none_of_the_types() -> None:
    account = InMemoryAccount(offered={"g5.xlarge": {"us-east-1a", "us-east-1b"}})
    (zones,) = [f for f in check(account, PLAN) if f.check == "Availability Zones"]
    assert not zones.ok and "us-east-1c" in zones.detail
    (few,) = [f for f in check(InMemoryAccount(region_zones=ZONES[:2]), PLAN) if f.check == "Availability Zones"]
    assert few.action == "deploy with WorkerAvailabilityZones=2"


def test_preflight_without_credentials_says_so_in_one_line(tmp_path: Path) -> None:
    """It printed botocore's 40-line NoCredentialsError traceback."""
    env = {
        "PATH": os.environ["PATH"],
        "HOME": str(tmp_path),
        "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "none"),
        "AWS_CONFIG_FILE": str(tmp_path / "none"),
        "AWS_EC2_METADATA_DISABLED": "true",
    }
    done = subprocess.run(
        [sys.executable, "-m", "tools.preflight", "--region", "us-east-1"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=Path(__file__).parents[2],
    )
    assert done.returncode == 2
    assert done.stderr.splitlines() == [NO_CREDENTIALS] and done.stdout == ""
