"""Terraform files written beside `chalice package --pkg-format terraform`'s output.

Chalice's Terraform has no merge template and no log groups, so two generated
files complete it in the same folder:

- `iot_playground.tf.json`: the tables (from `chalicelib.tables`), the reports
  bucket (from `reports_bucket.py`), the log
  groups with the stage's retention, and from `guardrails.py` the API stage's
  throttling, the admin usage plan and key, the gateway responses and the alarms;
  the secret and alarm-topic variables and the outputs;
- `iot_playground_override.tf.json`: a Terraform override file that gives the
  roles the stage's policy with the tables and log groups referenced by their
  resources, adds the pagination secret to the functions' environment, and makes
  the API deployment follow the gateway responses (they take effect on deployment).
"""

from __future__ import annotations

import json
from typing import Any

from chalicelib.tables import ALL_TABLES, TableDefinition
from iot_playground.common.stages import Stage
from iot_playground.deploy import guardrails, reports_bucket
from iot_playground.deploy.cfn_template import SECRET_DESCRIPTION
from iot_playground.deploy.iam import Resources, policy_document

SECRET_VARIABLE = "pagination_token_secret"
ALARM_TOPIC_VARIABLE = "alarm_topic_arn"
REST_API = "${aws_api_gateway_rest_api.rest_api.id}"
API_STAGE = "${aws_api_gateway_deployment.rest_api.stage_name}"
_ACCOUNT = "${data.aws_caller_identity.chalice.account_id}"
_REGION = "${data.aws_region.chalice.name}"
_PARTITION = "${data.aws_partition.chalice.partition}"

Document = dict[str, Any]


def table_resource(definition: TableDefinition, table_name: str) -> dict[str, Any]:
    """aws_dynamodb_table arguments equivalent to `definition.create_table_request`."""
    request = definition.create_table_request(table_name)
    keys = {key["KeyType"]: key["AttributeName"] for key in request["KeySchema"]}
    resource: dict[str, Any] = {
        "name": table_name,
        "billing_mode": request["BillingMode"],
        "hash_key": keys["HASH"],
        "attribute": [
            {"name": a["AttributeName"], "type": a["AttributeType"]} for a in request["AttributeDefinitions"]
        ],
    }
    if "RANGE" in keys:
        resource["range_key"] = keys["RANGE"]
    indexes = []
    for index in request.get("GlobalSecondaryIndexes", []):
        index_keys = {key["KeyType"]: key["AttributeName"] for key in index["KeySchema"]}
        block = {
            "name": index["IndexName"],
            "hash_key": index_keys["HASH"],
            "projection_type": index["Projection"]["ProjectionType"],
        }
        if "RANGE" in index_keys:
            block["range_key"] = index_keys["RANGE"]
        indexes.append(block)
    if indexes:
        resource["global_secondary_index"] = indexes
    if definition.ttl_attribute:
        resource["ttl"] = {"attribute_name": definition.ttl_attribute, "enabled": True}
    resource["point_in_time_recovery"] = {"enabled": True}
    resource["server_side_encryption"] = {"enabled": True}
    # Data outlives the stack: `terraform destroy` stops here rather than delete a table.
    resource["lifecycle"] = {"prevent_destroy": True}
    return resource


_BUCKET = f"${{aws_s3_bucket.{reports_bucket.LOGICAL_NAME}.id}}"
_BUCKET_ARN = f"${{aws_s3_bucket.{reports_bucket.LOGICAL_NAME}.arn}}"
_SSE = reports_bucket.SSE_ALGORITHM


def reports_bucket_resources(bucket_name: str) -> dict[str, Any]:
    """The reports bucket and its settings, one resource each as the AWS provider wants them
    (see iot_playground/deploy/reports_bucket.py)."""
    key = reports_bucket.LOGICAL_NAME
    rules = [
        {
            "id": rule["ID"],
            "status": rule["Status"],
            "filter": {"prefix": rule["Filter"]["Prefix"]},
            "expiration": {"days": rule["Expiration"]["Days"]},
            "abort_incomplete_multipart_upload": {
                "days_after_initiation": rule["AbortIncompleteMultipartUpload"]["DaysAfterInitiation"]
            },
        }
        for rule in reports_bucket.LIFECYCLE_RULES
    ]
    cors = [
        {
            "allowed_methods": rule["AllowedMethods"],
            "allowed_origins": rule["AllowedOrigins"],
            "allowed_headers": rule["AllowedHeaders"],
            "max_age_seconds": rule["MaxAgeSeconds"],
        }
        for rule in reports_bucket.CORS_RULES
    ]
    block = reports_bucket.PUBLIC_ACCESS_BLOCK
    policy = reports_bucket.tls_only_policy(_BUCKET_ARN, f"{_BUCKET_ARN}/*")
    return {
        # Only downloads of the last day live here: `terraform destroy` may empty it.
        "aws_s3_bucket": {key: {"bucket": bucket_name, "force_destroy": True}},
        "aws_s3_bucket_public_access_block": {
            key: {
                "bucket": _BUCKET,
                "block_public_acls": block["BlockPublicAcls"],
                "ignore_public_acls": block["IgnorePublicAcls"],
                "block_public_policy": block["BlockPublicPolicy"],
                "restrict_public_buckets": block["RestrictPublicBuckets"],
            }
        },
        "aws_s3_bucket_ownership_controls": {
            key: {"bucket": _BUCKET, "rule": {"object_ownership": reports_bucket.OBJECT_OWNERSHIP}}
        },
        "aws_s3_bucket_server_side_encryption_configuration": {
            key: {
                "bucket": _BUCKET,
                "rule": [{"apply_server_side_encryption_by_default": {"sse_algorithm": _SSE}}],
            }
        },
        "aws_s3_bucket_lifecycle_configuration": {key: {"bucket": _BUCKET, "rule": rules}},
        "aws_s3_bucket_cors_configuration": {key: {"bucket": _BUCKET, "cors_rule": cors}},
        "aws_s3_bucket_policy": {
            key: {
                "bucket": _BUCKET,
                "policy": json.dumps(policy),
                # S3 refuses a bucket policy while the public access block is being set.
                "depends_on": [f"aws_s3_bucket_public_access_block.{key}"],
            }
        },
    }


def _functions(chalice_tf: Document) -> dict[str, dict[str, Any]]:
    functions: dict[str, dict[str, Any]] = chalice_tf["resource"]["aws_lambda_function"]
    return functions


def gateway_response_key(response: guardrails.GatewayResponse) -> str:
    return response.response_type.lower()


def gateway_responses(stage: Stage) -> dict[str, Any]:
    resources: dict[str, Any] = {}
    for response in guardrails.GATEWAY_RESPONSES:
        block: dict[str, Any] = {
            "rest_api_id": REST_API,
            "response_type": response.response_type,
            "response_templates": {guardrails.JSON_TYPE: response.template()},
            "response_parameters": guardrails.response_parameters(stage, response),
        }
        if response.status_code is not None:
            block["status_code"] = response.status_code
        resources[gateway_response_key(response)] = block
    return resources


def admin_key_resources(stage: Stage) -> dict[str, Any]:
    name = guardrails.admin_name(stage)
    return {
        "aws_api_gateway_usage_plan": {
            "admin": {
                "name": name,
                "description": guardrails.admin_description(stage),
                "api_stages": [{"api_id": REST_API, "stage": API_STAGE}],
                "throttle_settings": {
                    "rate_limit": guardrails.ADMIN_THROTTLE.rate_limit,
                    "burst_limit": guardrails.ADMIN_THROTTLE.burst_limit,
                },
            }
        },
        "aws_api_gateway_api_key": {
            "admin": {"name": name, "description": guardrails.admin_description(stage), "enabled": True}
        },
        "aws_api_gateway_usage_plan_key": {
            "admin": {
                "key_id": "${aws_api_gateway_api_key.admin.id}",
                "key_type": "API_KEY",
                "usage_plan_id": "${aws_api_gateway_usage_plan.admin.id}",
            }
        },
    }


def alarm_key(stage: Stage, alarm: guardrails.Alarm) -> str:
    return alarm.name.removeprefix(f"{stage.app_name}-{stage.name}-").replace("-", "_")


def _alarm_resource(properties: dict[str, Any]) -> dict[str, Any]:
    """aws_cloudwatch_metric_alarm arguments from PutMetricAlarm's parameters."""

    def dimensions(metric: dict[str, Any]) -> dict[str, Any]:
        return {d["Name"]: d["Value"] for d in metric["Dimensions"]}

    resource: dict[str, Any] = {
        "alarm_name": properties["AlarmName"],
        "alarm_description": properties["AlarmDescription"],
        "comparison_operator": properties["ComparisonOperator"],
        "evaluation_periods": properties["EvaluationPeriods"],
        "threshold": properties["Threshold"],
        "treat_missing_data": properties["TreatMissingData"],
        "alarm_actions": properties["AlarmActions"],
        "ok_actions": properties["OKActions"],
    }
    if "Metrics" not in properties:
        resource.update(
            {
                "namespace": properties["Namespace"],
                "metric_name": properties["MetricName"],
                "dimensions": dimensions(properties),
                "statistic": properties["Statistic"],
                "period": properties["Period"],
            }
        )
        return resource
    queries = []
    for query in properties["Metrics"]:
        block: dict[str, Any] = {"id": query["Id"], "return_data": query["ReturnData"]}
        if "Expression" in query:
            block.update({"expression": query["Expression"], "label": query["Label"]})
        else:
            stat = query["MetricStat"]
            block["metric"] = {
                "namespace": stat["Metric"]["Namespace"],
                "metric_name": stat["Metric"]["MetricName"],
                "dimensions": dimensions(stat["Metric"]),
                "period": stat["Period"],
                "stat": stat["Stat"],
            }
        queries.append(block)
    resource["metric_query"] = queries
    return resource


def alarms(stage: Stage, chalice_tf: Document) -> dict[str, Any]:
    functions = list(_functions(chalice_tf))
    names = guardrails.Names(
        function=lambda function: f"${{aws_lambda_function.{function}.function_name}}",
        table=lambda definition: f"${{aws_dynamodb_table.{definition.logical_name}.name}}",
    )
    actions = f"${{compact([var.{ALARM_TOPIC_VARIABLE}])}}"
    return {
        alarm_key(stage, alarm): _alarm_resource(guardrails.alarm_properties(alarm, names, actions))
        for alarm in guardrails.alarms(stage, functions, str, lambda definition: definition.logical_name)
    }


def extras(stage: Stage, chalice_tf: Document) -> Document:
    settings = stage.app_settings
    throttling = stage.throttling
    resources: dict[str, Any] = {
        "aws_dynamodb_table": {
            definition.logical_name: table_resource(definition, definition.table_name(settings))
            for definition in ALL_TABLES
        },
        "aws_api_gateway_method_settings": {
            "rest_api": {
                "rest_api_id": REST_API,
                "stage_name": API_STAGE,
                "method_path": "*/*",
                "settings": {
                    "throttling_rate_limit": throttling.rate_limit,
                    "throttling_burst_limit": throttling.burst_limit,
                    "metrics_enabled": True,
                },
            }
        },
    }
    resources.update(reports_bucket_resources(settings.reports_bucket))
    resources["aws_api_gateway_gateway_response"] = gateway_responses(stage)
    resources.update(admin_key_resources(stage))
    resources["aws_cloudwatch_metric_alarm"] = alarms(stage, chalice_tf)
    if stage.log_retention_days is not None:
        resources["aws_cloudwatch_log_group"] = {
            key: {
                "name": f"/aws/lambda/{function['function_name']}",
                "retention_in_days": stage.log_retention_days,
            }
            for key, function in _functions(chalice_tf).items()
        }
    return {
        "variable": {
            SECRET_VARIABLE: {
                "type": "string",
                "sensitive": True,
                "description": SECRET_DESCRIPTION,
            },
            ALARM_TOPIC_VARIABLE: {
                "type": "string",
                "default": "",
                "description": "SNS topic ARN the alarms notify; empty for none",
            },
        },
        "resource": resources,
        "output": {
            "admin_api_key_id": {
                "description": "The admin API key (x-api-key of interrupt-all): "
                "aws apigateway get-api-key --include-value --api-key <this id>",
                "value": "${aws_api_gateway_api_key.admin.id}",
            },
            **{
                f"{definition.logical_name}_table_name": {
                    "value": f"${{aws_dynamodb_table.{definition.logical_name}.name}}"
                }
                for definition in ALL_TABLES
            },
            "reports_bucket_name": {"value": _BUCKET},
        },
    }


def deployment_trigger(stage: Stage) -> str:
    """Chalice's deployment takes `md5(swagger)` as stage description, so that a new API
    definition is deployed (the attribute forces a new deployment). Gateway responses take
    effect on a deployment too: their digest joins in (a new deployment when one changes),
    and their ids, so that the deployment comes after them."""
    ids = ", ".join(
        f"aws_api_gateway_gateway_response.{gateway_response_key(r)}.id" for r in guardrails.GATEWAY_RESPONSES
    )
    digest = guardrails.gateway_responses_digest(stage)
    return f'${{md5(join(",", [local.chalice_api_swagger, "{digest}", {ids}]))}}'


def overrides(stage: Stage, chalice_tf: Document) -> Document:
    functions = _functions(chalice_tf)

    def log_groups() -> list[Any]:
        if stage.log_retention_days is None:
            names = [f"/aws/lambda/{function['function_name']}" for function in functions.values()]
        else:
            names = [f"${{aws_cloudwatch_log_group.{key}.name}}" for key in functions]
        return [f"arn:{_PARTITION}:logs:{_REGION}:{_ACCOUNT}:log-group:{name}:*" for name in names]

    resources = Resources(
        table=lambda definition: f"${{aws_dynamodb_table.{definition.logical_name}.arn}}",
        index=lambda definition: f"${{aws_dynamodb_table.{definition.logical_name}.arn}}/index/*",
        log_groups=log_groups,
        report_objects=lambda: f"{_BUCKET_ARN}/*",
    )
    policy = json.dumps(policy_document(stage, resources))
    return {
        "resource": {
            "aws_api_gateway_deployment": {"rest_api": {"stage_description": deployment_trigger(stage)}},
            # A replaced API (a new endpoint type, say) comes up before the old one goes.
            "aws_api_gateway_rest_api": {"rest_api": {"lifecycle": {"create_before_destroy": True}}},
            "aws_iam_role_policy": {
                name: {"policy": policy} for name in chalice_tf["resource"]["aws_iam_role_policy"]
            },
            "aws_lambda_function": {
                key: {
                    "environment": {
                        "variables": {
                            **function["environment"]["variables"],
                            "PAGINATION_TOKEN_SECRET": f"${{var.{SECRET_VARIABLE}}}",
                        }
                    }
                }
                for key, function in functions.items()
            },
        }
    }
