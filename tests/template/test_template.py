"""The deployable stack, checked offline on the transformed template: routing, streaming, one queue and
service per app function, least-privilege IAM, what WorkerInstanceTypes may change, coupled timeouts."""

from __future__ import annotations

import json
import re
import tomllib
from typing import Any

import pytest

from surge.application import App, load_app
from surge.settings import Settings
from tests.template.stack import (
    ROOT,
    SERVICE_TEMPLATE,
    TEMPLATE,
    Template,
    arn_of,
    default_parameters,
    function_stacks,
    grants,
    load,
    resolved,
    stacks_disagreeing_with,
    statements,
    transformed,
)

LWA_LAYER = "arn:${AWS::Partition}:lambda:${AWS::Region}:753240598075:layer:LambdaAdapterLayerArm64:30"
STREAMING_URI = "/2021-11-15/functions/${StreamFunction.Arn}/response-streaming-invocations"
ECS_STOP_TIMEOUT_MAX_S = 120
API_GATEWAY_BUFFERED_LIMIT_S = 29
REGIONAL_IDLE_TIMEOUT_S = 300


@pytest.fixture(scope="module")
def template() -> Template:
    return load(TEMPLATE)


@pytest.fixture(scope="module")
def cfn(template: Template) -> Template:
    return transformed(template)


@pytest.fixture(scope="module")
def service() -> Template:
    return load(SERVICE_TEMPLATE)


@pytest.fixture(scope="module")
def app(template: Template) -> App:
    return load_app(default_parameters(template)["AppModule"])


def _paths(cfn: Template) -> dict[str, Any]:
    paths: dict[str, Any] = cfn["Resources"]["SurgeApi"]["Properties"]["Body"]["paths"]
    return paths


def _integration(cfn: Template, path: str, method: str) -> dict[str, Any]:
    integration: dict[str, Any] = _paths(cfn)[path][method]["x-amazon-apigateway-integration"]
    return integration


# ---- routing and streaming -------------------------------------------------------------------------


def test_api_routes_send_config_gradio_api_and_pages_to_the_api_function(cfn: Template) -> None:
    assert set(_paths(cfn)) == {
        "/config",
        "/gradio_api/{proxy+}",
        "/gradio_api/queue/data",
        "/gradio_api/queue/join",
        "/gradio_api/heartbeat/{session_hash}",
        "/gradio_api/call/{api_name}/{event_id}",
        "/gradio_api/call/{api_name}",
        "/gradio_api/call/v2/{api_name}/{event_id}",
        "/gradio_api/call/v2/{api_name}",
        "/",
        "/status",
        "/static/{proxy+}",
        "/theme.css",
        "/manifest.json",
        "/favicon.ico",
        "/assets/{proxy+}",
        "/{page}",
    }
    api_routes = [
        ("/config", "get"),
        ("/gradio_api/{proxy+}", "get"),
        ("/gradio_api/{proxy+}", "post"),
        ("/gradio_api/{proxy+}", "options"),
        ("/gradio_api/queue/join", "post"),
        ("/gradio_api/call/{api_name}", "post"),
        ("/gradio_api/call/{api_name}", "options"),
        ("/gradio_api/call/v2/{api_name}", "post"),
        ("/gradio_api/call/v2/{api_name}", "options"),
        ("/", "get"),
        ("/", "head"),
        ("/status", "get"),
        ("/static/{proxy+}", "get"),
        ("/theme.css", "get"),
        ("/manifest.json", "get"),
        ("/favicon.ico", "get"),
        ("/assets/{proxy+}", "get"),
        ("/{page}", "get"),
    ]
    for path, method in api_routes:
        integration = _integration(cfn, path, method)
        assert integration["type"] == "aws_proxy"
        assert "${ApiFunction.Arn}/invocations" in integration["uri"]["Fn::Sub"]
        assert "responseTransferMode" not in integration


def test_join_answers_its_own_cross_origin_preflight_in_the_app(cfn: Template) -> None:
    """/gradio_api/queue/join is a resource of its own: without OPTIONS on it API Gateway would answer a
    browser's preflight with 403 before the app's CORS middleware could."""
    methods = _paths(cfn)["/gradio_api/queue/join"]
    assert set(methods) == {"post", "options"}
    assert "${ApiFunction.Arn}/invocations" in _integration(cfn, "/gradio_api/queue/join", "options")["uri"]["Fn::Sub"]


STREAMED = [
    "/gradio_api/queue/data",
    "/gradio_api/heartbeat/{session_hash}",
    "/gradio_api/call/{api_name}/{event_id}",
    "/gradio_api/call/v2/{api_name}/{event_id}",
]


@pytest.mark.parametrize("path", STREAMED)
def test_session_routes_stream_from_the_stream_function_stream_mode_picks(cfn: Template, path: str) -> None:
    integration = _integration(cfn, path, "get")
    assert integration["responseTransferMode"] == "STREAM"
    assert integration["timeoutInMillis"] == 900_000
    condition, managed, on_demand = integration["uri"]["Fn::If"]
    assert condition == "StreamOnManagedInstances"
    assert on_demand["Fn::Sub"].endswith(STREAMING_URI)
    assert managed["Fn::Sub"].endswith(
        STREAMING_URI.replace("${StreamFunction.Arn}", "${ManagedStreamFunctionAliaslive}")
    )


def test_api_gateway_may_invoke_only_the_chosen_stream_function_on_its_routes(cfn: Template) -> None:
    permissions = {
        name: r for name, r in cfn["Resources"].items() if r["Type"] == "AWS::Lambda::Permission" and "Stream" in name
    }
    by_condition: dict[str, set[str]] = {}
    for resource in permissions.values():
        function = resource["Properties"]["FunctionName"]["Ref"]
        route = resource["Properties"]["SourceArn"]["Fn::Sub"].split("/*/", 1)[1]
        by_condition.setdefault(resource["Condition"], set()).add(f"{function} {route}")
    assert by_condition == {
        "StreamOnDemand": {
            "StreamFunction GET/gradio_api/queue/data",
            "StreamFunction GET/gradio_api/heartbeat/*",
            "StreamFunction GET/gradio_api/call/*/*",
        },
        "StreamOnManagedInstances": {
            "ManagedStreamFunctionAliaslive GET/gradio_api/queue/data",
            "ManagedStreamFunctionAliaslive GET/gradio_api/heartbeat/*",
            "ManagedStreamFunctionAliaslive GET/gradio_api/call/*/*",
        },
    }
    assert cfn["Resources"]["ManagedStreamFunctionAliaslive"]["Type"] == "AWS::Lambda::Alias"


def test_api_is_a_regional_rest_api(cfn: Template) -> None:
    api = cfn["Resources"]["SurgeApi"]
    assert api["Type"] == "AWS::ApiGateway::RestApi"
    assert api["Properties"]["EndpointConfiguration"] == {"Types": ["REGIONAL"]}


def test_stream_function_runs_uvicorn_under_the_pinned_web_adapter(cfn: Template) -> None:
    function = cfn["Resources"]["StreamFunction"]["Properties"]
    variables = function["Environment"]["Variables"]
    assert function["Handler"] == "run.sh"
    assert variables["AWS_LAMBDA_EXEC_WRAPPER"] == "/opt/bootstrap"
    assert variables["AWS_LWA_INVOKE_MODE"] == "response_stream"
    assert {"Fn::Sub": LWA_LAYER} in function["Layers"]
    assert function["Architectures"] == ["arm64"]
    assert function["MemorySize"] == {"Ref": "StreamMemoryMB"}
    assert default_parameters(load(TEMPLATE))["StreamMemoryMB"] <= 256
    run_sh = (ROOT / "functions/stream/run.sh").read_text()
    assert "stream_app:app" in run_sh
    assert '"${AWS_LWA_PORT:-8000}"' in run_sh
    assert variables["AWS_LWA_PORT"] == "8000"


def test_both_front_functions_share_one_core_layer_built_by_sam(template: Template, cfn: Template) -> None:
    core = template["Resources"]["CoreLayer"]
    assert core["Metadata"]["BuildMethod"] == "makefile"
    assert core["Properties"]["ContentUri"] == "layers/surge"
    (core_id,) = [name for name in cfn["Resources"] if name.startswith("CoreLayer") and "313" not in name]
    for function in ("ApiFunction", "StreamFunction", "DeadLetterFunction"):
        assert {"Ref": core_id} in cfn["Resources"][function]["Properties"]["Layers"]


# ---- the stream on Lambda Managed Instances (StreamMode=ManagedInstances) ----------------------------


def test_stream_mode_defaults_to_on_demand_and_creates_one_stream_function(template: Template) -> None:
    assert default_parameters(template)["StreamMode"] == "OnDemand"
    resources = template["Resources"]
    managed = {name for name, r in resources.items() if r.get("Condition") == "StreamOnManagedInstances"}
    assert {"ManagedStreamFunction", "StreamCapacityProvider", "CoreLayer313", "StreamDynamoDbEndpoint"} <= managed
    assert resources["StreamFunction"]["Condition"] == "StreamOnDemand"
    assert resources["StreamFunctionLogGroup"]["Condition"] == "StreamOnDemand"


def test_managed_stream_meets_lambda_managed_instances_requirements(template: Template, cfn: Template) -> None:
    """Python 3.13+, at least 2 GB, a capacity provider in VPC subnets with security groups, published
    versions behind an alias, and a pre-warm floor of execution environments."""
    function = cfn["Resources"]["ManagedStreamFunction"]["Properties"]
    assert function["Runtime"] == "python3.13"
    assert function["MemorySize"] == {"Ref": "StreamManagedMemoryMB"}
    assert min(template["Parameters"]["StreamManagedMemoryMB"]["AllowedValues"]) >= 2048
    config = function["CapacityProviderConfig"]["LambdaManagedInstancesCapacityProviderConfig"]
    assert config["CapacityProviderArn"] == {"Fn::GetAtt": ["StreamCapacityProvider", "Arn"]}
    assert config["PerExecutionEnvironmentMaxConcurrency"] == {"Ref": "StreamConcurrencyPerEnvironment"}
    assert function["FunctionScalingConfig"] == {
        "MinExecutionEnvironments": {"Ref": "StreamMinEnvironments"},
        "MaxExecutionEnvironments": {"Ref": "StreamMaxEnvironments"},
    }
    assert "VpcConfig" not in function, "the capacity provider carries the VPC"
    provider = cfn["Resources"]["StreamCapacityProvider"]["Properties"]
    assert provider["VpcConfig"]["SubnetIds"] == [{"Ref": f"StreamSubnet{x}"} for x in "ABC"]
    assert provider["VpcConfig"]["SecurityGroupIds"] == [{"Ref": "StreamSecurityGroup"}]
    assert provider["InstanceRequirements"]["Architectures"] == ["arm64"]
    (layer_313,) = [name for name in cfn["Resources"] if name.startswith("CoreLayer313")]
    assert {"Ref": layer_313} in function["Layers"]
    assert {"Fn::Sub": LWA_LAYER} in function["Layers"]
    assert cfn["Resources"][layer_313]["Properties"]["CompatibleRuntimes"] == ["python3.13"]
    assert "build-CoreLayer313:" in (ROOT / "layers/surge/Makefile").read_text()
    assert "LAMBDA_PYTHON=3.13" in (ROOT / "functions/stream/Makefile").read_text()


def test_managed_stream_reaches_dynamodb_and_logs_without_an_internet_route(template: Template) -> None:
    resources = template["Resources"]
    dynamodb = resources["StreamDynamoDbEndpoint"]["Properties"]
    assert dynamodb["VpcEndpointType"] == "Gateway"
    assert dynamodb["ServiceName"] == {"Fn::Sub": "com.amazonaws.${AWS::Region}.dynamodb"}
    assert dynamodb["RouteTableIds"] == [{"Ref": "StreamRouteTable"}]
    logs = resources["StreamLogsEndpoint"]["Properties"]
    assert logs["VpcEndpointType"] == "Interface" and logs["PrivateDnsEnabled"] is True
    assert logs["ServiceName"] == {"Fn::Sub": "com.amazonaws.${AWS::Region}.logs"}
    routes = [r for r in resources.values() if r["Type"] == "AWS::EC2::Route"]
    assert all(r["Properties"]["RouteTableId"] != {"Ref": "StreamRouteTable"} for r in routes)


def test_both_stream_functions_have_the_same_grants_and_tuning(cfn: Template) -> None:
    resources = cfn["Resources"]
    assert grants(resources["ManagedStreamFunctionRole"]) == grants(resources["StreamFunctionRole"])
    on_demand = resources["StreamFunction"]["Properties"]["Environment"]["Variables"]
    managed = resources["ManagedStreamFunction"]["Properties"]["Environment"]["Variables"]
    assert {k: v for k, v in managed.items() if k in on_demand} == on_demand
    assert managed["UVICORN_WORKERS"] == {"Ref": "StreamUvicornWorkers"}
    assert managed["THREAD_POOL_SIZE"] == managed["BOTO_MAX_POOL_CONNECTIONS"] == {"Ref": "StreamThreadsPerWorker"}
    assert '--workers "${UVICORN_WORKERS:-1}"' in (ROOT / "functions/stream/run.sh").read_text()


# ---- one queue, dead-letter queue, service and scaling policy per app function --------------------


def test_every_app_function_has_its_own_stack(template: Template, app: App) -> None:
    assert stacks_disagreeing_with(template, app) == (set(), set())
    names = [parameters["ApiName"] for parameters in function_stacks(template).values()]
    assert len(names) == len(set(names))
    serving = {p["ApiName"] for p in function_stacks(template).values() if p.get("ServesPageEvents") == "true"}
    assert serving == {app.host_of(f).api_name for f in app.functions if f.events is not None}


def test_stack_check_fails_when_the_app_and_the_template_disagree(template: Template, app: App) -> None:
    other = App(title="other")
    for function in app.functions[1:]:
        other.functions.append(function)

    @other.function(inputs=["textbox"], outputs=["textbox"])
    def summarize(text: str) -> str:
        return text

    missing, extra = stacks_disagreeing_with(template, other)
    assert missing == {"summarize"}
    assert extra == {app.functions[0].api_name}
    chat = load_app("tests.apps.gradio_apps:chat")
    assert [f.api_name for f in chat.functions] == ["reply", "page_events"]
    assert stacks_disagreeing_with(template, chat)[0] == {"reply"}, "the page's lane needs no stack of its own"


def test_function_stack_has_queue_dead_letter_queue_service_and_scaling(service: Template) -> None:
    resources = service["Resources"]
    by_type: dict[str, list[str]] = {}
    for name, resource in resources.items():
        by_type.setdefault(resource["Type"], []).append(name)
    assert sorted(by_type["AWS::SQS::Queue"]) == ["DeadLetterQueue", "Queue"]
    largest_inputs = Settings.model_fields["max_payload_bytes"].default
    for queue in by_type["AWS::SQS::Queue"]:  # a job's inputs travel in its message, with its caller
        assert resources[queue]["Properties"]["MaximumMessageSize"] == 1_048_576 > largest_inputs + 40_000
    assert by_type["AWS::ECS::Service"] == ["Service"]
    assert by_type["AWS::ECS::TaskDefinition"] == ["TaskDefinition"]
    assert by_type["AWS::ApplicationAutoScaling::ScalableTarget"] == ["ScalableTarget"]
    scaling = by_type["AWS::ApplicationAutoScaling::ScalingPolicy"]
    policies = {resources[name]["Properties"]["PolicyType"] for name in scaling}
    assert policies == {"TargetTrackingScaling", "StepScaling"}
    target = resources["ScalableTarget"]["Properties"]
    assert target["MinCapacity"] == 0
    assert target["MaxCapacity"] == {"Ref": "MaxWorkers"}
    mapping = resources["DeadLetterEvents"]["Properties"]
    assert mapping["EventSourceArn"] == {"Fn::GetAtt": ["DeadLetterQueue", "Arn"]}
    assert mapping["FunctionResponseTypes"] == ["ReportBatchItemFailures"]


def _serving_page(node: Any, serves: bool) -> Any:
    """`node` as deployed when the stack does (not) serve a Gradio page's events: each `Fn::If` on
    `ServesPage` chosen, `AWS::NoValue` dropped."""
    if isinstance(node, dict):
        if list(node) == ["Fn::If"] and node["Fn::If"][0] == "ServesPage":
            return _serving_page(node["Fn::If"][1 if serves else 2], serves)
        return {key: _serving_page(value, serves) for key, value in node.items()}
    if isinstance(node, list):
        chosen = [_serving_page(item, serves) for item in node]
        return [item for item in chosen if item != {"Ref": "AWS::NoValue"}]
    return node


def test_the_host_of_a_gradio_pages_events_scales_wakes_and_stays_awake_on_their_queue_too(service: Template) -> None:
    """The page's lane has no service: its host's backlog, wake and idleness count the lane's queue."""
    for serves in (False, True):
        resources = _serving_page(service["Resources"], serves)
        tracking = resources["BacklogPerWorkerPolicy"]["Properties"]["TargetTrackingScalingPolicyConfiguration"]
        metrics = tracking["CustomizedMetricSpecification"]["Metrics"]
        page = [m for m in metrics if m["Id"].startswith("page_")]
        wake = resources["WakeAlarm"]["Properties"]["Metrics"]
        sleep = resources["SleepAlarm"]["Properties"]["Metrics"]
        if not serves:
            assert page == [] and not any("page" in json.dumps(m) for m in wake + sleep)
            continue
        assert {m["Id"] for m in page} == {"page_waiting", "page_running"}
        assert all(m["MetricStat"]["Metric"]["Dimensions"][0]["Value"] == {"Ref": "PageEventsQueueName"} for m in page)
        (returned,) = [m for m in metrics if m["ReturnData"]]
        assert "FILL(page_waiting, 0) + FILL(page_running, 0)" in returned["Expression"]
        (woken,) = [m for m in wake if m["ReturnData"]]
        assert "waiting + FILL(page_waiting, 0)" in woken["Expression"]
        (idle,) = [m for m in sleep if m["ReturnData"]]
        assert idle["Expression"] == "waiting + running + FILL(page_waiting, 0) + FILL(page_running, 0)"
    assert service["Parameters"]["ServesPageEvents"]["Default"] == "false"


def test_scaling_wakes_from_zero_tracks_backlog_per_worker_and_sleeps_when_idle(service: Template) -> None:
    resources = _serving_page(service["Resources"], False)
    tracking = resources["BacklogPerWorkerPolicy"]["Properties"]["TargetTrackingScalingPolicyConfiguration"]
    (returned,) = [m for m in tracking["CustomizedMetricSpecification"]["Metrics"] if m["ReturnData"]]
    assert returned["Expression"] == "(waiting + running) / workers"
    wake = resources["WakePolicy"]["Properties"]["StepScalingPolicyConfiguration"]
    assert wake["AdjustmentType"] == "ChangeInCapacity"
    assert resources["WakeAlarm"]["Properties"]["AlarmActions"] == [{"Ref": "WakePolicy"}]
    (wake_metric,) = [m for m in resources["WakeAlarm"]["Properties"]["Metrics"] if m["ReturnData"]]
    assert "FILL(workers, 0) < 1" in wake_metric["Expression"]
    sleep = resources["SleepPolicy"]["Properties"]["StepScalingPolicyConfiguration"]
    assert sleep == {**sleep, "AdjustmentType": "ExactCapacity"}
    assert sleep["StepAdjustments"][0]["ScalingAdjustment"] == 0
    assert resources["SleepAlarm"]["Properties"]["AlarmActions"] == [{"Ref": "SleepPolicy"}]


def test_deploys_never_reset_the_worker_count_nor_put_a_woken_service_back_to_sleep(service: Template) -> None:
    resources = service["Resources"]
    assert "DesiredCount" not in resources["Service"]["Properties"]
    assert resources["SleepAlarm"]["Properties"]["TreatMissingData"] == "notBreaching"


def test_every_build_packs_the_app_anew_for_the_lambdas_and_the_image() -> None:
    """A cached makefile layer is reused unless layers/app itself changes, and the app lives elsewhere."""
    config = tomllib.loads((ROOT / "samconfig.toml").read_text())
    assert not config["default"]["build"]["parameters"].get("cached", False)


def test_the_deploy_config_leaves_the_app_to_the_template() -> None:
    """README, "Serving your own app": the app is the template's `AppModule` default. An `AppModule` in
    samconfig.toml's overrides wins over it, so a user who followed the steps deployed the demo's module
    over their own app's layer (and the fronts refused to start)."""
    config = tomllib.loads((ROOT / "samconfig.toml").read_text())
    assert "AppModule" not in config["default"]["deploy"]["parameters"].get("parameter_overrides", "")


def test_dead_letter_redrive_comes_after_the_workers_give_up(service: Template) -> None:
    settings = service["Mappings"]["Worker"]["Settings"]
    redrive = service["Resources"]["Queue"]["Properties"]["RedrivePolicy"]
    assert redrive["deadLetterTargetArn"] == {"Fn::GetAtt": ["DeadLetterQueue", "Arn"]}
    assert redrive["maxReceiveCount"] == {"Fn::FindInMap": ["Worker", "Settings", "MaxReceiveCount"]}
    assert settings["MaxAttempts"] == Settings.model_fields["max_attempts"].default
    assert settings["MaxReceiveCount"] > settings["MaxAttempts"]


# ---- timeouts ---------------------------------------------------------------------------------------


def test_worker_timeouts_follow_each_functions_batch_time(template: Template, service: Template) -> None:
    poll_wait_s = service["Mappings"]["Worker"]["Settings"]["PollWaitS"]
    assert poll_wait_s == Settings.model_fields["poll_wait_s"].default
    for name, parameters in function_stacks(template).items():
        batch_s = parameters["ExpectedBatchS"]
        assert parameters["VisibilityTimeoutS"] >= batch_s, name
        assert poll_wait_s + batch_s <= parameters["StopTimeoutS"] <= ECS_STOP_TIMEOUT_MAX_S, name
    resources = service["Resources"]
    assert resources["Queue"]["Properties"]["VisibilityTimeout"] == {"Ref": "VisibilityTimeoutS"}
    (container,) = resources["TaskDefinition"]["Properties"]["ContainerDefinitions"]
    assert container["StopTimeout"] == {"Ref": "StopTimeoutS"}
    env = {item["Name"]: item["Value"] for item in container["Environment"]}
    assert env["VISIBILITY_TIMEOUT_S"] == {"Ref": "VisibilityTimeoutS"}
    assert env["POLL_WAIT_S"] == resources["Queue"]["Properties"]["ReceiveMessageWaitTimeSeconds"]


def test_stream_outlives_neither_its_lambda_nor_api_gateway(template: Template, cfn: Template) -> None:
    tuning = template["Mappings"]["Tuning"]["Stream"]
    stream = cfn["Resources"]["StreamFunction"]["Properties"]
    assert stream["Timeout"] * 1000 == _integration(cfn, "/gradio_api/queue/data", "get")["timeoutInMillis"]
    assert tuning["StreamMaxS"] < stream["Timeout"]
    assert tuning["HeartbeatIntervalS"] < REGIONAL_IDLE_TIMEOUT_S
    variables = stream["Environment"]["Variables"]
    assert variables["STREAM_MAX_S"] == {"Fn::FindInMap": ["Tuning", "Stream", "StreamMaxS"]}
    assert variables["HEARTBEAT_INTERVAL_S"] == {"Fn::FindInMap": ["Tuning", "Stream", "HeartbeatIntervalS"]}
    api = cfn["Resources"]["ApiFunction"]["Properties"]
    assert api["Timeout"] < API_GATEWAY_BUFFERED_LIMIT_S
    assert float(api["Environment"]["Variables"]["RUN_WAIT_S"]) < api["Timeout"], "a direct call answers in time"


# ---- least privilege --------------------------------------------------------------------------------


def _leading(operator: str, *keys: Any) -> str:
    return " if " + json.dumps({operator: {"dynamodb:LeadingKeys": list(keys)}}, sort_keys=True)


def test_api_role_may_admit_record_and_read_but_nothing_more(cfn: Template, service: Template) -> None:
    assert grants(cfn["Resources"]["ApiFunctionRole"]) == {
        arn_of("EventsTable"): {
            "dynamodb:GetItem",
            "dynamodb:PutItem",
            "dynamodb:UpdateItem",
            "dynamodb:Query",
            "dynamodb:BatchWriteItem",
        },
        arn_of("StateTable") + _leading("ForAllValues:StringLike", "counters#*"): {"dynamodb:UpdateItem"},
        arn_of("StateTable"): {"dynamodb:GetItem", "dynamodb:BatchGetItem", "dynamodb:Query"},
        arn_of("StateTable") + _leading("ForAllValues:StringLike", "depth#app", "workers#*"): {"dynamodb:PutItem"},
        '"*" if {"ArnEquals": {"ecs:cluster": {"Fn::GetAtt": ["WorkerCluster", "Arn"]}}}': {"ecs:ListTasks"},
        json.dumps({"Fn::Sub": "arn:${AWS::Partition}:ecs:${AWS::Region}:${AWS::AccountId}:task/${WorkerCluster}/*"}): {
            "ecs:DescribeTasks"
        },
        json.dumps({"Fn::Sub": "${FilesBucket.Arn}/files/*"}): {"s3:PutObject", "s3:GetObject"},
        arn_of("PageEventsQueue"): {"sqs:SendMessage"},
    }
    send = service["Resources"]["FrontSendPolicy"]["Properties"]
    assert send["Roles"] == [{"Ref": "ApiFunctionRoleName"}]
    assert grants(service["Resources"]["FrontSendPolicy"]) == {arn_of("Queue"): {"sqs:SendMessage"}}


def test_stream_role_reads_sessions_and_writes_only_delivered_and_dropped_jobs(cfn: Template) -> None:
    """The stream reads; its only writes are the core's: forgetting delivered jobs, the cancellation
    of a dropped session's waiting jobs with the shard they leave, and the stop asked of its running
    ones (no queue access)."""
    assert grants(cfn["Resources"]["StreamFunctionRole"]) == {
        arn_of("EventsTable"): {"dynamodb:Query", "dynamodb:BatchWriteItem", "dynamodb:UpdateItem"},
        arn_of("StateTable"): {"dynamodb:BatchGetItem", "dynamodb:Query"},
        arn_of("StateTable") + _leading("ForAllValues:StringLike", "counters#*"): {"dynamodb:UpdateItem"},
    }


def test_worker_role_is_limited_to_its_own_queue_and_the_items_it_writes(service: Template) -> None:
    def table(parameter: str) -> str:
        arn = "arn:${AWS::Partition}:dynamodb:${AWS::Region}:${AWS::AccountId}:table/${" + parameter + "}"
        return json.dumps({"Fn::Sub": arn}, sort_keys=True)

    own_items = _leading(
        "ForAllValues:StringLike",
        "counters#*",
        "lease#*",
        {"Fn::Sub": "workers#${ApiName}"},
        {"Fn::Sub": "batches#${ApiName}"},
        {"Fn::Sub": "done#${ApiName}"},
        "workers#page_events",
        "batches#page_events",
        "done#page_events",
        "gstate#*",
    )
    assert grants(service["Resources"]["WorkerRole"]) == {
        arn_of("Queue"): {
            "sqs:ReceiveMessage",
            "sqs:DeleteMessage",
            "sqs:ChangeMessageVisibility",
            "sqs:GetQueueAttributes",
        },
        arn_of("DeadLetterQueue"): {"sqs:SendMessage"},
        json.dumps({"Ref": "PageEventsQueueArn"}): {
            "sqs:ReceiveMessage",
            "sqs:DeleteMessage",
            "sqs:ChangeMessageVisibility",
            "sqs:GetQueueAttributes",
        },
        json.dumps({"Ref": "PageEventsDeadLetterQueueArn"}): {"sqs:SendMessage"},
        # ... and the idle worker's scan for jobs counted but never sent (`Worker._reconcile`).
        table("EventsTableName"): {
            "dynamodb:UpdateItem",
            "dynamodb:PutItem",
            "dynamodb:BatchWriteItem",
            "dynamodb:Scan",
        },
        table("StateTableName") + own_items: {
            "dynamodb:GetItem",
            "dynamodb:BatchGetItem",
            "dynamodb:PutItem",
            "dynamodb:UpdateItem",
            "dynamodb:DeleteItem",
            "dynamodb:BatchWriteItem",
        },
        # The heartbeat's read of its concurrency group's live workers: reads only.
        table("StateTableName") + _leading("ForAllValues:StringLike", "workers#*"): {"dynamodb:Query"},
        json.dumps({"Fn::Sub": "arn:${AWS::Partition}:s3:::${FilesBucketName}/files/*"}): {
            "s3:GetObject",
            "s3:PutObject",
        },
    }


def test_files_bucket_is_private_expires_files_and_lets_no_role_list_it(cfn: Template, service: Template) -> None:
    bucket = cfn["Resources"]["FilesBucket"]["Properties"]
    assert all(bucket["PublicAccessBlockConfiguration"].values())
    rules = {rule["Id"]: rule for rule in bucket["LifecycleConfiguration"]["Rules"]}
    assert rules["ExpireFiles"]["Prefix"] == "files/" and rules["ExpireFiles"]["ExpirationInDays"] >= 1
    every_action = json.dumps([cfn["Resources"], service["Resources"]])
    assert "s3:ListBucket" not in every_action and '"s3:*"' not in every_action.replace(
        json.dumps(cfn["Resources"]["FilesBucketPolicy"]), ""
    )
    variables = cfn["Resources"]["ApiFunction"]["Properties"]["Environment"]["Variables"]
    assert variables["FILES_BUCKET_NAME"] == {"Ref": "FilesBucket"}
    assert cfn["Resources"]["SurgeApi"]["Properties"]["BinaryMediaTypes"] == ["*~1*"]


def test_dead_letter_role_fails_jobs_and_drains_only_dead_letter_queues(cfn: Template, service: Template) -> None:
    dead_letter_queues = json.dumps(
        {"Fn::Sub": "arn:${AWS::Partition}:sqs:${AWS::Region}:${AWS::AccountId}:${AWS::StackName}-*-dlq"}
    )
    assert grants(cfn["Resources"]["DeadLetterFunctionRole"]) == {
        arn_of("EventsTable"): {"dynamodb:GetItem", "dynamodb:UpdateItem"},
        arn_of("StateTable") + _leading("ForAllValues:StringLike", "counters#*"): {"dynamodb:UpdateItem"},
        dead_letter_queues: {"sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:GetQueueAttributes"},
    }
    # The grant comes with the role, before any function's stack maps its queue (IAM propagation lag
    # fails a mapping created right after a new grant): no function's stack grants the role anything,
    # and each dead-letter queue's name matches the granted pattern.
    assert "DeadLetterFunctionRoleName" not in json.dumps(service)
    assert "DependsOn" not in service["Resources"]["DeadLetterEvents"]
    queue_name = service["Resources"]["DeadLetterQueue"]["Properties"]["QueueName"]
    assert queue_name == {"Fn::Sub": "${StackName}-${ApiName}-dlq"}
    assert all(
        stack["Properties"]["Parameters"]["StackName"] == {"Ref": "AWS::StackName"}
        for stack in cfn["Resources"].values()
        if stack["Type"] == "AWS::Serverless::Application"
    )


def _inline_statements(template: Template) -> list[tuple[str, dict[str, Any]]]:
    found: list[tuple[str, dict[str, Any]]] = []
    for name, resource in template["Resources"].items():
        if resource["Type"] in ("AWS::IAM::Role", "AWS::IAM::Policy"):
            found.extend((name, statement) for statement in statements(resource))
    return found


def test_no_policy_grants_every_action_or_a_wildcard_resource_it_could_narrow(cfn: Template, service: Template) -> None:
    only_star = {"ecr:GetAuthorizationToken"}  # has no resource-level permissions
    narrowed_by_condition = {"ecs:ListTasks"}  # "*" with an ecs:cluster condition
    for name, statement in _inline_statements(cfn) + _inline_statements(service):
        actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
        assert all("*" not in action for action in actions), (name, actions)
        if statement["Resource"] == "*" and "Condition" in statement:
            assert set(actions) <= narrowed_by_condition, (name, actions)
        elif statement["Resource"] == "*":
            assert set(actions) <= only_star, (name, actions)


def test_the_front_may_wake_each_functions_own_service_and_nothing_else(cfn: Template, service: Template) -> None:
    wake = service["Resources"]["FrontWakePolicy"]["Properties"]
    assert wake["Roles"] == [{"Ref": "ApiFunctionRoleName"}]
    assert grants(service["Resources"]["FrontWakePolicy"]) == {
        json.dumps({"Ref": "Service"}): {"ecs:DescribeServices", "ecs:UpdateService"}
    }
    variables = cfn["Resources"]["ApiFunction"]["Properties"]["Environment"]["Variables"]
    assert variables["WORKER_CLUSTER_NAME"] == {"Ref": "WorkerCluster"}
    assert service["Resources"]["Service"]["Properties"]["ServiceName"] == {"Fn::Sub": "${ApiName}"}


def test_the_operator_is_alarmed_when_jobs_wait_and_no_worker_starts(service: Template) -> None:
    settings = service["Mappings"]["Worker"]["Settings"]
    assert settings["NoWorkerAlarmSeconds"] == settings["NoWorkerAlarmMinutes"] * 60
    alarm = service["Resources"]["NoWorkerStartedAlarm"]["Properties"]
    assert alarm["AlarmActions"] == [{"Ref": "AlarmTopicArn"}]
    (returned,) = [m for m in alarm["Metrics"] if m["ReturnData"]]
    expression = returned["Expression"]["Fn::Sub"][0]
    assert "FILL(workers, 0) < 1" in expression and "FILL(oldest, 0) >= ${Seconds}" in expression
    metrics = {m["Id"]: m["MetricStat"]["Metric"]["MetricName"] for m in alarm["Metrics"] if "MetricStat" in m}
    assert metrics == {"oldest": "ApproximateAgeOfOldestMessage", "workers": "RunningTaskCount"}


# ---- hardware is one parameter ----------------------------------------------------------------------


def _changed(template: Template, before: str, after: str) -> set[str]:
    old = resolved(template, {"WorkerInstanceTypes": before})
    new = resolved(template, {"WorkerInstanceTypes": after})
    return {name for name in old if old[name] != new[name]}


def _overrides(resources: dict[str, Any]) -> list[str]:
    policy = resources["WorkerAutoScalingGroup"]["Properties"]["MixedInstancesPolicy"]
    return [override["InstanceType"] for override in policy["LaunchTemplate"]["Overrides"] if override != NO_VALUE]


def _hardware_tag(resources: dict[str, Any]) -> Any:
    tags = resources["WorkerAutoScalingGroup"]["Properties"]["Tags"]
    (tag,) = [t for t in tags if t["Key"] == "surge:worker-hardware"]
    return tag["Value"]


NO_VALUE = {"Ref": "AWS::NoValue"}


def test_another_gpu_type_changes_only_the_auto_scaling_group(template: Template) -> None:
    assert _changed(template, "g5.xlarge", "g6e.xlarge") == {"WorkerAutoScalingGroup"}
    assert _changed(template, "g5.xlarge", "g5.12xlarge,p4d.24xlarge") == {"WorkerAutoScalingGroup"}


def test_instance_types_become_an_ordered_list_of_launch_overrides(template: Template) -> None:
    types = "g6e.xlarge,g6.xlarge,g5.xlarge,g4dn.xlarge,p5.48xlarge"
    resources = resolved(template, {"WorkerInstanceTypes": types})
    assert _overrides(resources) == types.split(",")
    assert _overrides(resolved(template, {"WorkerInstanceTypes": "g5.xlarge"})) == ["g5.xlarge"]
    policy = resources["WorkerAutoScalingGroup"]["Properties"]["MixedInstancesPolicy"]
    assert policy["InstancesDistribution"]["OnDemandAllocationStrategy"] == "prioritized"
    assert "InstanceType" not in resources["WorkerLaunchTemplate"]["Properties"]["LaunchTemplateData"]
    assert _hardware_tag(resources) == "gpu"


@pytest.mark.parametrize(
    "family",
    [
        "g4dn",
        "g5",
        "g6",
        "g6e",
        "g6f",
        "gr6",
        "gr6f",
        "g7e",
        "p3",
        "p3dn",
        "p4d",
        "p4de",
        "p5",
        "p5e",
        "p5en",
        "p6-b200",
        "p6-b300",
    ],
)
def test_every_family_of_the_nvidia_ami_gets_the_gpu_image(template: Template, family: str) -> None:
    resources = resolved(template, {"WorkerInstanceTypes": f"{family}.xlarge"})
    assert "-gpu-" in resources["WorkerImage"]["Properties"]["BaseImage"]
    assert _hardware_tag(resources) == "gpu"


@pytest.mark.parametrize(
    "types",
    [
        "g5g.xlarge",
        "g4ad.xlarge",
        "inf2.xlarge",
        "p2.xlarge",
        "g5.xlarge,c7i.xlarge",
        "c7i.xlarge,g5.xlarge",
        "g5.xlarge,g5.2xlarge,g5.4xlarge,g5.8xlarge,g5.12xlarge,g5.16xlarge",
    ],
)
def test_an_unknown_family_a_mix_or_six_types_fail_the_deploy_not_run_on_cpu(template: Template, types: str) -> None:
    with pytest.raises(KeyError):
        _hardware_tag(resolved(template, {"WorkerInstanceTypes": types}))


def test_worker_subnets_cover_as_many_zones_as_asked(template: Template) -> None:
    for zones in (2, 3, 6):
        resources = resolved(template, {"WorkerAvailabilityZones": zones})
        subnets = [s for s in resources["WorkerAutoScalingGroup"]["Properties"]["VPCZoneIdentifier"] if s != NO_VALUE]
        assert len(subnets) == zones
        assert {s["Ref"] for s in subnets} <= set(resources)
    assert default_parameters(template)["WorkerAvailabilityZones"] >= 3


def test_a_cpu_type_changes_the_capacity_the_image_and_the_gpu_request_only(template: Template) -> None:
    stacks = set(function_stacks(template))
    changed = {"WorkerLaunchTemplate", "WorkerImage", "WorkerAutoScalingGroup"} | stacks
    assert _changed(template, "g5.xlarge", "c7i.xlarge") == changed
    gpu = resolved(template, {"WorkerInstanceTypes": "g6.xlarge"})
    cpu = resolved(template, {"WorkerInstanceTypes": "c7i.xlarge"})
    assert "/gpu/" in gpu["WorkerLaunchTemplate"]["Properties"]["LaunchTemplateData"]["ImageId"]
    assert "/gpu/" not in cpu["WorkerLaunchTemplate"]["Properties"]["LaunchTemplateData"]["ImageId"]
    gpu_data = gpu["WorkerLaunchTemplate"]["Properties"]["LaunchTemplateData"]
    cpu_data = cpu["WorkerLaunchTemplate"]["Properties"]["LaunchTemplateData"]
    assert gpu_data["UserData"]["Fn::Base64"]["Fn::Sub"][1] == {"GpuSupport": "true"}
    assert cpu_data["UserData"]["Fn::Base64"]["Fn::Sub"][1] == {"GpuSupport": "false"}
    assert "-gpu-" in gpu["WorkerImage"]["Properties"]["BaseImage"]
    assert cpu["WorkerImage"]["Properties"]["BaseImage"].endswith("python:3.12-slim")
    for name in stacks:
        assert gpu[name]["Properties"]["Parameters"]["HasGpu"] == "true"
        assert cpu[name]["Properties"]["Parameters"]["HasGpu"] == "false"


def test_task_asks_for_one_gpu_only_on_gpu_instances(service: Template) -> None:
    (container,) = service["Resources"]["TaskDefinition"]["Properties"]["ContainerDefinitions"]
    assert container["ResourceRequirements"] == {
        "Fn::If": ["WithGpu", [{"Type": "GPU", "Value": "1"}], {"Ref": "AWS::NoValue"}]
    }
    assert service["Conditions"]["WithGpu"] == {"Fn::Equals": [{"Ref": "HasGpu"}, "true"]}


# ---- state, outputs, packaging ------------------------------------------------------------------------


@pytest.mark.parametrize("table", ["EventsTable", "StateTable"])
def test_tables_are_on_demand_expire_items_and_switch_recovery(template: Template, table: str) -> None:
    properties = template["Resources"][table]["Properties"]
    assert properties["BillingMode"] == "PAY_PER_REQUEST"
    assert properties["TimeToLiveSpecification"] == {"AttributeName": "expires_at", "Enabled": True}
    recovery = properties["PointInTimeRecoverySpecification"]["PointInTimeRecoveryEnabled"]
    assert recovery == {"Fn::If": ["WithPointInTimeRecovery", True, False]}


def test_outputs_give_the_endpoint_tables_and_queues(template: Template) -> None:
    outputs = template["Outputs"]
    public = {"ApiUrl", "EventsTableName", "StateTableName", "QueueUrlPrefix", "QueueNames"}
    assert public <= set(outputs)
    url = "https://${SurgeApi}.execute-api.${AWS::Region}.${AWS::URLSuffix}/live/"
    assert outputs["ApiUrl"]["Value"] == {"Fn::Sub": url}
    queue_names = outputs["QueueNames"]["Value"]["Fn::Join"][1]
    assert {item["Fn::GetAtt"][0] for item in queue_names} == set(function_stacks(template))


def _make_default(path: str, variable: str) -> str:
    match = re.search(rf"^{variable} \?= (.+)$", (ROOT / path).read_text(), re.MULTILINE)
    assert match, f"{variable} has no default in {path}"
    return match.group(1)


def test_the_app_package_reaches_the_lambdas_and_the_image(template: Template) -> None:
    app_module = default_parameters(template)["AppModule"]
    package = app_module.split(":")[0].split(".")[0]
    derived = "$(firstword $(subst ., ,$(firstword $(subst :, ,$(APP_MODULE)))))"
    for makefile in ("layers/app/Makefile", "functions/imagebuild/Makefile"):
        assert _make_default(makefile, "APP_MODULE") == app_module, makefile
        assert _make_default(makefile, "APP_PACKAGE") == derived, makefile
    dockerfile = (ROOT / "gpu_worker/Dockerfile").read_text()
    assert f"ARG APP_PACKAGE={package}\n" in dockerfile
    assert (ROOT / package / "__init__.py").is_file()


def test_the_front_functions_read_the_app_from_its_declaration_in_the_app_layer(template: Template) -> None:
    """API and both stream modes: never the user's module nor gradio at a cold start (layers/app/Makefile
    writes the declaration; tests/crossprocess/test_app_layer.py serves a front from that build)."""
    for mode in ("OnDemand", "ManagedInstances"):
        resources = resolved(template, {"StreamMode": mode})
        stream = "StreamFunction" if mode == "OnDemand" else "ManagedStreamFunction"
        for function in ("ApiFunction", stream):
            properties = resources[function]["Properties"]
            path = properties["Environment"]["Variables"]["APP_DECLARATION_PATH"]
            assert path == "/opt/python/surge_declared/app.json", (function, path)
            assert {"Ref": "AppLayer"} in properties["Layers"], function
    assert template["Resources"]["AppLayer"]["Metadata"]["BuildMethod"] == "makefile"
    assert "DECLARED = $(ARTIFACTS_DIR)/python/surge_declared\n" in (ROOT / "layers/app/Makefile").read_text()


def test_dashboard_body_is_valid_json_once_substituted(template: Template) -> None:
    body, variables = template["Resources"]["Dashboard"]["Properties"]["DashboardBody"]["Fn::Sub"]
    names = set(re.findall(r"\$\{([^}!]+)\}", body))
    assert names <= {"AWS::Region", "AWS::StackName", "WorkerCluster", "StreamFunction", *variables}
    widgets = json.loads(re.sub(r"\$\{[^}]+\}", "x", body))["widgets"]
    titles = " ".join(w["properties"]["title"] for w in widgets)
    for metric in ("admissions", "rejections", "queue_wait", "batch_size", "batch_duration", "job_failures"):
        assert f'MetricName=\\"{metric}\\"' in body, metric
    assert "Running workers" in titles and "Open streams" in titles


@pytest.mark.parametrize(
    ("mode", "target"),
    [("OnDemand", "${StreamFunction.Arn}"), ("ManagedInstances", "${ManagedStreamFunctionAliaslive}")],
)
def test_stream_mode_renders_the_streamed_routes_onto_its_function(template: Template, mode: str, target: str) -> None:
    api = resolved(template, {"StreamMode": mode})["SurgeApi"]["Properties"]
    for path in STREAMED:
        integration = api["DefinitionBody"]["paths"][path]["get"]["x-amazon-apigateway-integration"]
        assert integration["uri"]["Fn::Sub"].endswith(STREAMING_URI.replace("${StreamFunction.Arn}", target))
