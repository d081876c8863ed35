"""Terraform files written beside `chalice package --pkg-format terraform`'s output.

Chalice's Terraform has no merge template and no log groups, so two generated
files complete it in the same folder:

- `iot_playground.tf.json`: the tables (from `chalicelib.tables`), the log
  groups with the stage's retention, the API stage's throttling, the secret
  variable and the table outputs;
- `iot_playground_override.tf.json`: a Terraform override file that gives the
  roles the stage's policy with the tables and log groups referenced by their
  resources, and adds the pagination secret to the functions' environment.
"""

from __future__ import annotations

import json
from typing import Any

from chalicelib.tables import ALL_TABLES, TableDefinition
from iot_playground.cfn_template import SECRET_DESCRIPTION
from iot_playground.iam import Resources, policy_document
from iot_playground.stages import Stage

SECRET_VARIABLE = "pagination_token_secret"
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


def _functions(chalice_tf: Document) -> dict[str, dict[str, Any]]:
    functions: dict[str, dict[str, Any]] = chalice_tf["resource"]["aws_lambda_function"]
    return functions


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
                "rest_api_id": "${aws_api_gateway_rest_api.rest_api.id}",
                "stage_name": "${aws_api_gateway_deployment.rest_api.stage_name}",
                "method_path": "*/*",
                "settings": {
                    "throttling_rate_limit": throttling.rate_limit,
                    "throttling_burst_limit": throttling.burst_limit,
                    "metrics_enabled": True,
                },
            }
        },
    }
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
            }
        },
        "resource": resources,
        "output": {
            f"{definition.logical_name}_table_name": {
                "value": f"${{aws_dynamodb_table.{definition.logical_name}.name}}"
            }
            for definition in ALL_TABLES
        },
    }


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
    )
    policy = json.dumps(policy_document(stage, resources))
    return {
        "resource": {
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
