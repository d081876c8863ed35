"""The CloudFormation merge template `chalice package --merge-template` applies.

Chalice's template has the functions, roles, log groups and the API. This adds
what Chalice does not generate (the tables, the reports bucket, and from `guardrails.py` the stage
throttling, the admin usage plan and key, gateway responses and alarms; outputs)
and replaces the roles' policies with the same statements as
`.chalice/policy-<stage>.json`, but naming the tables and log groups through
`Fn::GetAtt` on the stack's own resources. The checkov findings accepted for
this template and the Terraform output alike are in `.checkov.yaml`, with reasons.
"""

from __future__ import annotations

from typing import Any

from chalice.utils import to_cfn_resource_name

from chalicelib.tables import ALL_TABLES, TableDefinition
from iot_playground.common.stages import Stage, app_function_names
from iot_playground.deploy import guardrails, reports_bucket
from iot_playground.deploy.iam import Resources, policy_document

# Chalice's fixed logical ids in its SAM template.
API_HANDLER = "api_handler"
API_HANDLER_FUNCTION_ID = "APIHandler"
REST_API_ID = "RestAPI"
CUSTOM_DOMAIN_ID = "ApiGatewayCustomDomain"
SECRET_PARAMETER = "PaginationTokenSecret"
ALARM_TOPIC_PARAMETER = "AlarmTopicArn"
HAS_ALARM_TOPIC = "HasAlarmTopic"
ADMIN_USAGE_PLAN_ID = "AdminUsagePlan"
ADMIN_API_KEY_ID = "AdminApiKey"
ADMIN_USAGE_PLAN_KEY_ID = "AdminUsagePlanKey"
REPORTS_BUCKET_ID = "ReportsBucket"
REPORTS_BUCKET_POLICY_ID = "ReportsBucketPolicy"
_REPORTS_BUCKET_ARN = {"Fn::GetAtt": [REPORTS_BUCKET_ID, "Arn"]}
_REPORT_OBJECTS_ARN = {"Fn::Sub": f"${{{REPORTS_BUCKET_ID}.Arn}}/*"}

SECRET_DESCRIPTION = "Signs the API's pagination tokens (PAGINATION_TOKEN_SECRET); any random string"
Template = dict[str, Any]


def table_id(definition: TableDefinition) -> str:
    return to_cfn_resource_name(f"{definition.logical_name}_table")


def function_id(function: str) -> str:
    return API_HANDLER_FUNCTION_ID if function == API_HANDLER else to_cfn_resource_name(function)


def role_id(function: str) -> str:
    return to_cfn_resource_name(f"{function}_role")


def log_group_id(function: str) -> str:
    return to_cfn_resource_name(f"{function}-log-group")


def table_properties(definition: TableDefinition, table_name: str) -> dict[str, Any]:
    """AWS::DynamoDB::Table properties: CreateTable's request plus the safeguards."""
    properties = dict(definition.create_table_request(table_name))
    if definition.ttl_attribute:
        properties["TimeToLiveSpecification"] = {"AttributeName": definition.ttl_attribute, "Enabled": True}
    properties["PointInTimeRecoverySpecification"] = {"PointInTimeRecoveryEnabled": True}
    # SSEEnabled without a key id = the AWS-managed KMS key, as `make tables` sets.
    properties["SSESpecification"] = {"SSEEnabled": True}
    return properties


def _table_resource(definition: TableDefinition, table_name: str) -> dict[str, Any]:
    return {
        "Type": "AWS::DynamoDB::Table",
        # Data outlives the stack: deleting or replacing the stack keeps the table.
        "DeletionPolicy": "Retain",
        "UpdateReplacePolicy": "Retain",
        "Properties": table_properties(definition, table_name),
    }


def _stack_resources(functions: list[str]) -> Resources:
    return Resources(
        table=lambda definition: {"Fn::GetAtt": [table_id(definition), "Arn"]},
        index=lambda definition: {"Fn::Sub": f"${{{table_id(definition)}.Arn}}/index/*"},
        log_groups=lambda: [{"Fn::GetAtt": [log_group_id(function), "Arn"]} for function in functions],
        report_objects=lambda: _REPORT_OBJECTS_ARN,
    )


def reports_bucket_resources(bucket_name: str) -> dict[str, Any]:
    """The reports bucket and its TLS-only policy (see iot_playground/deploy/reports_bucket.py)."""
    lifecycle = [
        {
            "Id": rule["ID"],
            "Status": rule["Status"],
            "Prefix": rule["Filter"]["Prefix"],
            "ExpirationInDays": rule["Expiration"]["Days"],
            "AbortIncompleteMultipartUpload": {
                "DaysAfterInitiation": rule["AbortIncompleteMultipartUpload"]["DaysAfterInitiation"]
            },
        }
        for rule in reports_bucket.LIFECYCLE_RULES
    ]
    # CloudFormation's name for S3's MaxAgeSeconds.
    cors = [
        {("MaxAge" if key == "MaxAgeSeconds" else key): value for key, value in rule.items()}
        for rule in reports_bucket.CORS_RULES
    ]
    return {
        REPORTS_BUCKET_ID: {
            "Type": "AWS::S3::Bucket",
            # Only downloads of the last day live here: the stack may take the bucket with it.
            "DeletionPolicy": "Delete",
            "UpdateReplacePolicy": "Delete",
            "Properties": {
                "BucketName": bucket_name,
                "PublicAccessBlockConfiguration": reports_bucket.PUBLIC_ACCESS_BLOCK,
                "OwnershipControls": {"Rules": [{"ObjectOwnership": reports_bucket.OBJECT_OWNERSHIP}]},
                "BucketEncryption": {
                    "ServerSideEncryptionConfiguration": [
                        {"ServerSideEncryptionByDefault": {"SSEAlgorithm": reports_bucket.SSE_ALGORITHM}}
                    ]
                },
                "LifecycleConfiguration": {"Rules": lifecycle},
                "CorsConfiguration": {"CorsRules": cors},
            },
        },
        REPORTS_BUCKET_POLICY_ID: {
            "Type": "AWS::S3::BucketPolicy",
            "Properties": {
                "Bucket": {"Ref": REPORTS_BUCKET_ID},
                "PolicyDocument": reports_bucket.tls_only_policy(_REPORTS_BUCKET_ARN, _REPORT_OBJECTS_ARN),
            },
        },
    }


def alarms(stage: Stage, functions: list[str]) -> dict[str, Any]:
    names = guardrails.Names(
        function=lambda function: {"Ref": function_id(function)},
        table=lambda definition: {"Ref": table_id(definition)},
    )
    actions = {"Fn::If": [HAS_ALARM_TOPIC, [{"Ref": ALARM_TOPIC_PARAMETER}], {"Ref": "AWS::NoValue"}]}
    return {
        alarm.key: {
            "Type": "AWS::CloudWatch::Alarm",
            "Properties": guardrails.alarm_properties(alarm, names, actions),
        }
        for alarm in guardrails.alarms(stage, functions, function_id, table_id)
    }


def admin_key_resources(stage: Stage) -> dict[str, Any]:
    """The admin usage plan on the API's stage, its key, and the key's membership."""
    name = guardrails.admin_name(stage)
    return {
        ADMIN_USAGE_PLAN_ID: {
            "Type": "AWS::ApiGateway::UsagePlan",
            "Properties": {
                "UsagePlanName": name,
                "Description": guardrails.admin_description(stage),
                # `<Api>.Stage` is SAM's reference to the stage it creates: the plan waits for it.
                "ApiStages": [{"ApiId": {"Ref": REST_API_ID}, "Stage": {"Ref": f"{REST_API_ID}.Stage"}}],
                "Throttle": {
                    "RateLimit": guardrails.ADMIN_THROTTLE.rate_limit,
                    "BurstLimit": guardrails.ADMIN_THROTTLE.burst_limit,
                },
            },
        },
        ADMIN_API_KEY_ID: {
            "Type": "AWS::ApiGateway::ApiKey",
            "Properties": {"Name": name, "Description": guardrails.admin_description(stage), "Enabled": True},
        },
        ADMIN_USAGE_PLAN_KEY_ID: {
            "Type": "AWS::ApiGateway::UsagePlanKey",
            "Properties": {
                "KeyId": {"Ref": ADMIN_API_KEY_ID},
                "KeyType": "API_KEY",
                "UsagePlanId": {"Ref": ADMIN_USAGE_PLAN_ID},
            },
        },
    }


def gateway_responses(stage: Stage) -> dict[str, Any]:
    """SAM's `GatewayResponses` of the API: SAM writes them into the OpenAPI document, so
    they are part of the deployment (a gateway response changed outside it needs a new one)."""
    responses: dict[str, Any] = {}
    for response in guardrails.GATEWAY_RESPONSES:
        block: dict[str, Any] = {
            "ResponseParameters": {"Headers": guardrails.response_headers(stage, response)},
            "ResponseTemplates": {guardrails.JSON_TYPE: response.template()},
        }
        if response.status_code is not None:
            block["StatusCode"] = response.status_code
        responses[response.response_type] = block
    return responses


def merge_template(stage: Stage) -> Template:
    functions = [API_HANDLER, *app_function_names()]
    # The names `chalice deploy` gives, so every way of deploying a stage names it alike.
    function_names = stage.function_names()
    settings = stage.app_settings
    policy = policy_document(stage, _stack_resources(functions))
    resources: dict[str, Any] = {}
    for definition in ALL_TABLES:
        resources[table_id(definition)] = _table_resource(definition, definition.table_name(settings))
    resources.update(reports_bucket_resources(settings.reports_bucket))
    for function in functions:
        resources[role_id(function)] = {
            "Properties": {
                "Policies": [{"PolicyName": f"{role_id(function)}Policy", "PolicyDocument": policy}]
            }
        }
        resources[function_id(function)] = {
            "Properties": {
                "FunctionName": function_names[function],
                "Environment": {"Variables": {"PAGINATION_TOKEN_SECRET": {"Ref": SECRET_PARAMETER}}},
            },
        }
        resources[log_group_id(function)] = {
            # Named, not derived from the function: the role grants on the group and the
            # function needs the role, so `/aws/lambda/${Function}` would be a cycle.
            "Properties": {"LogGroupName": f"/aws/lambda/{function_names[function]}"},
        }
    throttling = stage.throttling
    resources[REST_API_ID] = {
        "Properties": {
            "TracingEnabled": stage.xray,
            "GatewayResponses": gateway_responses(stage),
            "MethodSettings": [
                {
                    "ResourcePath": "/*",
                    "HttpMethod": "*",
                    "ThrottlingRateLimit": throttling.rate_limit,
                    "ThrottlingBurstLimit": throttling.burst_limit,
                    "MetricsEnabled": True,
                }
            ],
        },
    }
    resources.update(alarms(stage, functions))
    resources.update(admin_key_resources(stage))
    return {
        "Parameters": {
            SECRET_PARAMETER: {
                "Type": "String",
                "NoEcho": True,
                "MinLength": 32,
                "Description": SECRET_DESCRIPTION,
            },
            ALARM_TOPIC_PARAMETER: {
                "Type": "String",
                "Default": "",
                "Description": "SNS topic ARN the alarms notify; empty for none",
            },
        },
        "Conditions": {HAS_ALARM_TOPIC: {"Fn::Not": [{"Fn::Equals": [{"Ref": ALARM_TOPIC_PARAMETER}, ""]}]}},
        "Resources": resources,
        "Outputs": _outputs(stage),
    }


def _outputs(stage: Stage) -> dict[str, Any]:
    """Beside Chalice's own EndpointURL (the execute-api URL, usable at once)."""
    outputs: dict[str, Any] = {}
    if stage.settings.get("api_gateway_custom_domain"):
        outputs["ApiUrl"] = {
            "Description": "The API on its custom domain, once DNS points at RegionalDomainName",
            "Value": {"Fn::Sub": f"https://${{{CUSTOM_DOMAIN_ID}}}/"},
        }
        outputs["RegionalDomainName"] = {
            "Description": "Target of the custom domain's DNS CNAME/alias record",
            "Value": {"Fn::GetAtt": [CUSTOM_DOMAIN_ID, "RegionalDomainName"]},
        }
    outputs["AdminApiKeyId"] = {
        "Description": "The admin API key (x-api-key of interrupt-all): "
        "aws apigateway get-api-key --include-value --api-key <this id>",
        "Value": {"Ref": ADMIN_API_KEY_ID},
    }
    for definition in ALL_TABLES:
        outputs[f"{table_id(definition)}Name"] = {
            "Description": f"The {definition.logical_name} table",
            "Value": {"Ref": table_id(definition)},
        }
    outputs[f"{REPORTS_BUCKET_ID}Name"] = {
        "Description": "The bucket of downloads too large for a Lambda response",
        "Value": {"Ref": REPORTS_BUCKET_ID},
    }
    return outputs
