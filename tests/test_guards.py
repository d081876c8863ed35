"""`make guards` on moto: a stage as `chalice deploy` leaves it gets the guardrails of the
packaged templates, and a second run changes nothing."""

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
from iot_playground.deploy import cfn_template, guardrails, guards

REGION = "eu-west-3"
TOPIC = "arn:aws:sns:eu-west-3:123456789012:iot-playground-alarms"


@pytest.fixture
def session() -> Iterator[Any]:
    from moto import mock_aws

    with mock_aws():
        yield boto3.session.Session(region_name=REGION)


@pytest.fixture
def stage() -> Stage:
    return Stage.load("dev")


def chalice_deploy(session: Any, stage: Stage, tmp_path: Path) -> tuple[str, Path]:
    """What `chalice deploy` leaves: the functions (with their reserved concurrency), a REST API
    named after the app whose interrupt-all requires a key, its `api` stage, and its record."""
    role = session.client("iam").create_role(RoleName="api_handler", AssumeRolePolicyDocument="{}")["Role"][
        "Arn"
    ]
    code = io.BytesIO()
    with zipfile.ZipFile(code, "w") as archive:
        archive.writestr("app.py", "app = None\n")
    lambda_ = session.client("lambda")
    arns = {}
    for function, name in stage.function_names().items():
        arns[function] = lambda_.create_function(
            FunctionName=name,
            Runtime="python3.11",
            Role=role,
            Handler="app.app",
            Code={"ZipFile": code.getvalue()},
        )["FunctionArn"]
        concurrency = {**stage.settings, **stage.function_settings.get(function, {})}["reserved_concurrency"]
        lambda_.put_function_concurrency(FunctionName=name, ReservedConcurrentExecutions=concurrency)
    apigateway = session.client("apigateway")
    api = apigateway.create_rest_api(name=stage.app_name)["id"]
    parent = apigateway.get_resources(restApiId=api)["items"][0]["id"]
    for part in ("api", "runs", "interrupt-all"):
        parent = apigateway.create_resource(restApiId=api, parentId=parent, pathPart=part)["id"]
    apigateway.put_method(
        restApiId=api, resourceId=parent, httpMethod="POST", authorizationType="NONE", apiKeyRequired=True
    )
    apigateway.put_integration(
        restApiId=api, resourceId=parent, httpMethod="POST", type="AWS_PROXY", integrationHttpMethod="POST",
        uri=f"arn:aws:apigateway:{REGION}:lambda:path/2015-03-31/functions/{arns['api_handler']}/invocations",
    )  # fmt: skip
    apigateway.create_deployment(restApiId=api, stageName=stage.api_stage_name)
    record = tmp_path / "dev.json"
    resources = [{"name": "rest_api", "resource_type": "rest_api", "rest_api_id": api}]
    resources += [{"name": f, "resource_type": "lambda_function", "lambda_arn": a} for f, a in arns.items()]
    record.write_text(json.dumps({"resources": resources, "schema_version": "2.0", "backend": "api"}))
    return api, record


def test_guards_apply_the_templates_guardrails_once(session, stage, tmp_path):
    api, record = chalice_deploy(session, stage, tmp_path)
    apigateway, cloudwatch = session.client("apigateway"), session.client("cloudwatch")
    lines: list[str] = []
    first = guards.run("dev", session=session, deployed=record, alarm_topic_arn=TOPIC, report=lines.append)
    assert first and lines[0].startswith(f"dev: REST API {api}, stage api")
    deployments = apigateway.get_deployments(restApiId=api)["items"]

    # The stage's throttle, as the packaged templates set it.
    settings = apigateway.get_stage(restApiId=api, stageName="api")["methodSettings"]["*/*"]
    (method_settings,) = cfn_template.merge_template(stage)["Resources"]["RestAPI"]["Properties"][
        "MethodSettings"
    ]
    assert (
        settings["throttlingRateLimit"]
        == method_settings["ThrottlingRateLimit"]
        == stage.throttling.rate_limit
    )
    assert settings["throttlingBurstLimit"] == method_settings["ThrottlingBurstLimit"]
    assert settings["metricsEnabled"] is True

    # The admin usage plan on the stage, and its enabled key in it.
    (plan,) = apigateway.get_usage_plans()["items"]
    assert plan["name"] == guardrails.admin_name(stage)
    assert plan["apiStages"] == [{"apiId": api, "stage": "api"}]
    assert float(plan["throttle"]["rateLimit"]) == 1.0 and plan["throttle"]["burstLimit"] == 2
    (key,) = apigateway.get_api_keys(includeValues=True)["items"]
    assert key["name"] == guardrails.admin_name(stage) and key["enabled"] and len(key["value"]) >= 20
    assert [k["id"] for k in apigateway.get_usage_plan_keys(usagePlanId=plan["id"])["items"]] == [key["id"]]

    # The gateway responses of the templates, and a deployment that makes them effective.
    responses = {r["responseType"]: r for r in apigateway.get_gateway_responses(restApiId=api)["items"]}
    packaged = cfn_template.merge_template(stage)["Resources"]["RestAPI"]["Properties"]["GatewayResponses"]
    assert set(responses) == set(packaged)
    for kind, response in packaged.items():
        assert responses[kind]["responseTemplates"] == response["ResponseTemplates"]
        assert responses[kind].get("statusCode") == response.get("StatusCode")
        headers = {
            f"gatewayresponse.header.{k}": v for k, v in response["ResponseParameters"]["Headers"].items()
        }
        assert responses[kind]["responseParameters"] == headers
    assert len(deployments) == 2  # chalice deploy's and the one after the gateway responses

    # The alarms of the templates, on the deployed names, notifying the topic.
    alarms = {a["AlarmName"]: a for a in cloudwatch.describe_alarms()["MetricAlarms"]}
    template_alarms = [
        r["Properties"]
        for r in cfn_template.merge_template(stage)["Resources"].values()
        if r.get("Type") == "AWS::CloudWatch::Alarm"
    ]
    assert set(alarms) == {a["AlarmName"] for a in template_alarms}
    errors = alarms["iot-playground-dev-api_handler-errors"]
    assert errors["Dimensions"] == [{"Name": "FunctionName", "Value": "iot-playground-dev"}]
    assert errors["AlarmActions"] == [TOPIC] and errors["Threshold"] == guardrails.LAMBDA_ERRORS_THRESHOLD
    throttles = alarms["iot-playground-dev-readings-table-throttles"]
    dimensions = [m["MetricStat"]["Metric"]["Dimensions"] for m in throttles["Metrics"] if "MetricStat" in m]
    assert dimensions == [[{"Name": "TableName", "Value": "iot-playground-readings-dev"}]] * 2

    # Run again: nothing to change, nothing written.
    lines.clear()
    assert (
        guards.run("dev", session=session, deployed=record, alarm_topic_arn=TOPIC, report=lines.append) == []
    )
    assert lines[-1] == "dev: nothing to change"
    assert len(apigateway.get_deployments(restApiId=api)["items"]) == 2
    assert len(apigateway.get_usage_plans()["items"]) == len(apigateway.get_api_keys()["items"]) == 1


def test_guards_restore_what_a_later_chalice_deploy_reset(session, stage, tmp_path):
    api, record = chalice_deploy(session, stage, tmp_path)
    guards.run("dev", session=session, deployed=record, report=lambda _: None)
    apigateway, lambda_ = session.client("apigateway"), session.client("lambda")
    # A redeploy overwrites the API definition (gateway responses back to API Gateway's own)...
    apigateway.delete_gateway_response(restApiId=api, responseType="THROTTLED")
    apigateway.update_stage(
        restApiId=api,
        stageName="api",
        patchOperations=[{"op": "replace", "path": "/*/*/throttling/rateLimit", "value": "20"}],
    )
    # ...and someone changed the concurrency and the usage plan by hand.
    lambda_.put_function_concurrency(FunctionName="iot-playground-dev", ReservedConcurrentExecutions=10)
    (plan,) = apigateway.get_usage_plans()["items"]
    apigateway.update_usage_plan(
        usagePlanId=plan["id"],
        patchOperations=[{"op": "remove", "path": "/apiStages", "value": f"{api}:api"}],
    )
    changes = guards.run("dev", session=session, deployed=record, report=lambda _: None)
    assert changes == [
        "gateway response THROTTLED",
        "stage api: deployed again (gateway responses take effect on deployment)",
        f"stage api: throttle {stage.throttling.rate_limit:g} req/s, burst {stage.throttling.burst_limit}",
        "usage plan iot-playground-dev-admin: attached to stage api, admin throttle",
        f"function iot-playground-dev: reserved concurrency {stage.settings['reserved_concurrency']}",
    ]
    assert guards.run("dev", session=session, deployed=record, report=lambda _: None) == []


def test_dry_run_changes_nothing(session, stage, tmp_path):
    _, record = chalice_deploy(session, stage, tmp_path)
    planned = guards.run("dev", session=session, deployed=record, dry_run=True, report=lambda _: None)
    assert "usage plan iot-playground-dev-admin: created on stage api" in planned
    assert session.client("apigateway").get_usage_plans()["items"] == []
    assert session.client("cloudwatch").describe_alarms()["MetricAlarms"] == []


def test_the_api_is_found_by_name_when_there_is_no_record(session, stage, tmp_path):
    api, _ = chalice_deploy(session, stage, tmp_path)
    assert guards.run("dev", session=session, deployed=tmp_path / "none.json", report=lambda _: None)
    # Two APIs named after the app (dev and prod in one account): the record or an id is needed.
    session.client("apigateway").create_rest_api(name=stage.app_name)
    with pytest.raises(guards.GuardsError, match="2 REST APIs named 'iot-playground'"):
        guards.run("dev", session=session, deployed=tmp_path / "none.json", report=lambda _: None)
    assert guards.run("dev", session=session, rest_api_id=api, report=lambda _: None) == []


def test_guards_refuse_a_stage_that_is_not_deployed(session, stage, tmp_path):
    api = session.client("apigateway").create_rest_api(name=stage.app_name)["id"]
    with pytest.raises(guards.GuardsError, match="no stage 'api'"):
        guards.run("dev", session=session, rest_api_id=api, report=lambda _: None)
