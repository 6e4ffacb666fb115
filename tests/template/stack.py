"""Reading the SAM templates as CloudFormation sees them: YAML with intrinsic tags, the SAM transform
as `sam deploy` applies it, and conditions resolved for given parameter values."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import boto3
from cfnlint.decode.decode import decode_str
from samtranslator.parser.parser import Parser
from samtranslator.translator.translator import Translator

from surge.application import App

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = ROOT / "template.yaml"
SERVICE_TEMPLATE = ROOT / "gpu_worker" / "service.yaml"

Template = dict[str, Any]


def load(path: Path) -> Template:
    template, errors = decode_str(path.read_text())
    assert not errors, errors
    loaded: Template = json.loads(json.dumps(template))
    return loaded


def packaged(template: Template) -> Template:
    """What `sam package` hands CloudFormation: local code paths replaced by S3 locations."""
    result = copy.deepcopy(template)
    for name, resource in result["Resources"].items():
        properties = resource.get("Properties", {})
        for key in ("CodeUri", "ContentUri"):
            if key in properties:
                properties[key] = f"s3://artifacts/{name}.zip"
        if resource["Type"] == "AWS::Serverless::Application":
            properties["Location"] = f"https://artifacts.s3.amazonaws.com/{name}.template"
    return result


def transformed(template: Template) -> Template:
    """The template after the AWS::Serverless-2016-10-31 transform (what CloudFormation deploys)."""
    # The templates name managed policies by ARN only, so the transform never looks one up.
    translator = Translator(None, Parser(), boto_session=boto3.session.Session(region_name="us-east-1"))
    result: Template = translator.translate(packaged(template), parameter_values={}, get_managed_policy_map=dict)
    return result


def function_stacks(template: Template) -> dict[str, dict[str, Any]]:
    """Logical ID → parameters of every nested stack built from gpu_worker/service.yaml."""
    return {
        name: resource["Properties"]["Parameters"]
        for name, resource in template["Resources"].items()
        if resource["Type"] == "AWS::Serverless::Application"
        and resource["Properties"]["Location"] == "gpu_worker/service.yaml"
    }


def stacks_disagreeing_with(template: Template, app: App) -> tuple[set[str], set[str]]:
    """(app functions without a stack, stacks for no app function): both empty when they agree."""
    declared = {str(parameters["ApiName"]) for parameters in function_stacks(template).values()}
    # A Gradio page's lane has no stack: its queue is the root's, its workers its host's.
    served = {function.api_name for function in app.functions if app.host_of(function) is function}
    return served - declared, declared - served


def default_parameters(template: Template) -> dict[str, Any]:
    return {name: _typed(spec, spec.get("Default")) for name, spec in template.get("Parameters", {}).items()}


def _typed(spec: dict[str, Any], value: Any) -> Any:
    """A parameter value as intrinsics see it: a CommaDelimitedList is a list."""
    if spec.get("Type") == "CommaDelimitedList" and isinstance(value, str):
        return value.split(",")
    return value


def _condition(template: Template, name: str, parameters: dict[str, Any]) -> bool:
    return bool(_value(template["Conditions"][name], template, parameters))


def _value(node: Any, template: Template, parameters: dict[str, Any]) -> Any:
    """Evaluate the intrinsic functions that conditions use, for known parameter values."""
    if isinstance(node, list):
        return [_value(item, template, parameters) for item in node]
    if not isinstance(node, dict) or len(node) != 1:
        return node
    ((key, argument),) = node.items()
    if key == "Ref" and argument in parameters:
        return parameters[argument]
    if key == "Condition":
        return _condition(template, argument, parameters)
    if key == "Fn::FindInMap":
        name, top, second = _value(argument, template, parameters)
        return template["Mappings"][name][top][second]
    function = _FUNCTIONS.get(key)
    return function(_value(argument, template, parameters)) if function else node


_FUNCTIONS: dict[str, Any] = {
    "Fn::Equals": lambda args: str(args[0]) == str(args[1]),
    "Fn::Or": any,
    "Fn::And": all,
    "Fn::Not": lambda args: not args[0],
    "Fn::Split": lambda args: str(args[1]).split(args[0]),
    "Fn::Select": lambda args: args[1][int(args[0])],
    "Fn::Join": lambda args: str(args[0]).join(str(item) for item in args[1]),
}


def resolved(template: Template, overrides: dict[str, Any]) -> dict[str, Any]:
    """The template's resources with parameters substituted and every Fn::If decided."""
    specs = template.get("Parameters", {})
    parameters = {**default_parameters(template), **{k: _typed(specs.get(k, {}), v) for k, v in overrides.items()}}

    def walk(node: Any) -> Any:
        if isinstance(node, list):
            return [walk(item) for item in node]
        if not isinstance(node, dict):
            return node
        if set(node) == {"Fn::If"}:
            condition, when_true, when_false = node["Fn::If"]
            return walk(when_true if _condition(template, condition, parameters) else when_false)
        if set(node) == {"Ref"} and node["Ref"] in parameters:
            return parameters[node["Ref"]]
        walked = {key: walk(value) for key, value in node.items()}
        ((key, argument),) = walked.items() if len(walked) == 1 else ((None, None),)
        if key in ("Fn::FindInMap", "Fn::Select", "Fn::Split", "Fn::Join") and _concrete(argument):
            return _value(walked, template, parameters)
        return walked

    resources: dict[str, Any] = walk(template["Resources"])
    return resources


def _concrete(node: Any) -> bool:
    """No intrinsic left to evaluate inside (only strings, numbers and lists of them)."""
    if isinstance(node, list):
        return all(_concrete(item) for item in node)
    return not isinstance(node, dict)


def statements(policy_holder: dict[str, Any]) -> list[dict[str, Any]]:
    """Every statement of a role's (or policy's) inline policies."""
    properties = policy_holder["Properties"]
    documents = [p["PolicyDocument"] for p in properties.get("Policies", [])]
    if "PolicyDocument" in properties:
        documents.append(properties["PolicyDocument"])
    return [statement for document in documents for statement in document["Statement"]]


def grants(policy_holder: dict[str, Any]) -> dict[str, set[str]]:
    """Resource (as JSON text) → the actions granted on it, across a role's inline statements."""
    found: dict[str, set[str]] = {}
    for statement in statements(policy_holder):
        assert statement["Effect"] == "Allow"
        actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
        resources = statement["Resource"] if isinstance(statement["Resource"], list) else [statement["Resource"]]
        for resource in resources:
            key = json.dumps(resource, sort_keys=True)
            if "Condition" in statement:
                key += " if " + json.dumps(statement["Condition"], sort_keys=True)
            found.setdefault(key, set()).update(actions)
    return found


def arn_of(name: str) -> str:
    return json.dumps({"Fn::GetAtt": [name, "Arn"]}, sort_keys=True)
