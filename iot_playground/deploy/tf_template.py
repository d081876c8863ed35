"""The description (resources.py) as Terraform files beside `chalice package --pkg-format terraform`'s:
`iot_playground.tf.json`, the extra resources and log groups; `chalice.tf.json`, Chalice's, patched as
Terraform merges an override file; `versions.tf.json`, the version constraints (AWS provider 5.x).
"""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any

from iot_playground.common.stages import Stage
from iot_playground.deploy.cfn_template import OPTIONAL, SECRET_DESCRIPTION, SECRET_PARAMETER
from iot_playground.deploy.resources import JSON_TYPE, Data, create_table_request, describe, policy, resolve

AWS_PROVIDER = ">= 5.60, < 6"
REST_API = "${aws_api_gateway_rest_api.rest_api.id}"
API_STAGE = "${aws_api_gateway_deployment.rest_api.stage_name}"
BUCKET, BUCKET_ARN = "${aws_s3_bucket.reports.id}", "${aws_s3_bucket.reports.arn}"
_LOGS = "arn:${data.aws_partition.chalice.partition}:logs:${data.aws_region.chalice.name}:"
_ACCOUNT = "${data.aws_caller_identity.chalice.account_id}"
_SQS = {"QueueName": "Name", "VisibilityTimeout": "VisibilityTimeoutSeconds"}  # the provider's names
_SQS["MessageRetentionPeriod"] = "MessageRetentionSeconds"
_WORD = re.compile(r"(?<=[a-z])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])")  # where AdminKey and OKActions split


def snake(data: Any) -> Any:
    """AWS's CamelCase keys as the AWS provider's snake_case arguments, all the way down."""
    if isinstance(data, dict):
        return {_WORD.sub("_", k).lower(): snake(v) for k, v in data.items()}
    return [snake(v) for v in data] if isinstance(data, list) else data


def _table(t: Data) -> Data:
    units, attributes = snake(t["throughput"]), create_table_request(t)["AttributeDefinitions"]
    table = dict(name=t["name"], billing_mode="PAY_PER_REQUEST", hash_key=t["hash"])
    table |= dict(on_demand_throughput=units) | (dict(range_key=t["range"]) if t["range"] else {})
    table["attribute"] = [dict(name=a["AttributeName"], type=a["AttributeType"]) for a in attributes]
    indexes = [dict(name=i["name"], hash_key=i["hash"], range_key=i["range"]) for i in t["indexes"]]
    every = dict(projection_type="ALL", on_demand_throughput=units)
    table["global_secondary_index"] = [i | every for i in indexes]
    table |= dict(ttl=dict(attribute_name=t["ttl"], enabled=True)) if t["ttl"] else {}
    table |= dict(point_in_time_recovery={"enabled": True}, server_side_encryption={"enabled": True})
    return table | dict(lifecycle={"prevent_destroy": True})  # data outlives the stack


def _bucket(b: Data) -> Data:
    """The bucket and one resource a setting, as the AWS provider wants them. Only downloads of
    the last day live there: `terraform destroy` may empty it."""
    sse = {"Rule": b["encryption"]["Rules"]}  # the provider's blocks are singular: a "rule" each
    kinds = dict(PublicAccessBlock=b["public_access_block"], ServerSideEncryptionConfiguration=sse)
    kinds |= dict(LifecycleConfiguration={"Rule": b["lifecycle"]}, CorsConfiguration={"CorsRule": b["cors"]})
    kinds["OwnershipControls"] = {"Rule": b["ownership"]["Rules"][0]}
    # S3 refuses a bucket policy while the public access block is being set.
    policy = dict(policy=json.dumps(b["policy"]), depends_on=["aws_s3_bucket_public_access_block.reports"])
    kinds = snake(kinds | dict(Policy=policy))
    found = {f"aws_s3_bucket_{kind}": dict(reports=dict(bucket=BUCKET) | a) for kind, a in kinds.items()}
    return found | dict(aws_s3_bucket=dict(reports=dict(bucket=b["name"], force_destroy=True)))


def _extras(stage: Stage, d: Data, chalice_tf: Data) -> Data:
    """`iot_playground.tf.json`: variables, the extra resources, outputs."""
    admin, budget, prefix = d["admin"], d["budget"], f"{d['prefix']}-"
    rate, burst = d["throttle"]["rate"], d["throttle"]["burst"]
    method: Data = dict(rest_api_id=REST_API, stage_name=API_STAGE, method_path="*/*")
    method["settings"] = dict(throttling_rate_limit=rate, throttling_burst_limit=burst, metrics_enabled=True)
    responses = {}
    for r in d["gateway_responses"]:
        headers = {f"gatewayresponse.header.{k}": v for k, v in r["headers"].items()}
        response = dict(rest_api_id=REST_API, response_type=r["type"], response_parameters=headers)
        response["response_templates"] = {JSON_TYPE: r["template"]}
        responses[r["type"].lower()] = response | (dict(status_code=r["status"]) if r["status"] else {})
    named = dict(name=admin["name"], description=admin["description"])
    plan = named | dict(api_stages=[dict(api_id=REST_API, stage=API_STAGE)])
    plan["throttle_settings"] = snake(admin["throttle"])
    key = dict(key_id="${aws_api_gateway_api_key.admin.id}", key_type="API_KEY")
    key["usage_plan_id"] = "${aws_api_gateway_usage_plan.admin.id}"
    alert = snake(budget["alert"]) | dict(threshold_type="PERCENTAGE")
    alert["subscriber_email_addresses"] = ["${notification.value}"]
    each_email = {"for_each": '${var.budget_email == "" ? [] : [var.budget_email]}', "content": alert}
    limit = snake(budget["limit"]) | dict(limit_unit="USD", limit_amount=str(budget["usd"]))
    limit |= dict(name=limit.pop("budget_name"), dynamic={"notification": each_email})
    alarms = {}
    for a in d["alarms"]:  # aws_cloudwatch_metric_alarm's arguments from PutMetricAlarm's parameters
        alarm: Data = snake(a["properties"])
        for query in alarm["metrics"]:
            if stat := query.pop("metric_stat", None):
                dimensions = {dim["name"]: dim["value"] for dim in stat["metric"].pop("dimensions")}
                query["metric"] = stat.pop("metric") | stat | dict(dimensions=dimensions)
        alarm["metric_query"] = alarm.pop("metrics")
        alarms[alarm["alarm_name"].removeprefix(prefix).replace("-", "_")] = alarm
    mqtt, p = d["device_messages"], d["device_messages"]["rule"]["TopicRulePayload"]
    rule = dict(name=mqtt["rule"]["RuleName"], sql=p["Sql"], sql_version=p["AwsIotSqlVersion"])
    rule["enabled"] = not p["RuleDisabled"]
    rule |= snake(dict(Sqs=[a["Sqs"] for a in p["Actions"]], ErrorAction=p["ErrorAction"]))
    iot_role = dict(name=mqtt["role"]["name"], assume_role_policy=json.dumps(mqtt["role"]["trust"]))
    sends = dict(name=mqtt["role"]["name"], role="${aws_iam_role.device_messages_rule.id}")
    queues = {k: {_SQS.get(a, a): v for a, v in q.items()} for k, q in mqtt["queues"].items()}
    for q in queues.values():  # the redrive policy as JSON text
        q |= {a: json.dumps(v) for a, v in q.items() if isinstance(v, dict)}
    resources = dict(aws_dynamodb_table={t["key"]: _table(t) for t in d["tables"]}, **_bucket(d["bucket"]))
    resources |= dict(
        aws_api_gateway_method_settings=dict(rest_api=method),
        aws_api_gateway_gateway_response=responses,
        aws_api_gateway_usage_plan=dict(admin=plan),
        aws_api_gateway_api_key=dict(admin=named | {"enabled": True}),
        aws_api_gateway_usage_plan_key=dict(admin=key),
        aws_cloudwatch_metric_alarm=alarms,
        aws_budgets_budget=dict(daily=limit),
        aws_sqs_queue=snake(queues),
        aws_iam_role=dict(device_messages_rule=iot_role),
        aws_iam_role_policy=dict(device_messages_rule=sends | {"policy": json.dumps(mqtt["role"]["policy"])}),
        aws_iot_topic_rule=dict(device_messages=rule),
    )
    if stage.log_retention_days is not None:
        functions = chalice_tf["resource"]["aws_lambda_function"].items()
        groups = {k: dict(name=f"/aws/lambda/{f['function_name']}") for k, f in functions}
        days = dict(retention_in_days=stage.log_retention_days)
        resources["aws_cloudwatch_log_group"] = {k: g | days for k, g in groups.items()}
    optional = dict(type="string", default="")
    variables: Data = {n: optional | dict(description=f"{w}; or none") for n, w in OPTIONAL.items()}
    variables[SECRET_PARAMETER] = dict(type="string", sensitive=True, description=SECRET_DESCRIPTION)
    outputs = {f"{t['key']}_table_name": f"${{aws_dynamodb_table.{t['key']}.name}}" for t in d["tables"]}
    outputs |= dict(admin_api_key_id="${aws_api_gateway_api_key.admin.id}", reports_bucket_name=BUCKET)
    output = {k: {"value": v} for k, v in outputs.items()}
    return dict(variable=snake(variables), resource=resources, output=output)


def _merged(base: Data, patch: Data) -> Data:
    """`base` with `patch` merged in, argument by argument, as Terraform merges an override file."""
    return base | {k: _merged(base[k], v) if isinstance(base.get(k), dict) else v for k, v in patch.items()}


def files(stage: Stage, chalice_tf: Data) -> dict[str, Data]:
    """The folder's files: Chalice's, patched, without its version constraints (a file holding them
    is one checkov's parser skips whole), the constraints, and ours. References become Terraform's."""
    d, retained = describe(stage), stage.log_retention_days is not None

    def log_group(fn: str) -> str:
        name = f"${{aws_cloudwatch_log_group.{fn}.name}}" if retained else f"/aws/lambda/{d['functions'][fn]}"
        return f"{_LOGS}{_ACCOUNT}:log-group:{name}:*"

    refs = {
        "table_name": lambda key: f"${{aws_dynamodb_table.{key}.name}}",
        "table_arn": lambda key: f"${{aws_dynamodb_table.{key}.arn}}",
        "index_arn": lambda key: f"${{aws_dynamodb_table.{key}.arn}}/index/*",
        "function_name": lambda fn: f"${{aws_lambda_function.{fn}.function_name}}",
        "log_group_arn": log_group,
        "bucket_arn": lambda _: BUCKET_ARN,
        "objects_arn": lambda _: f"{BUCKET_ARN}/*",
        "alarm_actions": lambda _: "${compact([var.alarm_topic_arn])}",
        "queue_arn": lambda key: f"${{aws_sqs_queue.{key}.arn}}",
        "queue_url": lambda key: f"${{aws_sqs_queue.{key}.url}}",
        "rule_role_arn": lambda _: "${aws_iam_role.device_messages_rule.arn}",
    }
    d, policies = resolve(d, refs), {file: resolve(policy(d, file), refs) for file in d["policies"]}
    # Chalice deploys again when md5(swagger), its stage description, changes; gateway responses
    # take effect on a deployment too, so their digest and ids join in.
    responses = d["gateway_responses"]
    digest = hashlib.sha256(json.dumps(responses, sort_keys=True).encode()).hexdigest()[:16]
    ids = ", ".join(f"aws_api_gateway_gateway_response.{r['type'].lower()}.id" for r in responses)
    trigger = f'${{md5(join(",", [local.chalice_api_swagger, "{digest}", {ids}]))}}'
    secret, chalice = {"PAGINATION_TOKEN_SECRET": "${var.pagination_token_secret}"}, chalice_tf["resource"]
    functions = {k: f["environment"]["variables"] | secret for k, f in chalice["aws_lambda_function"].items()}
    roles = {f"{f}_role": {"policy": json.dumps(policies[p])} for p, fs in d["policies"].items() for f in fs}
    mqtt, source = d["device_messages"], snake(d["device_messages"]["mapping"])  # keeps app.py's queue ARN
    source["depends_on"] = [f"aws_iam_role_policy.{mqtt['function']}_role", "aws_sqs_queue.device_messages"]
    patch = dict(
        aws_api_gateway_deployment=dict(rest_api=dict(stage_description=trigger)),
        # A replaced API (a new endpoint type, say) comes up before the old one goes.
        aws_api_gateway_rest_api=dict(rest_api=dict(lifecycle=dict(create_before_destroy=True))),
        aws_iam_role_policy=roles,  # Chalice's: a role a function
        aws_lambda_event_source_mapping={f"{mqtt['function']}-sqs-event-source": source},
        aws_lambda_function={k: dict(environment=dict(variables=v)) for k, v in functions.items()},
    )
    provider = dict(required_providers=dict(aws=dict(version=AWS_PROVIDER)))
    versions = dict(terraform=_merged(chalice_tf.pop("terraform"), provider))
    tf = {"chalice.tf.json": _merged(chalice_tf, dict(resource=patch)), "versions.tf.json": versions}
    return tf | {"iot_playground.tf.json": _extras(stage, d, chalice_tf)}
