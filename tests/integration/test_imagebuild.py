"""The WorkerImage custom resource (functions/imagebuild) against moto: it starts the image build with
what CodeBuild needs to answer CloudFormation, and answers itself when it cannot start or on delete."""

from __future__ import annotations

import io
import json
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import boto3
import pytest
from moto import mock_aws

import imagebuild_handler

RESPONSE_URL = "https://cloudformation-custom-resource-response-useast1.s3.amazonaws.com/signed"


@dataclass(frozen=True)
class Context:
    invoked_function_arn: str


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[dict[str, Any]]]:
    """moto with the image-build function and project; yields the answers sent to CloudFormation."""
    answers: list[dict[str, Any]] = []

    class Answer:
        def __init__(self, request: Any, timeout: float) -> None:
            assert request.full_url == RESPONSE_URL and request.method == "PUT"
            answers.append(json.loads(request.data))

        def __enter__(self) -> Answer:
            return self

        def __exit__(self, *_: object) -> None:
            return None

    monkeypatch.setattr(imagebuild_handler.urllib.request, "urlopen", Answer)
    imagebuild_handler._lambda.cache_clear()
    imagebuild_handler._codebuild.cache_clear()
    with mock_aws():
        role = boto3.client("iam").create_role(RoleName="build", AssumeRolePolicyDocument="{}")["Role"]["Arn"]
        code = io.BytesIO()
        with zipfile.ZipFile(code, "w") as bundle:
            bundle.writestr("imagebuild_handler.py", "")
        boto3.client("lambda").create_function(
            FunctionName="surge-image-build",
            Runtime="python3.12",
            Role=role,
            Handler="imagebuild_handler.handler",
            Code={"ZipFile": code.getvalue()},
        )
        boto3.client("codebuild").create_project(
            name="surge-image",
            # The template's project has NO_SOURCE; moto insists on a location, which the handler never reads.
            source={"type": "S3", "location": "unused/source.zip"},
            artifacts={"type": "NO_ARTIFACTS"},
            environment={
                "type": "LINUX_CONTAINER",
                "image": "aws/codebuild/amazonlinux-x86_64-standard:5.0",
                "computeType": "BUILD_GENERAL1_LARGE",
            },
            serviceRole=role,
        )
        yield answers


def request(kind: str, project: str = "surge-image") -> dict[str, Any]:
    return {
        "RequestType": kind,
        "ResponseURL": RESPONSE_URL,
        "StackId": "arn:aws:cloudformation:us-east-1:123456789012:stack/surge/1",
        "RequestId": "b1e3",
        "LogicalResourceId": "WorkerImage",
        "ResourceProperties": {
            "ProjectName": project,
            "RepositoryUri": "123456789012.dkr.ecr.us-east-1.amazonaws.com/surge-worker",
            "SourceVersion": "arn:aws:lambda:us-east-1:123456789012:function:surge-image-build:7",
            "Dockerfile": "gpu_worker/Dockerfile",
            "AppModule": "examples.demo_app:app",
            "BaseImage": "public.ecr.aws/docker/library/python:3.12-slim",
        },
    }


CONTEXT = Context("arn:aws:lambda:us-east-1:123456789012:function:surge-image-build")


def test_create_starts_a_build_that_will_answer_cloudformation(aws: list[dict[str, Any]]) -> None:
    imagebuild_handler.handler(request("Create"), CONTEXT)
    assert aws == []
    (build_id,) = boto3.client("codebuild").list_builds_for_project(projectName="surge-image")["ids"]
    assert build_id.startswith("surge-image:")


def test_start_build_passes_the_source_tag_and_the_response_fields(
    aws: list[dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    started: dict[str, Any] = {}
    codebuild = imagebuild_handler._codebuild()
    real = codebuild.start_build

    def spy(**kwargs: Any) -> Any:
        started.update(kwargs)
        return real(**kwargs)

    monkeypatch.setattr(codebuild, "start_build", spy)
    imagebuild_handler.handler(request("Update"), CONTEXT)
    env = {item["name"]: item["value"] for item in started["environmentVariablesOverride"]}
    assert env["IMAGE_TAG"].startswith("v7-")
    cpu_tag = env["IMAGE_TAG"]
    gpu = request("Update")
    gpu["ResourceProperties"]["BaseImage"] = "public.ecr.aws/deep-learning-containers/pytorch-inference:x-gpu-y"
    imagebuild_handler.handler(gpu, CONTEXT)
    gpu_env = {item["name"]: item["value"] for item in started["environmentVariablesOverride"]}
    assert gpu_env["IMAGE_TAG"].startswith("v7-") and gpu_env["IMAGE_TAG"] != cpu_tag
    assert env["APP_PACKAGE"] == "examples"
    assert env["DOCKERFILE"] == "gpu_worker/Dockerfile"
    assert env["BASE_IMAGE"] == "public.ecr.aws/docker/library/python:3.12-slim"
    assert env["RESPONSE_URL"] == RESPONSE_URL
    assert (env["STACK_ID"], env["REQUEST_ID"], env["LOGICAL_RESOURCE_ID"]) == (
        "arn:aws:cloudformation:us-east-1:123456789012:stack/surge/1",
        "b1e3",
        "WorkerImage",
    )
    assert env["SOURCE_URL"].startswith("http")


def test_a_build_that_cannot_start_fails_the_deploy_at_once(aws: list[dict[str, Any]]) -> None:
    imagebuild_handler.handler(request("Create", project="no-such-project"), CONTEXT)
    (answer,) = aws
    assert answer["Status"] == "FAILED"
    assert "Could not start the image build" in answer["Reason"]
    assert (answer["RequestId"], answer["LogicalResourceId"]) == ("b1e3", "WorkerImage")


def test_delete_answers_success_without_building(aws: list[dict[str, Any]]) -> None:
    event = {**request("Delete"), "PhysicalResourceId": "123456789012.dkr.ecr.us-east-1.amazonaws.com/surge-worker:v6"}
    imagebuild_handler.handler(event, CONTEXT)
    (answer,) = aws
    assert (answer["Status"], answer["PhysicalResourceId"]) == ("SUCCESS", event["PhysicalResourceId"])
    assert boto3.client("codebuild").list_builds_for_project(projectName="surge-image")["ids"] == []
