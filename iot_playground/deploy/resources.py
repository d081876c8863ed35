"""What a deployed stage needs beyond what Chalice generates, described once as plain data
(`describe`), and each Lambda role's policy (`policy`). A value naming another resource is a reference,
`{"ref": kind, "key": ...}`, that each output resolves its own way: cfn_template.py, tf_template.py,
guards.py (boto3) and `make policies`.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from typing import Any

from iot_playground.common.stages import DEPLOY_STAGES, Stage
from iot_playground.deploy import capacity

Data = dict[str, Any]
JSON_TYPE = "application/json"
ADMIN_KEY_MESSAGE = "this route needs the admin API key in the x-api-key header"
# What API Gateway answers itself, in the API's error format: type, status and message (None:
# API Gateway's own), error code.
GATEWAY_RESPONSES = [
    ("INVALID_API_KEY", "403", "Forbidden", ADMIN_KEY_MESSAGE),
    ("MISSING_AUTHENTICATION_TOKEN", "404", "NotFound", "no route matches this method and path"),
    ("THROTTLED", "429", "TooManyRequests", "more requests than the stage's throttle allows; retry shortly"),
    ("REQUEST_TOO_LARGE", "413", "PayloadTooLarge", "request larger than API Gateway accepts"),
    ("UNSUPPORTED_MEDIA_TYPE", "415", "UnsupportedMediaType", "unsupported Content-Type"),
    ("DEFAULT_4XX", None, "RequestRefused", None),
    ("DEFAULT_5XX", None, "InternalError", None),
]
ADMIN_THROTTLE = {"rateLimit": 1.0, "burstLimit": 2}  # interrupt-all is run by a person
INGEST = "ingest_device_messages"  # the function reading the devices' queue (app.py)
BUDGET_SHARE = 0.1  # the daily budget alerts at a tenth of the ceiling: 2.4 hours at the limits
# Per table, the IAM actions the code calls (tests/test_policy.py); the idempotency table's are
# Powertools' DynamoDBPersistenceLayer's.
DYNAMODB_ACTIONS = {
    "runs": ["dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:Query", "dynamodb:UpdateItem"],
    "readings": ["dynamodb:BatchWriteItem", "dynamodb:PutItem", "dynamodb:Query"],
    "idempotency": ["dynamodb:DeleteItem", "dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem"],
}
INGEST_ACTIONS = {"runs": ["dynamodb:GetItem", "dynamodb:UpdateItem"]}  # INGEST's: a run's status, time-out
INGEST_ACTIONS["readings"] = ["dynamodb:BatchWriteItem", "dynamodb:PutItem"]  # and the readings it stores
S3_ACTIONS = ["s3:GetObject", "s3:PutObject"]  # on the report objects only
SQS_ACTIONS = ["sqs:DeleteMessage", "sqs:GetQueueAttributes", "sqs:ReceiveMessage"]  # Lambda's poller's
XRAY_ACTIONS = ["xray:PutTelemetryRecords", "xray:PutTraceSegments"]  # these take resource "*" only


def tables(stage: str, environment: Any) -> list[Data]:
    """chalicelib/tables.py's tables with their key (`runs`...) and name, from an environment or Settings."""
    from chalicelib.tables import TABLES

    named = environment.get if isinstance(environment, dict) else lambda s: getattr(environment, s.lower(), 0)
    found = []
    for t in TABLES:
        table: Data = dict(setting=t.setting, hash=t.partition_key, range=t.sort_key, ttl=t.ttl_attribute)
        table["indexes"] = [dict(name=i.name, hash=i.partition_key, range=i.sort_key) for i in t.indexes]
        key = t.setting.removesuffix("_TABLE").lower()
        found.append(table | dict(key=key, name=named(t.setting) or f"iot-playground-{key}-{stage}"))
    return found


def ref(kind: str, key: Any = None) -> Data:
    return {"ref": kind, "key": key}


def resolve(data: Any, refs: dict[str, Callable[[Any], Any]]) -> Any:
    """`data` with every reference replaced by `refs[kind](key)`."""
    if isinstance(data, dict) and data.keys() == {"ref", "key"}:
        return refs[data["ref"]](data["key"])
    if isinstance(data, dict):
        return {k: resolve(v, refs) for k, v in data.items()}
    return [resolve(v, refs) for v in data] if isinstance(data, list | tuple) else data


def arn_refs(d: Data, region: str = "*", account: str = "*") -> dict[str, Callable[[Any], Any]]:
    """Names and ARNs as boto3 and `chalice deploy` know them (region and account left open)."""
    names, functions = {t["key"]: t["name"] for t in d["tables"]}, d["functions"]
    table, bucket = "arn:aws:dynamodb:*:*:table/", f"arn:aws:s3:::{d['bucket']['name']}"
    queues = {k: q["QueueName"] for k, q in d["device_messages"]["queues"].items()}
    return dict(
        queue_arn=lambda key: f"arn:aws:sqs:{region}:{account}:{queues[key]}",
        queue_url=lambda key: f"https://sqs.{region}.amazonaws.com/{account}/{queues[key]}",
        rule_role_arn=lambda _: f"arn:aws:iam::{account}:role/{d['device_messages']['role']['name']}",
        table_name=lambda key: names[key],
        table_arn=lambda key: table + names[key],
        index_arn=lambda key: f"{table}{names[key]}/index/*",
        function_name=lambda key: functions[key],
        log_group_arn=lambda key: f"arn:aws:logs:*:*:log-group:/aws/lambda/{functions[key]}:*",
        bucket_arn=lambda _: bucket,
        objects_arn=lambda _: f"{bucket}/*",
    )


def create_table_request(t: Data) -> Data:
    """CreateTable's request, and most of AWS::DynamoDB::Table: on-demand, capped when sized."""

    def schema(*keys: str | None) -> list[Data]:
        return [dict(AttributeName=a, KeyType=k) for a, k in zip(keys, ("HASH", "RANGE"), strict=True) if a]

    caps = {"OnDemandThroughput": t["throughput"]} if "throughput" in t else {}
    keys = {t["hash"], t["range"], *(k for i in t["indexes"] for k in (i["hash"], i["range"]))} - {None}
    key_schema = schema(t["hash"], t["range"])
    request = dict(TableName=t["name"], BillingMode="PAY_PER_REQUEST", KeySchema=key_schema)
    request["AttributeDefinitions"] = [dict(AttributeName=k, AttributeType="S") for k in sorted(keys)]
    if t["indexes"]:
        every = {"ProjectionType": "ALL"}
        indexes = [dict(IndexName=i["name"], KeySchema=schema(i["hash"], i["range"])) for i in t["indexes"]]
        request["GlobalSecondaryIndexes"] = [i | {"Projection": every} | caps for i in indexes]
    return request | caps


def reports_bucket(name: str) -> Data:
    """Downloads too large for a Lambda response, for a day: private, encrypted, TLS only. CORS lets a
    browser follow the API's 303 (it sends `Origin: null`; the presigned signature grants access)."""
    deny: Data = dict(Sid="DenyPlainHttp", Effect="Deny", Principal="*", Action="s3:*")
    tls = {"Bool": {"aws:SecureTransport": "false"}}
    deny |= dict(Resource=[ref("bucket_arn"), ref("objects_arn")], Condition=tls)
    expire = dict(Expiration={"Days": 1}, AbortIncompleteMultipartUpload={"DaysAfterInitiation": 1})
    blocks = ["BlockPublicAcls", "IgnorePublicAcls", "BlockPublicPolicy", "RestrictPublicBuckets"]
    cors = dict(AllowedMethods=["GET"], AllowedOrigins=["*"], AllowedHeaders=["*"], MaxAgeSeconds=3000)
    policy = {"Version": "2012-10-17", "Statement": [deny]}
    lifecycle = [dict(ID="expire-downloads", Status="Enabled", Filter={"Prefix": ""}, **expire)]
    settings: Data = dict(ownership={"Rules": [{"ObjectOwnership": "BucketOwnerEnforced"}]})
    settings["encryption"] = {"Rules": [{"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}]}
    settings["public_access_block"] = dict.fromkeys(blocks, True)
    return dict(name=name, lifecycle=lifecycle, cors=[cors], policy=policy) | settings


def alarms(stage: Stage, table_keys: list[str], functions: dict[str, str], dlq: Data) -> list[Data]:
    """Any Lambda error or DynamoDB throttle (a table at its maximum), 5 API 5xx in 5 minutes, a message
    in `dlq`: each PutMetricAlarm's parameters (AWS::CloudWatch::Alarm's properties), what it watches."""
    prefix, actions = f"{stage.app_name}-{stage.name}", ref("alarm_actions")

    def alarm(subject: tuple[str, str], what: str, threshold: int, *metrics: tuple[str, str, Data]) -> Data:
        queries: list[Data] = []
        for number, (namespace, name, dims) in enumerate(metrics):
            dimensions = [dict(Name=k, Value=v) for k, v in dims.items()]
            metric = dict(Namespace=namespace, MetricName=name, Dimensions=dimensions)
            stat = dict(Metric=metric, Period=300, Stat="Sum")
            queries.append(dict(Id=f"m{number}", ReturnData=len(metrics) == 1, MetricStat=stat))
        if len(metrics) > 1:
            queries.append(dict(Id="total", Expression=" + ".join(q["Id"] for q in queries), ReturnData=True))
        name = f"{prefix}-{subject[1]}-{subject[0].lower()}"
        properties: Data = dict(AlarmName=name, AlarmDescription=f"{prefix}: {what}", Threshold=threshold)
        properties |= dict(ComparisonOperator="GreaterThanOrEqualToThreshold", EvaluationPeriods=1)
        properties |= dict(TreatMissingData="notBreaching", Metrics=queries)
        properties |= dict(AlarmActions=actions, OKActions=actions)
        return dict(subject=subject, properties=properties)

    api = dict(ApiName=stage.app_name, Stage=stage.api_stage_name)  # a REST API's metrics: its name and stage
    found = [alarm(("5xx", "api"), "API answered 5xx", 5, ("AWS/ApiGateway", "5XXError", api))]
    for f in functions:
        errors = ("AWS/Lambda", "Errors", {"FunctionName": ref("function_name", f)})
        found.append(alarm(("Errors", f), f"{f} raised errors", 1, errors))
    for key in table_keys:
        table = {"TableName": ref("table_name", key)}
        metrics = [("AWS/DynamoDB", f"{kind}ThrottleEvents", table) for kind in ("Read", "Write")]
        found.append(alarm(("Throttles", f"{key}-table"), f"DynamoDB throttled {key} requests", 1, *metrics))
    queue = ("AWS/SQS", "ApproximateNumberOfMessagesVisible", {"QueueName": dlq["QueueName"]})  # per minute
    found.append(alarm(("Messages", "device-messages-dlq"), "device messages dead-lettered", 1, queue))
    return found


def device_messages(stage: Stage, prefix: str) -> Data:
    """MQTT readings (docs/mqtt.md), as CloudFormation has them: IoT's rule sends each message to the queue
    INGEST reads in batches (at most its reserved concurrency: none throttled), reporting those it refuses;
    refused 5 times, or not sent by the rule, it is a dead letter. Visibility: 6 x INGEST's timeout."""
    settings, name = stage.settings | stage.function_settings[INGEST], f"{prefix}-device-messages"
    redrive = dict(deadLetterTargetArn=ref("queue_arn", "device_messages_dlq"), maxReceiveCount=5)
    queue = dict(QueueName=name, VisibilityTimeout=6 * settings["lambda_timeout"], RedrivePolicy=redrive)
    dlq = dict(QueueName=f"{name}-dlq", MessageRetentionPeriod=14 * 86_400)  # past the queue's 4 days
    role_arn, sse = ref("rule_role_arn"), {"SqsManagedSseEnabled": True}
    queues = {"device_messages_dlq": dlq | sse, "device_messages": queue | sse}  # the dead letters' first
    to = {k: dict(Sqs=dict(QueueUrl=ref("queue_url", k), RoleArn=role_arn, UseBase64=False)) for k in queues}
    sql = f"SELECT encode(*, 'base64') AS payload, topic() AS topic FROM '{stage.app_name}/{stage.name}"
    rule = dict(Sql=f"{sql}/runs/+/sensors/+'", AwsIotSqlVersion="2016-03-23", RuleDisabled=False)
    rule |= dict(Actions=[to["device_messages"]], ErrorAction=to["device_messages_dlq"])
    iot = dict(Effect="Allow", Principal={"Service": "iot.amazonaws.com"}, Action="sts:AssumeRole")
    send = dict(Effect="Allow", Action="sqs:SendMessage", Resource=[ref("queue_arn", k) for k in queues])
    role = dict(name=f"{name}-rule", trust={"Version": "2012-10-17", "Statement": [iot]})
    role["policy"] = {"Version": "2012-10-17", "Statement": [send]}
    mapping: Data = dict(FunctionResponseTypes=["ReportBatchItemFailures"])  # the SQS event source's
    mapping["ScalingConfig"] = {"MaximumConcurrency": settings["reserved_concurrency"]}
    rule = dict(RuleName=name.replace("-", "_"), TopicRulePayload=rule)  # a name of letters, digits and _
    return dict(function=INGEST, queues=queues, rule=rule, role=role, mapping=mapping)


def policy(d: Data, file: str) -> Data:
    """The policy file's (Stage.policy_files): only what its functions call, on the stage's own resources."""

    def allow(sid: str, actions: list[str], resources: Any) -> Data:
        return dict(Sid=sid, Effect="Allow", Action=actions, Resource=resources)

    functions, statements = d["policies"][file], []
    reads = functions == [d["device_messages"]["function"]]  # the queue
    for t in d["tables"]:
        name, table = t["key"].capitalize(), ref("table_arn", t["key"])
        actions = (INGEST_ACTIONS if reads else DYNAMODB_ACTIONS).get(t["key"], [])
        if items := [a for a in actions if a != "dynamodb:Query"]:
            statements.append(allow(f"{name}TableItems", items, [table]))
        if "dynamodb:Query" in actions:
            indexes = [ref("index_arn", t["key"])] if t["indexes"] else []
            statements.append(allow(f"{name}TableQueries", ["dynamodb:Query"], [table, *indexes]))
    statements += [allow("ReportObjects", S3_ACTIONS, [ref("objects_arn")])] * (not reads)
    statements += [allow("ReadDeviceMessages", SQS_ACTIONS, [ref("queue_arn", "device_messages")])] * reads
    logs = [ref("log_group_arn", f) for f in functions]
    statements.append(allow("WriteOwnLogs", ["logs:CreateLogStream", "logs:PutLogEvents"], logs))
    statements += [allow("WriteTraces", XRAY_ACTIONS, "*")] if d["xray"] else []
    return {"Version": "2012-10-17", "Statement": statements}


def describe(stage: Stage) -> Data:
    """The stage's extra resources as plain data (module docstring)."""
    caps = capacity.sizing(stage)["throughput"]
    found = [t | dict(throughput=caps[t["setting"]]) for t in tables(stage.name, stage.environment)]
    prefix, functions = f"{stage.app_name}-{stage.name}", stage.function_names()
    what = f"{stage.app_name} {stage.name}: operators' key for the routes with api_key_required"
    usd = max(1, round(capacity.ceiling(stage, found)["total"] * BUDGET_SHARE))
    limit = dict(BudgetName=f"{prefix}-daily", BudgetType="COST", TimeUnit="DAILY")  # and "USD" BudgetLimit
    alert = dict(NotificationType="ACTUAL", ComparisonOperator="GREATER_THAN", Threshold=100)  # % of usd
    origins = [o.strip() for o in stage.environment.get("CORS_ORIGIN", "*").split(",") if o.strip()]
    details, responses = ', "details": {"responseType": "$context.error.responseType"}', []
    for kind, status, code, message in GATEWAY_RESPONSES:
        text = json.dumps(message) if message else "$context.error.messageString"  # API Gateway's own
        body = f'{{"error": "{code}", "message": {text}{"" if message else details}}}'
        headers = {"Retry-After": "'1'"} if kind == "THROTTLED" else {}
        if len(origins) == 1:  # with several, API Gateway cannot pick the request's own
            headers["Access-Control-Allow-Origin"] = f"'{origins[0]}'"
        responses.append(dict(type=kind, status=status, template=body, headers=headers))
    return dict(
        prefix=prefix,
        functions=functions,  # the app's function -> its Lambda's name, as `chalice deploy` gives it
        policies=stage.policy_files(),  # each policy file -> the functions whose role it is
        xray=stage.xray,
        tables=found,
        bucket=reports_bucket(stage.app_settings.reports_bucket),
        throttle=dict(rate=stage.throttling.rate_limit, burst=stage.throttling.burst_limit),
        admin=dict(name=f"{prefix}-admin", description=what, throttle=ADMIN_THROTTLE),
        gateway_responses=responses,
        device_messages=(mqtt := device_messages(stage, prefix)),
        alarms=alarms(stage, [t["key"] for t in found], functions, mqtt["queues"]["device_messages_dlq"]),
        budget=dict(name=limit["BudgetName"], usd=usd, limit=limit, alert=alert),
    )


def write_policies(*, check: bool = False) -> int:
    """`iot-playground policies`: each deploy stage's .chalice/ policy files (check: exit 1 if stale)."""
    stale = []
    for stage in [Stage.load(name) for name in DEPLOY_STAGES]:
        d = describe(stage)
        for file in d["policies"]:
            text, path = json.dumps(resolve(policy(d, file), arn_refs(d)), indent=2) + "\n", stage.policy_file
            if not (path := path.with_name(file)).exists() or path.read_text() != text:
                stale.append(file)
                if not check:
                    path.write_text(text)
    if stale:
        where = sys.stderr if check else sys.stdout
        print(f"{'out of date' if check else 'wrote'}: {', '.join(stale)}", file=where)
    return 1 if stale and check else 0
