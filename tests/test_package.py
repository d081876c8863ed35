"""`make package` / `make package-tf`: what the generated artifacts contain, and that
cfn-lint and checkov accept the CloudFormation template."""

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

from chalicelib import admin_key
from chalicelib.tables import ALL_TABLES, TableDefinition
from iot_playground.common.stages import Stage
from iot_playground.deploy import cfn_template, guardrails, iam, lambda_layers, reports_bucket, tf_template
from iot_playground.deploy.checkov_view import write_view
from iot_playground.deploy.tf_template import SECRET_VARIABLE
from tests.deploy_support import ROOT, STAGE, Packaged, package_dev, run_tool, tool


@pytest.fixture(scope="module")
def packaged() -> Packaged:
    return package_dev()


@pytest.fixture(scope="module")
def template(packaged: Packaged) -> dict[str, Any]:
    return packaged.template()


@pytest.fixture(scope="module")
def stage() -> Stage:
    return Stage.load(STAGE)


def _of_type(template: dict[str, Any], kind: str) -> dict[str, Any]:
    return {name: r for name, r in template["Resources"].items() if r["Type"] == kind}


def _create_request_from_cfn(properties: dict[str, Any]) -> dict[str, Any]:
    keys = ("TableName", "BillingMode", "KeySchema", "AttributeDefinitions", "GlobalSecondaryIndexes")
    return {key: properties[key] for key in keys if key in properties}


def _create_request_from_tf(block: dict[str, Any]) -> dict[str, Any]:
    def key_schema(source: dict[str, Any]) -> list[dict[str, str]]:
        schema = [{"AttributeName": source["hash_key"], "KeyType": "HASH"}]
        if "range_key" in source:
            schema.append({"AttributeName": source["range_key"], "KeyType": "RANGE"})
        return schema

    request: dict[str, Any] = {
        "TableName": block["name"],
        "BillingMode": block["billing_mode"],
        "KeySchema": key_schema(block),
        "AttributeDefinitions": [
            {"AttributeName": a["name"], "AttributeType": a["type"]} for a in block["attribute"]
        ],
    }
    if "global_secondary_index" in block:
        request["GlobalSecondaryIndexes"] = [
            {
                "IndexName": index["name"],
                "KeySchema": key_schema(index),
                "Projection": {"ProjectionType": index["projection_type"]},
            }
            for index in block["global_secondary_index"]
        ]
    return request


def _expected(definition: TableDefinition, stage: Stage) -> dict[str, Any]:
    return definition.create_table_request(definition.table_name(stage.app_settings))


# ---- CloudFormation ---------------------------------------------------------


def test_cfn_lint_finds_no_error(packaged):
    result = run_tool("cfn-lint", "sam.json", cwd=packaged.cloudformation)
    # cfn-lint's exit code is a bit mask: 1 fatal, 2 error (4 warning, 8 informational).
    assert result.returncode & 0b11 == 0, result.stdout + result.stderr


CHECKOV_CONFIG = ROOT / ".checkov.yaml"
_SKIP_LINE = re.compile(r"^  - (CKV2?_[A-Z]+_\d+) +# (\S.*)$")


def checkov_skips() -> dict[str, str]:
    """The checks `.checkov.yaml` accepts, each with the reason on its line."""
    lines = CHECKOV_CONFIG.read_text().splitlines()
    entries = lines[lines.index("skip-check:") + 1 :]
    skips: dict[str, str] = {}
    for line in entries:
        match = _SKIP_LINE.match(line)
        assert match, f"not `  - CKV_..  # reason`: {line!r}"
        assert match[1] not in skips, f"{match[1]} skipped twice"
        skips[match[1]] = match[2]
    return skips


@pytest.fixture(scope="module")
def checkov_reports(packaged: Packaged) -> dict[tuple[str, bool], dict[str, Any]]:
    """checkov on both formats, with `.checkov.yaml` and without it (to see what it accepts),
    the four runs at once. Terraform is checked as Terraform reads it (checkov_view.py)."""
    view = write_view(packaged.terraform, packaged.terraform.parent / "terraform-checkov")
    targets = {
        "cloudformation": ("-f", str(packaged.cloudformation / "sam.json"), "--framework", "cloudformation"),
        "terraform": ("-d", str(view.parent), "--framework", "terraform_json"),
    }
    runs = {
        (fmt, configured): subprocess.Popen(
            [
                str(tool("checkov")),
                *target,
                *(("--config-file", str(CHECKOV_CONFIG)) if configured else ("--skip-download",)),
                "-o",
                "json",
            ],
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
    summary = report["summary"]
    failed = [(c["check_id"], c["resource"]) for c in report["results"]["failed_checks"]]
    assert summary["failed"] == 0, failed
    assert summary["parsing_errors"] == 0
    assert summary["skipped"] == 0  # no finding accepted anywhere but in the config
    assert summary["passed"] > 20
    if fmt == "terraform":
        # Chalice's resources with our overrides merged in: the functions' reserved concurrency
        # (chalice.tf.json) is seen, and the API's create_before_destroy (the override file).
        passed = {c["check_id"] for c in report["results"]["passed_checks"]}
        assert {"CKV_AWS_115", "CKV_AWS_237"} <= passed


def test_checkov_config_accepts_only_what_fails_and_says_why(checkov_reports):
    skips = checkov_skips()
    assert skips and all(len(reason) >= 20 for reason in skips.values())
    failing = {
        fmt: {c["check_id"] for c in checkov_reports[(fmt, False)]["results"]["failed_checks"]}
        for fmt in ("cloudformation", "terraform")
    }
    # Every accepted check fails without the config in at least one format, and nothing else fails.
    assert failing["cloudformation"] | failing["terraform"] == set(skips)


def test_cfn_tables_are_the_module_definitions(template, stage):
    tables = _of_type(template, "AWS::DynamoDB::Table")
    assert set(tables) == {cfn_template.table_id(d) for d in ALL_TABLES}
    for definition in ALL_TABLES:
        resource = tables[cfn_template.table_id(definition)]
        properties = resource["Properties"]
        assert _create_request_from_cfn(properties) == _expected(definition, stage)
        assert properties["PointInTimeRecoverySpecification"] == {"PointInTimeRecoveryEnabled": True}
        assert properties["SSESpecification"] == {"SSEEnabled": True}
        ttl = properties.get("TimeToLiveSpecification")
        assert ttl == (
            {"AttributeName": definition.ttl_attribute, "Enabled": True} if definition.ttl_attribute else None
        )
        assert resource["DeletionPolicy"] == resource["UpdateReplacePolicy"] == "Retain"


def test_roles_name_tables_and_log_groups_through_the_stack(template, stage):
    text = json.dumps(template)
    assert "arn:aws:dynamodb" not in text and ":table/" not in text  # no hand-written table ARNs
    roles = _of_type(template, "AWS::IAM::Role")
    functions = {**_of_type(template, "AWS::Serverless::Function")}
    assert len(roles) == len(functions) == len(stage.function_names())
    for role in roles.values():
        (policy,) = role["Properties"]["Policies"]
        statements = {s["Sid"]: s for s in policy["PolicyDocument"]["Statement"]}
        for definition in ALL_TABLES:
            table = cfn_template.table_id(definition)
            granted = set()
            for statement in statements.values():
                if {"Fn::GetAtt": [table, "Arn"]} in statement["Resource"]:
                    granted |= set(statement["Action"])
            assert granted == set(iam.DYNAMODB_ACTIONS[definition.logical_name])
        assert statements["WriteOwnLogs"]["Resource"] == [
            {"Fn::GetAtt": [cfn_template.log_group_id(f), "Arn"]} for f in stage.function_names()
        ]
        assert ("WriteTraces" in statements) is stage.xray


def test_functions_are_named_as_chalice_deploy_names_them(template, stage, packaged):
    names = {
        r["Properties"]["FunctionName"] for r in _of_type(template, "AWS::Serverless::Function").values()
    }
    assert names == set(stage.function_names().values())
    tf_functions = packaged.tf("chalice.tf.json")["resource"]["aws_lambda_function"]
    assert {f["function_name"] for f in tf_functions.values()} == names
    groups = {r["Properties"]["LogGroupName"]: r for r in _of_type(template, "AWS::Logs::LogGroup").values()}
    assert set(groups) == {f"/aws/lambda/{name}" for name in names}
    assert {g["Properties"]["RetentionInDays"] for g in groups.values()} == {stage.log_retention_days}


def test_functions_take_stage_settings_and_the_secret_parameter(template, stage):
    for function in _of_type(template, "AWS::Serverless::Function").values():
        variables = function["Properties"]["Environment"]["Variables"]
        assert {k: v for k, v in variables.items() if k != "PAGINATION_TOKEN_SECRET"} == stage.environment
        assert variables["PAGINATION_TOKEN_SECRET"] == {"Ref": cfn_template.SECRET_PARAMETER}
        assert function["Properties"]["ReservedConcurrentExecutions"] >= 1
    assert template["Parameters"][cfn_template.SECRET_PARAMETER]["NoEcho"] is True


def test_api_stage_throttling_and_tracing_come_from_config(template, stage):
    api = template["Resources"][cfn_template.REST_API_ID]["Properties"]
    (settings,) = api["MethodSettings"]
    assert settings["ThrottlingRateLimit"] == stage.throttling.rate_limit
    assert settings["ThrottlingBurstLimit"] == stage.throttling.burst_limit
    assert api["TracingEnabled"] is stage.xray
    domain = template["Resources"][cfn_template.CUSTOM_DOMAIN_ID]["Properties"]
    assert domain["DomainName"] == stage.settings["api_gateway_custom_domain"]["domain_name"]


def test_alarms_watch_functions_api_and_tables(template, stage):
    alarms = _of_type(template, "AWS::CloudWatch::Alarm").values()
    watched = set()
    for alarm in alarms:
        properties = alarm["Properties"]
        if "MetricName" in properties:
            dimensions = {d["Name"]: d["Value"] for d in properties["Dimensions"]}
            watched.add((properties["MetricName"], json.dumps(dimensions, sort_keys=True)))
        else:
            for metric in properties["Metrics"]:
                if "MetricStat" in metric:
                    stat = metric["MetricStat"]["Metric"]
                    watched.add((stat["MetricName"], json.dumps(stat["Dimensions"][0]["Value"])))
    functions = {cfn_template.function_id(f) for f in stage.function_names()}
    for function in functions:
        assert ("Errors", json.dumps({"FunctionName": {"Ref": function}})) in watched
    api = {"ApiName": stage.app_name, "Stage": stage.api_stage_name}
    assert ("5XXError", json.dumps(api, sort_keys=True)) in watched
    for definition in ALL_TABLES:
        for metric in ("ReadThrottleEvents", "WriteThrottleEvents"):
            assert (metric, json.dumps({"Ref": cfn_template.table_id(definition)})) in watched


def test_outputs_give_api_url_and_table_names(template):
    outputs = template["Outputs"]
    assert "execute-api" in outputs["EndpointURL"]["Value"]["Fn::Sub"]
    assert outputs["ApiUrl"]["Value"] == {"Fn::Sub": f"https://${{{cfn_template.CUSTOM_DOMAIN_ID}}}/"}
    for definition in ALL_TABLES:
        table = cfn_template.table_id(definition)
        assert outputs[f"{table}Name"]["Value"] == {"Ref": table}


def test_prod_merge_template_switches_tracing_on():
    prod = Stage.load("prod")
    assert prod.xray
    merge = cfn_template.merge_template(prod)
    api = merge["Resources"][cfn_template.REST_API_ID]
    assert api["Properties"]["TracingEnabled"] is True
    role = merge["Resources"][cfn_template.role_id("api_handler")]
    statements = role["Properties"]["Policies"][0]["PolicyDocument"]["Statement"]
    assert any(s["Sid"] == "WriteTraces" for s in statements)


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
    runtime = lambda_layers.stage_runtime(stage)
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


def test_both_formats_run_every_function_on_the_stated_runtime_with_the_powertools_layer(
    template, packaged, stage
):
    layer = lambda_layers.powertools_layer(stage)  # checked against runtime and the pinned release
    runtime = lambda_layers.stage_runtime(stage)
    functions = _of_type(template, "AWS::Serverless::Function").values()
    assert len(functions) == len(stage.function_names())
    for function in functions:
        assert function["Properties"]["Runtime"] == runtime
        assert function["Properties"]["Layers"] == [layer.arn]
    tf_functions = packaged.tf("chalice.tf.json")["resource"]["aws_lambda_function"].values()
    assert len(tf_functions) == len(stage.function_names())
    for function in tf_functions:
        assert function["runtime"] == runtime
        assert function["layers"] == [layer.arn]


@pytest.mark.parametrize("name", ["dev", "prod"])
def test_each_deploy_stage_pins_the_layer_of_the_powertools_the_tests_use(name):
    layer = lambda_layers.powertools_layer(Stage.load(name))
    assert layer.region == "eu-west-3"  # the stages' region (see iot_playground/deploy/lambda_layers.py)
    assert lambda_layers.pinned_powertools() == importlib.metadata.version("aws-lambda-powertools")
    assert "aws-lambda-powertools" not in (ROOT / "requirements.txt").read_text()  # never vendored


def test_a_layer_for_another_python_or_release_is_refused():
    config = json.loads((ROOT / ".chalice" / "config.json").read_text())
    (arn,) = config["stages"]["dev"]["layers"]
    for wrong in (arn.replace("python311", "python312"), arn.rsplit(":", 1)[0] + ":39"):
        config["stages"]["dev"]["layers"] = [wrong]
        with pytest.raises(ValueError):
            lambda_layers.powertools_layer(Stage.load("dev", config))
    with pytest.raises(RuntimeError, match=re.escape("package with a python3.11 virtualenv")):
        lambda_layers.check_interpreter(Stage.load("dev"), "python3.12")


# ---- Terraform --------------------------------------------------------------


def test_tf_tables_are_the_module_definitions(packaged, stage):
    tables = packaged.tf("iot_playground.tf.json")["resource"]["aws_dynamodb_table"]
    assert set(tables) == {d.logical_name for d in ALL_TABLES}
    for definition in ALL_TABLES:
        block = tables[definition.logical_name]
        assert _create_request_from_tf(block) == _expected(definition, stage)
        assert block["point_in_time_recovery"] == {"enabled": True}
        assert block["server_side_encryption"] == {"enabled": True}
        if definition.ttl_attribute:
            assert block["ttl"] == {"attribute_name": definition.ttl_attribute, "enabled": True}


def test_tf_overrides_scope_roles_to_the_tables_and_add_the_secret(packaged, stage):
    chalice = packaged.tf("chalice.tf.json")["resource"]
    override = packaged.tf("iot_playground_override.tf.json")["resource"]
    extras = packaged.tf("iot_playground.tf.json")
    assert set(override["aws_iam_role_policy"]) == set(chalice["aws_iam_role_policy"])
    for role_policy in override["aws_iam_role_policy"].values():
        policy = role_policy["policy"]
        assert "arn:aws:dynamodb" not in policy
        for definition in ALL_TABLES:
            assert f"${{aws_dynamodb_table.{definition.logical_name}.arn}}" in policy
        assert "${aws_cloudwatch_log_group." in policy
    for key, function in override["aws_lambda_function"].items():
        variables = function["environment"]["variables"]
        assert variables["PAGINATION_TOKEN_SECRET"] == f"${{var.{SECRET_VARIABLE}}}"
        assert {k: v for k, v in variables.items() if k != "PAGINATION_TOKEN_SECRET"} == stage.environment
        assert key in chalice["aws_lambda_function"]
    assert extras["variable"][SECRET_VARIABLE]["sensitive"] is True
    settings = extras["resource"]["aws_api_gateway_method_settings"]["rest_api"]["settings"]
    assert settings["throttling_rate_limit"] == stage.throttling.rate_limit
    assert settings["throttling_burst_limit"] == stage.throttling.burst_limit
    groups = extras["resource"]["aws_cloudwatch_log_group"]
    assert {g["retention_in_days"] for g in groups.values()} == {stage.log_retention_days}
    assert (packaged.terraform / "deployment.zip").stat().st_size > 0


# ---- the reports bucket in both formats ---------------------------------------------

_TLS_ONLY = {"Bool": {"aws:SecureTransport": "false"}}


def _assert_tls_only(policy: dict[str, Any], bucket: Any, objects: Any) -> None:
    (statement,) = policy["Statement"]
    assert (statement["Effect"], statement["Principal"], statement["Action"]) == ("Deny", "*", "s3:*")
    assert statement["Resource"] == [bucket, objects] and statement["Condition"] == _TLS_ONLY


def test_cfn_reports_bucket_is_private_encrypted_tls_only_and_expires_downloads(template, stage):
    (bucket_id,) = _of_type(template, "AWS::S3::Bucket")
    assert bucket_id == cfn_template.REPORTS_BUCKET_ID
    properties = template["Resources"][bucket_id]["Properties"]
    assert (
        properties["BucketName"] == stage.app_settings.reports_bucket == stage.environment["REPORTS_BUCKET"]
    )
    (rule,) = properties["LifecycleConfiguration"]["Rules"]
    assert (rule["Status"], rule["ExpirationInDays"], rule["Prefix"]) == ("Enabled", 1, "")
    assert properties["PublicAccessBlockConfiguration"] == dict.fromkeys(
        ("BlockPublicAcls", "IgnorePublicAcls", "BlockPublicPolicy", "RestrictPublicBuckets"), True
    )
    (sse,) = properties["BucketEncryption"]["ServerSideEncryptionConfiguration"]
    assert sse["ServerSideEncryptionByDefault"]["SSEAlgorithm"] == "AES256"
    assert properties["OwnershipControls"]["Rules"] == [{"ObjectOwnership": "BucketOwnerEnforced"}]
    (policy,) = _of_type(template, "AWS::S3::BucketPolicy").values()
    assert policy["Properties"]["Bucket"] == {"Ref": bucket_id}
    _assert_tls_only(
        policy["Properties"]["PolicyDocument"],
        {"Fn::GetAtt": [bucket_id, "Arn"]},
        {"Fn::Sub": f"${{{bucket_id}.Arn}}/*"},
    )
    # The functions may put and get its objects, nothing else of S3, nowhere else.
    for role in _of_type(template, "AWS::IAM::Role").values():
        (role_policy,) = role["Properties"]["Policies"]
        s3 = [
            s
            for s in role_policy["PolicyDocument"]["Statement"]
            if any(a.startswith("s3:") for a in s["Action"])
        ]
        assert s3 == [
            {
                "Sid": "ReportObjects",
                "Effect": "Allow",
                "Action": ["s3:GetObject", "s3:PutObject"],
                "Resource": [{"Fn::Sub": f"${{{bucket_id}.Arn}}/*"}],
            }
        ]


def test_tf_reports_bucket_is_private_encrypted_tls_only_and_expires_downloads(packaged, stage):
    resources = packaged.tf("iot_playground.tf.json")["resource"]
    key = reports_bucket.LOGICAL_NAME
    bucket_ref, arn = f"${{aws_s3_bucket.{key}.id}}", f"${{aws_s3_bucket.{key}.arn}}"
    assert resources["aws_s3_bucket"][key]["bucket"] == stage.app_settings.reports_bucket
    (rule,) = resources["aws_s3_bucket_lifecycle_configuration"][key]["rule"]
    assert (
        rule["status"] == "Enabled" and rule["expiration"] == {"days": 1} and rule["filter"] == {"prefix": ""}
    )
    block = resources["aws_s3_bucket_public_access_block"][key]
    assert all(
        block[name] is True for name in ("block_public_acls", "ignore_public_acls", "block_public_policy")
    )
    assert block["restrict_public_buckets"] is True
    (sse,) = resources["aws_s3_bucket_server_side_encryption_configuration"][key]["rule"]
    assert sse["apply_server_side_encryption_by_default"] == {"sse_algorithm": "AES256"}
    ownership = resources["aws_s3_bucket_ownership_controls"][key]["rule"]
    assert ownership == {"object_ownership": "BucketOwnerEnforced"}
    policy = resources["aws_s3_bucket_policy"][key]
    _assert_tls_only(json.loads(policy["policy"]), arn, f"{arn}/*")
    for name in (
        "aws_s3_bucket_lifecycle_configuration",
        "aws_s3_bucket_public_access_block",
        "aws_s3_bucket_server_side_encryption_configuration",
        "aws_s3_bucket_policy",
    ):
        assert resources[name][key]["bucket"] == bucket_ref, name
    override = packaged.tf("iot_playground_override.tf.json")["resource"]
    for role_policy in override["aws_iam_role_policy"].values():
        statements = json.loads(role_policy["policy"])["Statement"]
        s3 = [s for s in statements if any(a.startswith("s3:") for a in s["Action"])]
        assert [(s["Action"], s["Resource"]) for s in s3] == [
            (["s3:GetObject", "s3:PutObject"], [f"{arn}/*"])
        ]


# ---- the public surface: admin key, gateway responses, alarms in both formats --------------

INTERRUPT_ALL = "/api/runs/interrupt-all"


def _key_required(swagger: dict[str, Any]) -> set[tuple[str, str]]:
    assert swagger["securityDefinitions"]["api_key"] == {
        "type": "apiKey",
        "name": "x-api-key",
        "in": "header",
    }
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


def test_cfn_admin_usage_plan_and_key_are_attached_to_the_stage(template, stage):
    plans = _of_type(template, "AWS::ApiGateway::UsagePlan")
    keys = _of_type(template, "AWS::ApiGateway::ApiKey")
    (plan_id,), (key_id,) = plans, keys
    plan = plans[plan_id]["Properties"]
    assert plan["UsagePlanName"] == guardrails.admin_name(stage)
    # SAM's reference to the stage it creates for the API (`api`).
    assert plan["ApiStages"] == [
        {"ApiId": {"Ref": cfn_template.REST_API_ID}, "Stage": {"Ref": f"{cfn_template.REST_API_ID}.Stage"}}
    ]
    assert template["Resources"][cfn_template.REST_API_ID]["Properties"]["StageName"] == stage.api_stage_name
    assert plan["Throttle"] == {"RateLimit": 1.0, "BurstLimit": 2}
    assert keys[key_id]["Properties"]["Enabled"] is True
    (member,) = _of_type(template, "AWS::ApiGateway::UsagePlanKey").values()
    assert member["Properties"] == {
        "KeyId": {"Ref": key_id},
        "KeyType": "API_KEY",
        "UsagePlanId": {"Ref": plan_id},
    }
    assert template["Outputs"]["AdminApiKeyId"]["Value"] == {"Ref": key_id}


def test_tf_admin_usage_plan_and_key_are_attached_to_the_stage(packaged, stage):
    resources = packaged.tf("iot_playground.tf.json")["resource"]
    (plan,) = resources["aws_api_gateway_usage_plan"].values()
    assert plan["name"] == guardrails.admin_name(stage)
    assert plan["api_stages"] == [
        {
            "api_id": "${aws_api_gateway_rest_api.rest_api.id}",
            "stage": "${aws_api_gateway_deployment.rest_api.stage_name}",
        }
    ]
    chalice = packaged.tf("chalice.tf.json")["resource"]
    assert chalice["aws_api_gateway_deployment"]["rest_api"]["stage_name"] == stage.api_stage_name
    assert plan["throttle_settings"] == {"rate_limit": 1.0, "burst_limit": 2}
    (key,) = resources["aws_api_gateway_api_key"].values()
    assert key["enabled"] is True
    (member,) = resources["aws_api_gateway_usage_plan_key"].values()
    assert member == {
        "key_id": "${aws_api_gateway_api_key.admin.id}",
        "key_type": "API_KEY",
        "usage_plan_id": "${aws_api_gateway_usage_plan.admin.id}",
    }
    output = packaged.tf("iot_playground.tf.json")["output"]["admin_api_key_id"]
    assert output["value"] == "${aws_api_gateway_api_key.admin.id}"


# What API Gateway itself answers, and the status each must have (None: its own).
EXPECTED_RESPONSES = {
    "INVALID_API_KEY": ("403", "Forbidden"),
    "MISSING_AUTHENTICATION_TOKEN": ("404", "NotFound"),
    "THROTTLED": ("429", "TooManyRequests"),
    "REQUEST_TOO_LARGE": ("413", "PayloadTooLarge"),
    "UNSUPPORTED_MEDIA_TYPE": ("415", "UnsupportedMediaType"),
    "DEFAULT_4XX": (None, "RequestRefused"),
    "DEFAULT_5XX": (None, "InternalError"),
}


def _render(template_text: str) -> Any:
    """A gateway response body as API Gateway fills it in: `messageString` is a quoted string."""
    body = template_text.replace("$context.error.messageString", json.dumps('Forbidden "quoted"'))
    return json.loads(body.replace("$context.error.responseType", "ACCESS_DENIED"))


def _check_response(
    response_type: str, status: str | None, templates: dict[str, str], headers: dict[str, str], stage
):
    expected_status, code = EXPECTED_RESPONSES[response_type]
    assert status == expected_status, response_type
    body = _render(templates["application/json"])
    assert body["error"] == code and isinstance(body["message"], str) and body["message"], response_type
    assert headers["Access-Control-Allow-Origin"] == f"'{stage.environment['CORS_ORIGIN']}'"
    if response_type == "THROTTLED":
        assert headers["Retry-After"] == "'1'"


def test_cfn_gateway_responses_answer_json_with_cors(template, stage):
    responses = template["Resources"][cfn_template.REST_API_ID]["Properties"]["GatewayResponses"]
    assert set(responses) == set(EXPECTED_RESPONSES)
    for response_type, response in responses.items():
        headers = response["ResponseParameters"]["Headers"]
        _check_response(
            response_type, response.get("StatusCode"), response["ResponseTemplates"], headers, stage
        )
    invalid_key = _render(responses["INVALID_API_KEY"]["ResponseTemplates"]["application/json"])
    assert invalid_key == {"error": "Forbidden", "message": admin_key.MESSAGE}  # as the local stage answers


def test_tf_gateway_responses_answer_json_with_cors_and_redeploy_the_api(packaged, stage):
    responses = packaged.tf("iot_playground.tf.json")["resource"]["aws_api_gateway_gateway_response"]
    assert {r["response_type"] for r in responses.values()} == set(EXPECTED_RESPONSES)
    prefix = "gatewayresponse.header."
    for response in responses.values():
        assert response["rest_api_id"] == "${aws_api_gateway_rest_api.rest_api.id}"
        headers = {k.removeprefix(prefix): v for k, v in response["response_parameters"].items()}
        assert all(k.startswith(prefix) for k in response["response_parameters"])
        _check_response(
            response["response_type"],
            response.get("status_code"),
            response["response_templates"],
            headers,
            stage,
        )
    # Gateway responses take effect on a deployment: the deployment follows them.
    override = packaged.tf("iot_playground_override.tf.json")["resource"]
    trigger = override["aws_api_gateway_deployment"]["rest_api"]["stage_description"]
    assert "local.chalice_api_swagger" in trigger and guardrails.gateway_responses_digest(stage) in trigger
    for name in responses:
        assert f"aws_api_gateway_gateway_response.{name}.id" in trigger


def test_both_formats_hold_the_same_alarms(template, packaged):
    cfn = {
        r["Properties"]["AlarmName"]: r["Properties"]
        for r in _of_type(template, "AWS::CloudWatch::Alarm").values()
    }
    tf = {
        a["alarm_name"]: a
        for a in packaged.tf("iot_playground.tf.json")["resource"]["aws_cloudwatch_metric_alarm"].values()
    }
    assert set(cfn) == set(tf) and len(cfn) == 5
    for name, properties in cfn.items():
        assert tf[name]["threshold"] == properties["Threshold"]
        if "MetricName" in properties:
            assert tf[name]["metric_name"] == properties["MetricName"]
        else:
            metrics = [
                q["MetricStat"]["Metric"]["MetricName"] for q in properties["Metrics"] if "MetricStat" in q
            ]
            assert [q["metric"]["metric_name"] for q in tf[name]["metric_query"] if "metric" in q] == metrics


@pytest.mark.parametrize("name", ["dev", "prod"])
def test_every_stage_gets_its_own_admin_plan_and_key_in_both_formats(packaged, name):
    stage = Stage.load(name)
    merge = cfn_template.merge_template(stage)["Resources"]
    plan = merge[cfn_template.ADMIN_USAGE_PLAN_ID]["Properties"]
    assert plan["UsagePlanName"] == f"iot-playground-{name}-admin"
    assert plan["ApiStages"] == [{"ApiId": {"Ref": "RestAPI"}, "Stage": {"Ref": "RestAPI.Stage"}}]
    assert merge[cfn_template.ADMIN_API_KEY_ID]["Properties"]["Name"] == f"iot-playground-{name}-admin"
    # The functions of Chalice's Terraform are the same in every stage (their names differ).
    tf = tf_template.extras(stage, packaged.tf("chalice.tf.json"))["resource"]
    assert tf["aws_api_gateway_usage_plan"]["admin"]["name"] == f"iot-playground-{name}-admin"
    assert tf["aws_api_gateway_api_key"]["admin"]["name"] == f"iot-playground-{name}-admin"
    origin = stage.environment["CORS_ORIGIN"]
    for response in tf["aws_api_gateway_gateway_response"].values():
        assert (
            response["response_parameters"]["gatewayresponse.header.Access-Control-Allow-Origin"]
            == f"'{origin}'"
        )
