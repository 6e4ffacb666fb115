"""Image-build Lambda (ImageBuildFunction): the WorkerImage custom resource of template.yaml.

On create and update it starts the CodeBuild project on its own code bundle (which carries the
Docker build context under `context/`), and the build answers CloudFormation when the image is
pushed, so a deploy waits for its image without Docker on the deploying machine. On delete it only
answers (the repository expires old images itself). Infrastructure glue, not queue logic: it talks
to CodeBuild and Lambda directly.
"""

from __future__ import annotations

import hashlib
import json
import logging
import urllib.request
from functools import cache
from typing import Any

import boto3

logger = logging.getLogger("surge.imagebuild")
logger.setLevel(logging.INFO)


@cache
def _lambda() -> Any:
    return boto3.client("lambda")


@cache
def _codebuild() -> Any:
    return boto3.client("codebuild")


def image_tag(source_version_arn: str, base_image: str) -> str:
    """`v<N>-<base>`: N is the version of this function, whose bundle is the build context; the base
    image's digest of its name tells a GPU build from a CPU build of the same code."""
    base = hashlib.sha256(base_image.encode()).hexdigest()[:8]
    return f"v{source_version_arn.rsplit(':', 1)[-1]}-{base}"


def app_package(app_module: str) -> str:
    """The top-level package of `module:attribute` (what the image must copy to import it)."""
    return app_module.split(":", 1)[0].split(".", 1)[0]


def start_build(event: dict[str, Any], context: Any) -> str:
    """Start the image build for this request; returns the build id. CodeBuild replies to CloudFormation."""
    properties = event["ResourceProperties"]
    code_url = _lambda().get_function(FunctionName=context.invoked_function_arn)["Code"]["Location"]
    environment = {
        "SOURCE_URL": code_url,
        "DOCKERFILE": properties["Dockerfile"],
        "BASE_IMAGE": properties["BaseImage"],
        "APP_PACKAGE": app_package(properties["AppModule"]),
        "IMAGE_TAG": image_tag(properties["SourceVersion"], properties["BaseImage"]),
        "RESPONSE_URL": event["ResponseURL"],
        "STACK_ID": event["StackId"],
        "REQUEST_ID": event["RequestId"],
        "LOGICAL_RESOURCE_ID": event["LogicalResourceId"],
    }
    build = _codebuild().start_build(
        projectName=properties["ProjectName"],
        environmentVariablesOverride=[{"name": k, "value": v, "type": "PLAINTEXT"} for k, v in environment.items()],
    )
    build_id: str = build["build"]["id"]
    return build_id


def respond(event: dict[str, Any], status: str, reason: str, physical_id: str) -> None:
    """Answer CloudFormation's pre-signed URL (the custom resource contract)."""
    body = json.dumps(
        {
            "Status": status,
            "Reason": reason[:1000],
            "PhysicalResourceId": physical_id,
            "StackId": event["StackId"],
            "RequestId": event["RequestId"],
            "LogicalResourceId": event["LogicalResourceId"],
        }
    ).encode()
    request = urllib.request.Request(event["ResponseURL"], data=body, method="PUT", headers={"Content-Type": ""})
    with urllib.request.urlopen(request, timeout=30):
        pass


def handler(event: dict[str, Any], context: Any) -> None:
    physical_id = event.get("PhysicalResourceId", event["LogicalResourceId"])
    if event["RequestType"] == "Delete":
        respond(event, "SUCCESS", "Images are left to the repository's lifecycle policy.", physical_id)
        return
    try:
        build_id = start_build(event, context)
    except Exception as error:
        logger.exception("could not start the image build")
        respond(event, "FAILED", f"Could not start the image build: {error}", physical_id)
        return
    logger.info("started image build %s; it will answer CloudFormation", build_id)
