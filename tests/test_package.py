"""`make package` / `make package-tf`: both formats carry the one description (resources.py), and
cfn-lint and checkov (with the one `.checkov.yaml`) accept them."""

from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import re
import subprocess
import sys
import zipfile
from typing import Any

import pytest

from iot_playground.common.stages import Stage
from iot_playground.deploy import cfn_template, packaging, resources, tf_template
from tests.deploy_support import ROOT, STAGE, Packaged, package_dev, run_tool, tool


@pytest.fixture(scope="module")
def packaged() -> Packaged:
    return package_dev()


@pytest.fixture(scope="module")
def template(packaged: Packaged) -> dict[str, Any]:
    return packaged.template()


@pytest.fixture(scope="module")
def tf(packaged: Packaged) -> dict[str, Any]:
    resources: dict[str, Any] = packaged.tf("iot_playground.tf.json")["resource"]
    return resources


@pytest.fixture(scope="module")
def stage() -> Stage:
    return Stage.load(STAGE)


@pytest.fixture(scope="module")
def described(stage: Stage) -> dict[str, Any]:
    return resources.describe(stage)


def _of_type(template: dict[str, Any], kind: str) -> dict[str, Any]:
    return {name: r for name, r in template["Resources"].items() if r["Type"] == kind}


@pytest.mark.e2e
def test_cfn_lint_finds_no_error(packaged):
    result = run_tool("cfn-lint", "sam.json", cwd=packaged.cloudformation)
    # cfn-lint's exit code is a bit mask: 1 fatal, 2 error (4 warning, 8 informational).
    assert result.returncode & 0b11 == 0, result.stdout + result.stderr


CHECKOV_CONFIG = ROOT / ".checkov.yaml"
_SKIP_LINE = re.compile(r"^  - (CKV2?_[A-Z]+_\d+) +# (\S.*)$")


@pytest.fixture(scope="module")
def checkov_reports(packaged: Packaged) -> dict[tuple[str, bool], dict[str, Any]]:
    """checkov on both formats, with `.checkov.yaml` and without it, the four runs at once."""
    targets = {
        "cloudformation": ("-f", str(packaged.cloudformation / "sam.json"), "--framework", "cloudformation"),
        "terraform": ("-d", str(packaged.terraform), "--framework", "terraform_json"),
    }
    runs = {
        (fmt, configured): subprocess.Popen(
            [str(tool("checkov")), *target, "-o", "json"]
            + (["--config-file", str(CHECKOV_CONFIG)] if configured else ["--skip-download"]),
            # Away from the repository: checkov reads a `.checkov.yaml` in its working directory.
            cwd=packaged.cloudformation.parent,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        for fmt, target in targets.items()
        for configured in (True, False)
    }
    return {key: json.loads(run.communicate(timeout=300)[0]) for key, run in runs.items()}


@pytest.mark.parametrize("fmt", ["cloudformation", "terraform"])
def test_checkov_with_the_config_fails_no_check(checkov_reports, fmt):
    report = checkov_reports[(fmt, True)]
    failed = [(c["check_id"], c["resource"]) for c in report["results"]["failed_checks"]]
    assert report["summary"]["failed"] == 0, failed
    assert report["summary"]["skipped"] == 0
    # Only the version constraints, which checkov's parser cannot read, and which hold nothing to check.
    assert [e.rsplit("/", 1)[-1] for e in report["results"].get("parsing_errors", [])] == (
        ["versions.tf.json"] if fmt == "terraform" else []
    )
    assert report["summary"]["passed"] > 20
    if (
        fmt == "terraform"
    ):  # Chalice's resources are checked, with our patches: concurrency, create_before_destroy
        assert {"CKV_AWS_115", "CKV_AWS_237"} <= {c["check_id"] for c in report["results"]["passed_checks"]}


def test_checkov_config_accepts_only_what_fails_and_says_why(checkov_reports):
    lines = CHECKOV_CONFIG.read_text().splitlines()
    skips = [_SKIP_LINE.match(line) for line in lines[lines.index("skip-check:") + 1 :]]
    assert all(skips) and all(len(m[2]) >= 20 for m in skips if m)
    failing = {
        c["check_id"]
        for fmt in ("cloudformation", "terraform")
        for c in checkov_reports[(fmt, False)]["results"]["failed_checks"]
    }
    assert failing == {m[1] for m in skips if m}


def test_no_reference_is_left_unresolved(packaged):
    for text in [
        (packaged.cloudformation / "sam.json").read_text(),
        *(p.read_text() for p in packaged.terraform.glob("*.tf.json")),
    ]:
        assert (
            '"ref"' not in text and "arn:aws:dynamodb" not in text
        )  # tables named by the stack's own resources


def test_tables_are_the_description_in_both_formats(template, tf, described):
    cfn = _of_type(template, "AWS::DynamoDB::Table")
    assert set(cfn) == {cfn_template.table_id(t["key"]) for t in described["tables"]} and len(cfn) == 3
    for table in described["tables"]:
        resource, block = cfn[cfn_template.table_id(table["key"])], tf["aws_dynamodb_table"][table["key"]]
        request = resources.create_table_request(table)
        assert {k: v for k, v in resource["Properties"].items() if k in request} == request
        assert resource["DeletionPolicy"] == "Retain" and block["lifecycle"] == {"prevent_destroy": True}
        assert resource["Properties"]["PointInTimeRecoverySpecification"] == {
            "PointInTimeRecoveryEnabled": True
        }
        assert block["point_in_time_recovery"] == block["server_side_encryption"] == {"enabled": True}
        assert block["name"] == table["name"] and block["hash_key"] == table["hash"]
        units = {
            "max_read_request_units": table["throughput"]["MaxReadRequestUnits"],
            "max_write_request_units": table["throughput"]["MaxWriteRequestUnits"],
        }
        assert block["on_demand_throughput"] == units
        assert [i["on_demand_throughput"] for i in block.get("global_secondary_index", [])] == [units] * len(
            table["indexes"]
        )
        assert block.get("ttl") == (
            {"attribute_name": table["ttl"], "enabled": True} if table["ttl"] else None
        )
    readings = next(t for t in described["tables"] if t["key"] == "readings")
    assert readings["throughput"]["MaxWriteRequestUnits"] >= 500  # a run of 100 sensors every 200 ms


def test_roles_grant_the_policy_on_the_stacks_own_resources(template, packaged, stage, described):
    roles = _of_type(template, "AWS::IAM::Role")
    for function in stage.function_names():
        (policy,) = roles[cfn_template.function_id(f"{function}_role")]["Properties"]["Policies"]
        statements = {s["Sid"]: s for s in policy["PolicyDocument"]["Statement"]}
        if function == resources.INGEST:  # its own: no bucket, no idempotency, its queue
            assert {"ReportObjects", "IdempotencyTableItems", "RunsTableQueries"}.isdisjoint(statements)
            assert statements["ReadDeviceMessages"]["Resource"] == [{"Fn::Sub": "${DeviceMessages.Arn}"}]
        else:
            assert statements["IdempotencyTableItems"]["Resource"] == [
                {"Fn::GetAtt": ["IdempotencyTable", "Arn"]}
            ]
            assert statements["ReportObjects"]["Resource"] == [{"Fn::Sub": "${ReportsBucket.Arn}/*"}]
            assert "ReadDeviceMessages" not in statements
        assert ("WriteTraces" in statements) is stage.xray
    override = packaged.tf("chalice.tf.json")["resource"]
    for key, role_policy in override["aws_iam_role_policy"].items():
        statements = {s["Sid"]: s for s in json.loads(role_policy["policy"])["Statement"]}
        if key == f"{resources.INGEST}_role":
            queue = ["${aws_sqs_queue.device_messages.arn}"]
            assert (
                statements["ReadDeviceMessages"]["Resource"] == queue and "RunsTableQueries" not in statements
            )
        else:
            assert statements["RunsTableQueries"]["Resource"] == [
                "${aws_dynamodb_table.runs.arn}",
                "${aws_dynamodb_table.runs.arn}/index/*",
            ]
        assert all("aws_cloudwatch_log_group" in group for group in statements["WriteOwnLogs"]["Resource"])
    # The provider that knows on_demand_throughput, over Chalice's "< 5".
    providers = packaged.tf("versions.tf.json")["terraform"]["required_providers"]
    assert providers["aws"]["version"].startswith(">= 5") and "terraform" not in packaged.tf(
        "chalice.tf.json"
    )


def test_functions_are_named_as_chalice_deploy_names_them_and_take_the_secret(template, packaged, stage):
    names = set(stage.function_names().values())
    functions = _of_type(template, "AWS::Serverless::Function").values()
    assert {f["Properties"]["FunctionName"] for f in functions} == names
    for function in functions:
        variables = function["Properties"]["Environment"]["Variables"]
        assert variables.pop("PAGINATION_TOKEN_SECRET") == {"Ref": cfn_template.SECRET_PARAMETER}
        assert variables == stage.environment
    groups = {r["Properties"]["LogGroupName"]: r for r in _of_type(template, "AWS::Logs::LogGroup").values()}
    assert set(groups) == {f"/aws/lambda/{name}" for name in names}
    assert template["Parameters"][cfn_template.SECRET_PARAMETER]["NoEcho"] is True
    chalice = packaged.tf("chalice.tf.json")["resource"]["aws_lambda_function"]
    assert {f["function_name"] for f in chalice.values()} == names
    for function in chalice.values():
        assert (
            function["environment"]["variables"]["PAGINATION_TOKEN_SECRET"]
            == "${var.pagination_token_secret}"
        )


def test_api_throttle_tracing_and_gateway_responses_in_both_formats(template, tf, packaged, stage):
    api = template["Resources"][cfn_template.REST_API_ID]["Properties"]
    (settings,) = api["MethodSettings"]
    tf_settings = tf["aws_api_gateway_method_settings"]["rest_api"]["settings"]
    assert (
        settings["ThrottlingRateLimit"] == tf_settings["throttling_rate_limit"] == stage.throttling.rate_limit
    )
    assert (
        settings["ThrottlingBurstLimit"]
        == tf_settings["throttling_burst_limit"]
        == stage.throttling.burst_limit
    )
    assert api["TracingEnabled"] is stage.xray
    origin = f"'{stage.environment['CORS_ORIGIN']}'"
    tf_responses = {r["response_type"]: r for r in tf["aws_api_gateway_gateway_response"].values()}
    assert set(api["GatewayResponses"]) == set(tf_responses) and len(tf_responses) == 7
    for kind, response in api["GatewayResponses"].items():
        template_text = response["ResponseTemplates"]["application/json"]
        assert tf_responses[kind]["response_templates"]["application/json"] == template_text
        assert tf_responses[kind].get("status_code") == response.get("StatusCode")
        assert response["ResponseParameters"]["Headers"]["Access-Control-Allow-Origin"] == origin
        filled = template_text.replace("$context.error.messageString", '"m"').replace(
            "$context.error.responseType", "X"
        )
        assert set(json.loads(filled)) >= {"error", "message"}
    assert api["GatewayResponses"]["THROTTLED"]["StatusCode"] == "429"
    assert json.loads(
        api["GatewayResponses"]["INVALID_API_KEY"]["ResponseTemplates"]["application/json"]
    ) == {"error": "Forbidden", "message": resources.ADMIN_KEY_MESSAGE}
    # Gateway responses take effect on a deployment: Terraform's follows them.
    trigger = packaged.tf("chalice.tf.json")["resource"]["aws_api_gateway_deployment"]["rest_api"]
    assert all(
        f"aws_api_gateway_gateway_response.{key}.id" in trigger["stage_description"]
        for key in tf["aws_api_gateway_gateway_response"]
    )


def test_admin_usage_plan_and_key_are_on_the_stage_in_both_formats(template, tf):
    plan = template["Resources"]["AdminUsagePlan"]["Properties"]
    assert (
        plan["UsagePlanName"]
        == tf["aws_api_gateway_usage_plan"]["admin"]["name"]
        == "iot-playground-dev-admin"
    )
    assert plan["ApiStages"] == [{"ApiId": {"Ref": "RestAPI"}, "Stage": {"Ref": "RestAPI.Stage"}}]
    assert plan["Throttle"] == {"RateLimit": 1.0, "BurstLimit": 2}
    assert tf["aws_api_gateway_usage_plan"]["admin"]["throttle_settings"] == {
        "rate_limit": 1.0,
        "burst_limit": 2,
    }
    member = template["Resources"]["AdminUsagePlanKey"]["Properties"]
    assert member == {
        "KeyId": {"Ref": "AdminApiKey"},
        "KeyType": "API_KEY",
        "UsagePlanId": {"Ref": "AdminUsagePlan"},
    }
    assert (
        tf["aws_api_gateway_usage_plan_key"]["admin"]["usage_plan_id"]
        == "${aws_api_gateway_usage_plan.admin.id}"
    )


def test_alarms_and_the_daily_budget_are_the_same_in_both_formats(template, tf, described):
    cfn = {
        r["Properties"]["AlarmName"]: r["Properties"]
        for r in _of_type(template, "AWS::CloudWatch::Alarm").values()
    }
    tf_alarms = {a["alarm_name"]: a for a in tf["aws_cloudwatch_metric_alarm"].values()}
    assert (
        set(cfn) == set(tf_alarms) == {a["properties"]["AlarmName"] for a in described["alarms"]}
        and len(cfn) == 2 + len(described["functions"]) + len(described["tables"]) == 8
    )  # API 5xx, each function's errors, each table's throttles, the dead-letter queue
    throttles = cfn["iot-playground-dev-readings-table-throttles"]["Metrics"]
    assert throttles[0]["MetricStat"]["Metric"]["Dimensions"] == [
        {"Name": "TableName", "Value": {"Ref": "ReadingsTable"}}
    ]
    assert throttles[-1]["Expression"] == "m0 + m1" and [q["ReturnData"] for q in throttles] == [
        False,
        False,
        True,
    ]
    queries = tf_alarms["iot-playground-dev-readings-table-throttles"]["metric_query"]
    assert queries[0]["metric"]["dimensions"] == {"TableName": "${aws_dynamodb_table.readings.name}"}
    assert tf_alarms["iot-playground-dev-api_handler-errors"]["metric_query"][0]["metric"]["dimensions"] == {
        "FunctionName": "${aws_lambda_function.api_handler.function_name}"
    }
    budget = _of_type(template, "AWS::Budgets::Budget")["DailyBudget"]["Properties"]
    assert budget["Budget"]["BudgetLimit"] == {"Amount": described["budget"]["usd"], "Unit": "USD"}
    assert budget["Budget"]["TimeUnit"] == tf["aws_budgets_budget"]["daily"]["time_unit"] == "DAILY"
    assert tf["aws_budgets_budget"]["daily"]["limit_amount"] == str(described["budget"]["usd"])
    assert template["Parameters"]["BudgetEmail"]["Default"] == ""  # the email is optional


def test_reports_bucket_is_private_encrypted_tls_only_and_expires_downloads_in_both(template, tf, stage):
    properties = template["Resources"]["ReportsBucket"]["Properties"]
    assert (
        properties["BucketName"]
        == tf["aws_s3_bucket"]["reports"]["bucket"]
        == stage.environment["REPORTS_BUCKET"]
    )
    (rule,) = properties["LifecycleConfiguration"]["Rules"]
    (tf_rule,) = tf["aws_s3_bucket_lifecycle_configuration"]["reports"]["rule"]
    assert rule["ExpirationInDays"] == tf_rule["expiration"]["days"] == 1
    assert (
        all(properties["PublicAccessBlockConfiguration"].values())
        and len(properties["PublicAccessBlockConfiguration"]) == 4
    )
    assert tf["aws_s3_bucket_public_access_block"]["reports"]["restrict_public_buckets"] is True
    for policy in (
        template["Resources"]["ReportsBucketPolicy"]["Properties"]["PolicyDocument"],
        json.loads(tf["aws_s3_bucket_policy"]["reports"]["policy"]),
    ):
        (statement,) = policy["Statement"]
        assert statement["Effect"] == "Deny" and statement["Condition"] == {
            "Bool": {"aws:SecureTransport": "false"}
        }


def test_device_messages_reach_the_function_in_both_formats(template, tf, packaged, stage, described):
    """MQTT: the topic rule sends each message to the queue (failures to the dead-letter queue), with
    a role IoT takes that may only send there; the function reads the queue, reporting failures."""
    mqtt, res, name = (
        described["device_messages"],
        template["Resources"],
        "iot-playground-dev-device-messages",
    )
    queue, dlq = res["DeviceMessages"]["Properties"], res["DeviceMessagesDlq"]["Properties"]
    tf_queue, tf_dlq = tf["aws_sqs_queue"]["device_messages"], tf["aws_sqs_queue"]["device_messages_dlq"]
    timeout = stage.function_settings[resources.INGEST]["lambda_timeout"]
    assert (queue["QueueName"], dlq["QueueName"], tf_queue["name"], tf_dlq["name"]) == (
        name,
        f"{name}-dlq",
    ) * 2
    assert queue["VisibilityTimeout"] == tf_queue["visibility_timeout_seconds"] >= 6 * timeout
    redrive = {"deadLetterTargetArn": {"Fn::Sub": "${DeviceMessagesDlq.Arn}"}, "maxReceiveCount": 5}
    assert queue["RedrivePolicy"] == redrive
    tf_redrive = {"deadLetterTargetArn": "${aws_sqs_queue.device_messages_dlq.arn}", "maxReceiveCount": 5}
    assert json.loads(tf_queue["redrive_policy"]) == tf_redrive
    assert dlq["MessageRetentionPeriod"] == tf_dlq["message_retention_seconds"] == 14 * 86_400
    assert queue["SqsManagedSseEnabled"] is dlq["SqsManagedSseEnabled"] is tf_queue["sqs_managed_sse_enabled"]
    assert tf_dlq["sqs_managed_sse_enabled"] is True

    rule = res[cfn_template.RULE_ID]["Properties"]
    sql = "SELECT encode(*, 'base64') AS payload, topic() AS topic FROM 'iot-playground/dev/runs/+/sensors/+'"
    payload, tf_rule = rule["TopicRulePayload"], tf["aws_iot_topic_rule"]["device_messages"]
    assert (payload["Sql"], payload["AwsIotSqlVersion"], payload["RuleDisabled"]) == (
        sql,
        "2016-03-23",
        False,
    )
    assert (tf_rule["sql"], tf_rule["sql_version"], tf_rule["enabled"]) == (sql, "2016-03-23", True)
    role = {"Fn::GetAtt": [cfn_template.RULE_ROLE_ID, "Arn"]}
    assert payload["Actions"] == [
        {"Sqs": {"QueueUrl": {"Ref": "DeviceMessages"}, "RoleArn": role, "UseBase64": False}}
    ]
    assert payload["ErrorAction"] == {
        "Sqs": {"QueueUrl": {"Ref": "DeviceMessagesDlq"}, "RoleArn": role, "UseBase64": False}
    }
    tf_role = "${aws_iam_role.device_messages_rule.arn}"
    assert tf_rule["sqs"] == [
        {"queue_url": "${aws_sqs_queue.device_messages.url}", "role_arn": tf_role, "use_base64": False}
    ]
    assert tf_rule["error_action"]["sqs"]["queue_url"] == "${aws_sqs_queue.device_messages_dlq.url}"
    iot_role = res[cfn_template.RULE_ROLE_ID]["Properties"]
    tf_trust = json.loads(tf["aws_iam_role"]["device_messages_rule"]["assume_role_policy"])
    for trust in (iot_role["AssumeRolePolicyDocument"], tf_trust):
        ((statement,),) = [trust["Statement"]]
        assert (statement["Principal"], statement["Action"]) == (
            {"Service": "iot.amazonaws.com"},
            "sts:AssumeRole",
        )
    (sends,) = iot_role["Policies"][0]["PolicyDocument"]["Statement"]
    tf_sends = json.loads(tf["aws_iam_role_policy"]["device_messages_rule"]["policy"])["Statement"]
    assert sends["Action"] == "sqs:SendMessage" and sends["Resource"] == [
        {"Fn::Sub": "${DeviceMessagesDlq.Arn}"},
        {"Fn::Sub": "${DeviceMessages.Arn}"},
    ]
    assert tf_sends == [sends | {"Resource": [f"${{aws_sqs_queue.{k}.arn}}" for k in mqtt["queues"]]}]

    # The event source: the queue, its batches reporting failures, the function's concurrency at most.
    concurrency = {"MaximumConcurrency": stage.function_settings[resources.INGEST]["reserved_concurrency"]}
    event = res["IngestDeviceMessages"]["Properties"]["Events"]["IngestDeviceMessagesSqsEventSource"]
    assert event["Type"] == "SQS" and event["Properties"]["Queue"] == {"Fn::Sub": "${DeviceMessages.Arn}"}
    assert event["Properties"]["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    assert event["Properties"]["ScalingConfig"] == concurrency
    source = packaged.tf("chalice.tf.json")["resource"]["aws_lambda_event_source_mapping"]
    (tf_event,) = source.values()
    assert tf_event["event_source_arn"].endswith(f":{name}")  # app.py's queue is the description's
    assert tf_event["function_response_types"] == ["ReportBatchItemFailures"]
    assert tf_event["scaling_config"] == {"maximum_concurrency": concurrency["MaximumConcurrency"]}
    assert {"aws_sqs_queue.device_messages", "aws_iam_role_policy.ingest_device_messages_role"} <= set(
        tf_event["depends_on"]
    )
    alarm = res["DeviceMessagesDlqMessagesAlarm"]["Properties"]
    (query,) = alarm["Metrics"]
    assert query["MetricStat"]["Metric"]["MetricName"] == "ApproximateNumberOfMessagesVisible"
    assert query["MetricStat"]["Metric"]["Dimensions"] == [{"Name": "QueueName", "Value": f"{name}-dlq"}]
    assert (alarm["Threshold"], alarm["ComparisonOperator"]) == (1, "GreaterThanOrEqualToThreshold")
    assert alarm["AlarmActions"] == res["APIHandlerErrorsAlarm"]["Properties"]["AlarmActions"]
    tf_alarm = tf["aws_cloudwatch_metric_alarm"]["device_messages_dlq_messages"]
    assert tf_alarm["alarm_actions"] == "${compact([var.alarm_topic_arn])}"


INTERRUPT_ALL = "/api/runs/interrupt-all"


def _key_required(swagger: dict[str, Any]) -> set[tuple[str, str]]:
    return {
        (path, method)
        for path, methods in swagger["paths"].items()
        for method, operation in methods.items()
        if {"api_key": []} in operation.get("security", [])
    }


def test_only_interrupt_all_requires_the_api_key_in_both_formats(template, packaged):
    cfn_swagger = template["Resources"][cfn_template.REST_API_ID]["Properties"]["DefinitionBody"]
    tf_swagger = json.loads(packaged.tf("chalice.tf.json")["locals"]["chalice_api_swagger"])
    assert _key_required(cfn_swagger) == _key_required(tf_swagger) == {(INTERRUPT_ALL, "post")}


def test_prod_switches_tracing_on():
    merge = cfn_template.merge_template(Stage.load("prod"))
    assert merge["Resources"][cfn_template.REST_API_ID]["Properties"]["TracingEnabled"] is True
    statements = merge["Resources"]["ApiHandlerRole"]["Properties"]["Policies"][0]["PolicyDocument"][
        "Statement"
    ]
    assert any(s["Sid"] == "WriteTraces" for s in statements)
    assert tf_template.AWS_PROVIDER.startswith(">= 5")


# Powertools comes from its public layer, boto3 and botocore from the runtime: the package is small.
MAX_PACKAGE_BYTES = 700 * 1024


def test_lambda_package_holds_the_app_and_its_runtime_dependencies_only(packaged):
    with zipfile.ZipFile(packaged.cloudformation / "deployment.zip") as archive:
        top = {name.split("/")[0] for name in archive.namelist()}
    assert {"app.py", "chalicelib", "chalice", "msgspec"} <= top
    assert not top & {"iot_playground", "tests", "boto3", "botocore", "moto", "pytest", "benchmarks"}
    assert not {name for name in top if name.startswith(("aws_lambda_powertools", "jmespath"))}
    for zip_path in (packaged.cloudformation, packaged.terraform):
        assert (zip_path / "deployment.zip").stat().st_size <= MAX_PACKAGE_BYTES


def test_package_carries_unchecked_bytecode_of_every_module_for_its_runtime(packaged, stage):
    runtime = packaging.stage_runtime(stage)
    tag = f"cpython-{runtime.removeprefix('python').replace('.', '')}"
    assert tag == sys.implementation.cache_tag  # packaging refuses another interpreter
    with zipfile.ZipFile(packaged.cloudformation / "deployment.zip") as archive:
        names = set(archive.namelist())
        compiled = {name for name in names if name.endswith(".pyc")}
        expected = set()
        for source in (name for name in names if name.endswith(".py")):
            folder, _, file = source.rpartition("/")
            expected.add(f"{folder + '/' if folder else ''}__pycache__/{file[:-3]}.{tag}.pyc")
        assert compiled == expected  # one for every module, none left over from the project tree
        for name in compiled:
            header = archive.read(name)[:8]
            assert header[:4] == importlib.util.MAGIC_NUMBER
            assert int.from_bytes(header[4:8], "little") == 0b01  # PEP 552: hash-based, unchecked


def test_every_function_runs_the_stated_runtime_with_the_pinned_powertools_layer(template, packaged):
    for name in ("dev", "prod"):
        assert "eu-west-3" in packaging.powertools_layer(Stage.load(name))  # the stages' region
    layer, runtime = packaging.powertools_layer(Stage.load(STAGE)), packaging.stage_runtime(Stage.load(STAGE))
    tf_functions = packaged.tf("chalice.tf.json")["resource"]["aws_lambda_function"].values()
    for function in [f["Properties"] for f in _of_type(template, "AWS::Serverless::Function").values()]:
        assert (function["Runtime"], function["Layers"]) == (runtime, [layer])
    assert all((f["runtime"], f["layers"]) == (runtime, [layer]) for f in tf_functions)
    assert packaging.pinned_powertools() == importlib.metadata.version("aws-lambda-powertools")
    assert "aws-lambda-powertools" not in (ROOT / "requirements.txt").read_text()  # never vendored


def test_a_layer_for_another_python_or_release_and_another_interpreter_are_refused():
    config = json.loads((ROOT / ".chalice" / "config.json").read_text())
    (arn,) = config["stages"]["dev"]["layers"]
    for wrong in (arn.replace("python311", "python312"), arn.rsplit(":", 1)[0] + ":39"):
        config["stages"]["dev"]["layers"] = [wrong]
        with pytest.raises(ValueError):
            packaging.powertools_layer(Stage.load("dev", config))
    with pytest.raises(RuntimeError, match=re.escape("package with a python3.11 virtualenv")):
        packaging.check_interpreter(Stage.load("dev"), "python3.12")
