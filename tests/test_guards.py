"""`make guards` on moto: a stage as `make tables` and `chalice deploy` leave it gets the
description's API guards, alarms, table caps, budget, the devices' topic rule and the settings of
the function's SQS event source; a second run changes nothing."""

from __future__ import annotations

import io
import json
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest

from iot_playground.common.stages import Stage
from iot_playground.deploy import cfn_template, guards, resources
from tests.deploy_support import on_demand_throughput  # noqa: F401 (a fixture)

REGION = "eu-west-3"
TOPIC = "arn:aws:sns:eu-west-3:123456789012:iot-playground-alarms"
EMAIL = "ops@example.com"
ACCOUNT = "123456789012"  # moto's
QUEUE = f"arn:aws:sqs:{REGION}:{ACCOUNT}:iot-playground-dev-device-messages"


pytestmark = pytest.mark.slow  # whole-account runs of a deploy tool over moto: seconds each


@pytest.fixture
def session(on_demand_throughput: Any) -> Iterator[Any]:  # noqa: F811
    from moto import mock_aws

    with mock_aws():
        yield boto3.session.Session(region_name=REGION)


@pytest.fixture
def stage() -> Stage:
    return Stage.load("dev")


def chalice_deploy(session: Any, stage: Stage, tmp_path: Path) -> tuple[str, Path]:
    """What `make tables` (the queues) and `chalice deploy` leave: the functions (with their reserved
    concurrency, the SQS one reading its queue), a REST API named after the app with its `api`
    stage, and its record."""
    clients = [session.client(service) for service in ("dynamodb", "s3", "sqs")]
    guards.converge(guards.storage_steps(resources.describe(stage), ACCOUNT, *clients), report=None)
    role = session.client("iam").create_role(RoleName="api_handler", AssumeRolePolicyDocument="{}")["Role"][
        "Arn"
    ]
    code = io.BytesIO()
    with zipfile.ZipFile(code, "w") as archive:
        archive.writestr("app.py", "app = None\n")
    lambda_ = session.client("lambda")
    for function, name in stage.function_names().items():
        lambda_.create_function(
            FunctionName=name,
            Runtime="python3.11",
            Role=role,
            Handler="app.app",
            Code={"ZipFile": code.getvalue()},
        )
        concurrency = {**stage.settings, **stage.function_settings.get(function, {})}["reserved_concurrency"]
        lambda_.put_function_concurrency(FunctionName=name, ReservedConcurrentExecutions=concurrency)
    sqs_function = stage.function_names()[resources.INGEST]
    lambda_.create_event_source_mapping(FunctionName=sqs_function, EventSourceArn=QUEUE, BatchSize=10)
    apigateway = session.client("apigateway")
    api = apigateway.create_rest_api(name=stage.app_name)["id"]
    root = apigateway.get_resources(restApiId=api)["items"][0]["id"]
    route = apigateway.create_resource(restApiId=api, parentId=root, pathPart="api")["id"]
    apigateway.put_method(restApiId=api, resourceId=route, httpMethod="GET", authorizationType="NONE")
    apigateway.put_integration(restApiId=api, resourceId=route, httpMethod="GET", type="MOCK")
    apigateway.create_deployment(restApiId=api, stageName=stage.api_stage_name)
    record = tmp_path / "dev.json"
    record.write_text(
        json.dumps({"resources": [{"name": "rest_api", "resource_type": "rest_api", "rest_api_id": api}]})
    )
    return api, record


def test_guards_apply_the_description_once(session, stage, tmp_path):
    api, record = chalice_deploy(session, stage, tmp_path)
    apigateway, cloudwatch = session.client("apigateway"), session.client("cloudwatch")
    lines: list[str] = []
    options = dict(
        session=session, deployed=record, alarm_topic_arn=TOPIC, budget_email=EMAIL, report=lines.append
    )
    first = guards.run("dev", **options)
    assert first and lines[0].startswith(f"dev: REST API {api}, stage api")
    merge = cfn_template.merge_template(stage)["Resources"]

    settings = apigateway.get_stage(restApiId=api, stageName="api")["methodSettings"]["*/*"]
    (packaged,) = merge["RestAPI"]["Properties"]["MethodSettings"]
    assert settings["throttlingRateLimit"] == packaged["ThrottlingRateLimit"] == stage.throttling.rate_limit
    assert settings["throttlingBurstLimit"] == packaged["ThrottlingBurstLimit"]

    (plan,) = apigateway.get_usage_plans()["items"]
    assert (plan["name"], plan["apiStages"]) == ("iot-playground-dev-admin", [{"apiId": api, "stage": "api"}])
    (key,) = apigateway.get_api_keys(includeValues=True)["items"]
    assert key["enabled"] and len(key["value"]) >= 20
    assert [k["id"] for k in apigateway.get_usage_plan_keys(usagePlanId=plan["id"])["items"]] == [key["id"]]

    responses = {r["responseType"]: r for r in apigateway.get_gateway_responses(restApiId=api)["items"]}
    for kind, response in merge["RestAPI"]["Properties"]["GatewayResponses"].items():
        assert responses[kind]["responseTemplates"] == response["ResponseTemplates"]
        assert responses[kind].get("statusCode") == response.get("StatusCode")
    deployments = apigateway.get_deployments(restApiId=api)["items"]
    assert len(deployments) == 2  # chalice deploy's, and one after them

    alarms = {a["AlarmName"]: a for a in cloudwatch.describe_alarms()["MetricAlarms"]}
    assert set(alarms) == {
        r["Properties"]["AlarmName"] for r in merge.values() if r.get("Type") == "AWS::CloudWatch::Alarm"
    }
    errors = alarms["iot-playground-dev-api_handler-errors"]
    dimensions = errors["Metrics"][0]["MetricStat"]["Metric"]["Dimensions"]
    assert dimensions == [{"Name": "FunctionName", "Value": "iot-playground-dev"}]
    assert errors["AlarmActions"] == [TOPIC]

    dynamodb = session.client("dynamodb")
    for table in resources.describe(stage)["tables"]:
        described = dynamodb.describe_table(TableName=table["name"])["Table"]
        assert described["OnDemandThroughput"] == table["throughput"]
    budgets = session.client("budgets", region_name="us-east-1")
    named = dict(AccountId="123456789012", BudgetName="iot-playground-dev-daily")
    budget = budgets.describe_budget(**named)["Budget"]
    assert float(budget["BudgetLimit"]["Amount"]) == resources.describe(stage)["budget"]["usd"]
    (alert,) = budgets.describe_notifications_for_budget(**named)["Notifications"]
    assert (alert["NotificationType"], alert["Threshold"]) == ("ACTUAL", 100)

    device_messages_are_wired(session, stage)
    lines.clear()
    assert guards.run("dev", **options) == [] and lines[-1] == "dev: nothing to change"
    assert len(apigateway.get_deployments(restApiId=api)["items"]) == 2


def device_messages_are_wired(session: Any, stage: Stage) -> None:
    """The rule sends each message to the queue, failures to the dead-letter queue, with a role that
    may only send there; the function's batches report their failures."""
    iot, iam, sqs = (session.client(s) for s in ("iot", "iam", "sqs"))
    rule = iot.get_topic_rule(ruleName="iot_playground_dev_device_messages")["rule"]
    topics = "FROM 'iot-playground/dev/runs/+/sensors/+'"
    assert rule["sql"] == f"SELECT encode(*, 'base64') AS payload, topic() AS topic {topics}"
    assert (rule["awsIotSqlVersion"], rule["ruleDisabled"]) == ("2016-03-23", False)
    role = iam.get_role(RoleName="iot-playground-dev-device-messages-rule")["Role"]
    (trust,) = role["AssumeRolePolicyDocument"]["Statement"]
    assert trust["Principal"] == {"Service": "iot.amazonaws.com"}
    assert (
        trust["Action"] == "sts:AssumeRole" and "Condition" not in trust
    )  # iam:PassRole: this account's rules
    url = sqs.get_queue_url(QueueName="iot-playground-dev-device-messages")["QueueUrl"]
    dlq = sqs.get_queue_url(QueueName="iot-playground-dev-device-messages-dlq")["QueueUrl"]
    (action,) = rule["actions"]
    assert action == {"sqs": {"queueUrl": url, "roleArn": role["Arn"], "useBase64": False}}
    assert rule["errorAction"] == {"sqs": {"queueUrl": dlq, "roleArn": role["Arn"], "useBase64": False}}
    names = dict(RoleName=role["RoleName"], PolicyName=role["RoleName"])
    (sends,) = iam.get_role_policy(**names)["PolicyDocument"]["Statement"]
    assert sends["Action"] == "sqs:SendMessage" and sends["Resource"] == [f"{QUEUE}-dlq", QUEUE]
    attributes = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
    assert json.loads(attributes["RedrivePolicy"]) == {
        "deadLetterTargetArn": f"{QUEUE}-dlq",
        "maxReceiveCount": 5,
    }
    assert attributes["SqsManagedSseEnabled"] == "true" and int(attributes["VisibilityTimeout"]) >= 6 * 30
    (mapping,) = session.client("lambda").list_event_source_mappings(EventSourceArn=QUEUE)[
        "EventSourceMappings"
    ]
    assert mapping["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    concurrency = stage.function_settings[resources.INGEST]["reserved_concurrency"]
    assert mapping["ScalingConfig"] == {"MaximumConcurrency": concurrency}


def test_guards_restore_what_a_later_chalice_deploy_reset(session, stage, tmp_path):
    api, record = chalice_deploy(session, stage, tmp_path)
    guards.run("dev", session=session, deployed=record, report=lambda _: None)
    apigateway = session.client("apigateway")
    apigateway.delete_gateway_response(restApiId=api, responseType="THROTTLED")  # a redeploy resets them
    patch = [{"op": "replace", "path": "/*/*/throttling/rateLimit", "value": "20"}]
    apigateway.update_stage(restApiId=api, stageName="api", patchOperations=patch)
    session.client("lambda").put_function_concurrency(
        FunctionName="iot-playground-dev", ReservedConcurrentExecutions=10
    )
    (mapping,) = session.client("lambda").list_event_source_mappings(EventSourceArn=QUEUE)[
        "EventSourceMappings"
    ]
    session.client("lambda").update_event_source_mapping(UUID=mapping["UUID"], FunctionResponseTypes=[])
    changes = guards.run("dev", session=session, deployed=record, report=lambda _: None)
    assert changes[:3] == [
        "gateway response THROTTLED",
        "stage api: deployed again",
        f"stage api: throttle {stage.throttling.rate_limit:g} req/s, burst {stage.throttling.burst_limit}",
    ]
    assert len(changes) == 4 and changes[3].startswith(f"{resources.INGEST}: SQS event source")
    assert guards.run("dev", session=session, deployed=record, report=lambda _: None) == []


def test_dry_run_changes_nothing(session, stage, tmp_path):
    _, record = chalice_deploy(session, stage, tmp_path)
    planned = guards.run("dev", session=session, deployed=record, dry_run=True, report=lambda _: None)
    assert "usage plan iot-playground-dev-admin: on stage api, admin throttle" in planned
    assert "topic rule iot_playground_dev_device_messages" in planned  # tables and queues: `make tables`'s
    assert session.client("apigateway").get_usage_plans()["items"] == []
    assert session.client("cloudwatch").describe_alarms()["MetricAlarms"] == []
    assert session.client("iot").list_topic_rules()["rules"] == []


def test_guards_refuse_a_stage_that_is_not_deployed(session, stage, tmp_path):
    with pytest.raises(guards.GuardsError, match="pass --rest-api-id"):
        guards.run("dev", session=session, deployed=tmp_path / "none.json", report=lambda _: None)
    api = session.client("apigateway").create_rest_api(name=stage.app_name)["id"]
    with pytest.raises(guards.GuardsError, match="no stage 'api'"):
        guards.run("dev", session=session, rest_api_id=api, report=lambda _: None)
