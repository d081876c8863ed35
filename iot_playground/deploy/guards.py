"""The description (resources.py) applied with boto3; each step reads first and writes only what
differs, so a second run changes nothing. `iot-playground tables` (before `chalice deploy`): tables,
reports bucket, device queues; `iot-playground guards` (after it, on the API of
`.chalice/deployed/<stage>.json`): the API's guards, alarms, budget, topic rule and SQS event too.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from contextlib import suppress
from functools import partial
from pathlib import Path
from typing import Any

from botocore.exceptions import ClientError

from iot_playground.common.stages import CHALICE_DIR, Stage
from iot_playground.deploy import resources
from iot_playground.deploy.resources import JSON_TYPE, Data, arn_refs, create_table_request, describe, resolve

Step = tuple[str, Callable[[], Any], Any, Callable[[], object]]  # what, read, wanted, write
Report = Callable[[str], None] | None
KMS = {"Enabled": True, "SSEType": "KMS"}  # the account's AWS-managed key, as the templates ask
_MISSING = ("NotFound", "NoSuch", "404", "NonExistent", "Unauthorized")  # in the codes of what is missing


class GuardsError(RuntimeError):
    """The stage is not deployed the way this module expects."""


def same(wanted: Any, have: Any) -> bool:
    """Whether `have` (an AWS answer) holds `wanted`: extra keys ignored, numbers by value."""
    if isinstance(wanted, dict):
        return isinstance(have, dict) and all(same(v, have.get(k)) for k, v in wanted.items())
    if isinstance(wanted, list):
        return isinstance(have, list) and len(wanted) == len(have) and all(map(same, wanted, have))
    if isinstance(wanted, int | float) and not isinstance(wanted, bool):
        return isinstance(have, int | float) and float(wanted) == float(have)
    return bool(wanted == have)


def converge(steps: list[Step], dry_run: bool = False, report: Report = print) -> list[str]:
    changes = []
    for what, read, wanted, write in steps:
        if not same(wanted, read()):
            changes.append(what)
            if report:
                report(("would " if dry_run else "") + what)
            if not dry_run:
                write()
    return changes


def get(call: Callable[..., Any], *path: str, **request: Any) -> Callable[[], Any]:
    """A read: `call(**request)` down `path`; None where the thing, or that setting of it, is missing."""

    def read() -> Any:
        try:
            answer = call(**request)
        except ClientError as error:
            if any(part in error.response.get("Error", {}).get("Code", "") for part in _MISSING):
                return None
            raise
        for key in path:
            answer = answer.get(key) if isinstance(answer, dict) else None
        return answer

    return read


def table_steps(client: Any, t: Data, durable: bool) -> list[Step]:
    """The table, created complete when missing (TTL; deployed: KMS, point-in-time recovery, caps)."""
    name, units, table = t["name"], t.get("throughput", {}), {"TableName": t["name"]}
    wait = partial(client.get_waiter("table_exists").wait, **table, WaiterConfig={"Delay": 2})

    def create() -> None:
        client.create_table(**create_table_request(t), **({"SSESpecification": KMS} if durable else {}))
        wait()
        if t["ttl"]:
            ttl = {"Enabled": True, "AttributeName": t["ttl"]}
            client.update_time_to_live(**table, TimeToLiveSpecification=ttl)
        backups = {"PointInTimeRecoveryEnabled": True}
        for attempt in range(5 * durable):  # right after CreateTable, backups may still be starting
            with suppress(client.exceptions.ContinuousBackupsUnavailableException):
                client.update_continuous_backups(**table, PointInTimeRecoverySpecification=backups)
                break
            time.sleep(2 * (attempt + 1))

    def capped() -> list[Any]:
        have = get(client.describe_table, "Table", **table)() or {}
        return [i.get("OnDemandThroughput") for i in [have, *have.get("GlobalSecondaryIndexes", [])]]

    def cap() -> None:
        client.update_table(**table, OnDemandThroughput=units)
        for index in t["indexes"]:  # an index a call, each once the table is ACTIVE again
            wait()
            update = {"IndexName": index["name"], "OnDemandThroughput": units}
            client.update_table(**table, GlobalSecondaryIndexUpdates=[{"Update": update}])

    # Wanted, `{}`: any answer at all, so the table exists.
    steps: list[Step] = [(f"{name}: create table", get(client.describe_table, **table), {}, create)]
    if durable:
        caps = f"{units['MaxReadRequestUnits']} RRU/s, {units['MaxWriteRequestUnits']} WRU/s (and each index)"
        wanted = [units] * (1 + len(t["indexes"]))
        steps.append((f"{name}: cap on-demand throughput at {caps}", capped, wanted, cap))
    return steps


def bucket_steps(s3: Any, b: Data, durable: bool) -> list[Step]:
    """The bucket, created complete when missing (deployed: public access blocked, owned objects,
    encrypted, TLS only; not on a plain-HTTP local endpoint)."""
    bucket, region = {"Bucket": b["name"]}, s3.meta.region_name
    where = {"CreateBucketConfiguration": {"LocationConstraint": region}} if region != "us-east-1" else {}

    def create() -> None:
        s3.create_bucket(**bucket, **where)
        s3.put_bucket_lifecycle_configuration(**bucket, LifecycleConfiguration={"Rules": b["lifecycle"]})
        s3.put_bucket_cors(**bucket, CORSConfiguration={"CORSRules": b["cors"]})
        if durable:
            s3.put_public_access_block(**bucket, PublicAccessBlockConfiguration=b["public_access_block"])
            s3.put_bucket_ownership_controls(**bucket, OwnershipControls=b["ownership"])
            s3.put_bucket_encryption(**bucket, ServerSideEncryptionConfiguration=b["encryption"])
            s3.put_bucket_policy(**bucket, Policy=json.dumps(b["policy"]))

    return [(f"{b['name']}: create bucket", get(s3.head_bucket, **bucket), {}, create)]  # `{}`: it exists


def ensure_tables(client: Any, settings: Any) -> list[str]:
    """The app's tables under `settings` (the local stack, the tests); returns those created now."""
    tables = resources.tables(settings.stage, settings)
    steps = [step for t in tables for step in table_steps(client, t, False)]
    return [change.removesuffix(": create table") for change in converge(steps, report=None)]


def reconcile_bucket(s3: Any, settings: Any, durable: bool = False) -> list[str]:
    """The reports bucket of `settings` (the local stack: lifecycle and CORS only); what changed."""
    return converge(bucket_steps(s3, resources.reports_bucket(settings.reports_bucket), durable), report=None)


def device_steps(d: Data, session: Any, account: str) -> list[Step]:
    """The topic rule's role (created when missing) and policy, the rule, the function's SQS event source."""
    iam, iot, lambda_ = (session.client(service) for service in ("iam", "iot", "lambda"))
    mqtt = resolve(d["device_messages"], arn_refs(d, session.region_name, account))
    role, function, mapping = mqtt["role"], d["functions"][mqtt["function"]], mqtt["mapping"]
    lower = lambda o: {k[0].lower() + k[1:]: v for k, v in o.items()}  # noqa: E731 (boto3's camelCase)
    rule, name = json.loads(json.dumps(mqtt["rule"]), object_hook=lower), role["name"]  # CreateTopicRule's
    named, trust = {"RoleName": name, "PolicyName": name}, json.dumps(role["trust"])
    create = partial(iam.create_role, RoleName=name, AssumeRolePolicyDocument=trust)
    sends = partial(iam.put_role_policy, **named, PolicyDocument=json.dumps(role["policy"]))
    have_rule = get(iot.get_topic_rule, "rule", ruleName=rule["ruleName"])  # missing: "Unauthorized"
    put_rule = lambda: (iot.replace_topic_rule if have_rule() else iot.create_topic_rule)(**rule)  # noqa: E731
    sources = get(lambda_.list_event_source_mappings, "EventSourceMappings", FunctionName=function)
    update = lambda: lambda_.update_event_source_mapping(UUID=sources()[0]["UUID"], **mapping)  # noqa: E731
    return [
        (f"role {name}: create", get(iam.get_role, "Role", "RoleName", RoleName=name), name, create),
        (f"role {name}: policy", get(iam.get_role_policy, "PolicyDocument", **named), role["policy"], sends),
        (f"topic rule {rule['ruleName']}", have_rule, rule["topicRulePayload"], put_rule),
        (f"{mqtt['function']}: SQS event source {mapping}", lambda: sources()[:1], [mapping], update),
    ]


def storage_steps(d: Data, account: str, dynamodb: Any, s3: Any, sqs: Any) -> list[Step]:
    refs = arn_refs(d, sqs.meta.region_name, account)
    steps = [step for t in d["tables"] for step in table_steps(dynamodb, t, True)]
    steps += bucket_steps(s3, resolve(d["bucket"], refs), True)
    for key, queue in resolve(d["device_messages"]["queues"], refs).items():  # the dead letters' first
        name, url = queue.pop("QueueName"), refs["queue_url"](key)
        text = {k: json.dumps(v) if isinstance(v, dict) else str(v).lower() for k, v in queue.items()}
        create = partial(sqs.create_queue, QueueName=name, Attributes=text)
        steps.append((f"{name}: create", get(sqs.get_queue_url, "QueueUrl", QueueName=name), url, create))
    return steps


def apply_tables(stage: str, dry_run: bool = False, delete_all: bool = False, **endpoints: str | None) -> int:
    """`iot-playground tables`: create what is missing, or delete the tables and bucket, data and all
    (destroy.yml, when asked); prints what changed."""
    import boto3

    d, session = describe(Stage.load(stage)), boto3.session.Session()
    dynamodb = session.client("dynamodb", endpoint_url=endpoints.get("endpoint_url"))
    s3 = session.client("s3", endpoint_url=endpoints.get("s3_endpoint_url"))
    sqs, account = session.client("sqs"), session.client("sts").get_caller_identity()["Account"]
    print(f"stage {stage}: tables {', '.join(t['name'] for t in d['tables'])}, bucket {d['bucket']['name']}")
    if not delete_all:
        # And the topic rule's role, long before `make guards` makes the rule: IAM's changes reach IoT late.
        steps = storage_steps(d, account, dynamodb, s3, sqs) + device_steps(d, session, account)[:2]
        if not converge(steps, dry_run):
            print("no changes: the tables, bucket, queues and rule's role already match their description")
        return 0
    gone = [t["name"] for t in d["tables"] if get(dynamodb.describe_table, TableName=t["name"])()]
    for name in gone:
        dynamodb.delete_table(TableName=name)
        dynamodb.get_waiter("table_not_exists").wait(TableName=name, WaiterConfig={"Delay": 2})
    if get(s3.head_bucket, Bucket=(bucket := d["bucket"]["name"]))() is not None:
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket):
            if keys := [{"Key": item["Key"]} for item in page.get("Contents", [])]:
                s3.delete_objects(Bucket=bucket, Delete={"Objects": keys, "Quiet": True})
        s3.delete_bucket(Bucket=bucket)
        gone.append(bucket)
    print(f"deleted {', '.join(gone)}" if gone else "no changes: nothing to delete")
    return 0


def _items(call: Callable[..., Any], **request: Any) -> list[Data]:
    """Every item of a paginated API Gateway list (none when a parameter is missing)."""
    items: list[Data] = []
    while None not in request.values() and (page := call(limit=500, **request)):
        items += page.get("items", [])
        request["position"] = page.get("position")  # the last page has none: the loop ends
    return items


def _set(read: Callable[[], Any]) -> Any:
    """What `read` finds (the first of a list), or None while it is API Gateway's default."""
    found = read()
    found = (found or [None])[0] if isinstance(found, list) else found
    return None if found is None or found.get("defaultResponse") else found


def api_steps(d: Data, apigateway: Any, api: str, stage: str) -> list[Step]:
    """The gateway responses, the stage throttle, the admin usage plan on the stage, its enabled key."""
    admin, rate, burst, plan = d["admin"], d["throttle"]["rate"], d["throttle"]["burst"], {"id": None}
    on_stage, on_api, named = {"apiId": api, "stage": stage}, {"restApiId": api}, {"name": admin["name"]}
    throttled = admin["throttle"]
    steps: list[Step] = []
    for r in d["gateway_responses"]:
        headers = {f"gatewayresponse.header.{k}": v for k, v in r["headers"].items()}
        wanted = {"responseParameters": headers, "responseTemplates": {JSON_TYPE: r["template"]}}
        wanted |= {"statusCode": r["status"]} if r["status"] else {}
        have = partial(_set, get(apigateway.get_gateway_response, **on_api, responseType=r["type"]))
        put = partial(apigateway.put_gateway_response, **on_api, responseType=r["type"], **wanted)
        steps.append((f"gateway response {r['type']}", have, wanted, put))
    throttle = {"throttlingRateLimit": rate, "throttlingBurstLimit": burst, "metricsEnabled": True}
    paths = {"throttling/rateLimit": rate, "throttling/burstLimit": burst, "metrics/enabled": True}
    ops = [dict(op="replace", path=f"/*/*/{p}", value=str(v).lower()) for p, v in paths.items()]
    settings = get(apigateway.get_stage, "methodSettings", "*/*", **on_api, stageName=stage)
    update = partial(apigateway.update_stage, **on_api, stageName=stage, patchOperations=ops)

    def usage_plan() -> Data:
        plan.update(next((p for p in _items(apigateway.get_usage_plans) if p["name"] == admin["name"]), {}))
        return {"stages": plan.get("apiStages"), "throttle": plan.get("throttle")}

    def put_plan() -> None:
        if plan["id"] is None:
            plan.update(apigateway.create_usage_plan(**named, apiStages=[on_stage], throttle=throttled))
            return
        ops = [dict(op="replace", path=f"/throttle/{k}", value=str(v)) for k, v in throttled.items()]
        if on_stage not in plan.get("apiStages", []):
            ops.append(dict(op="add", path="/apiStages", value=f"{api}:{stage}"))
        apigateway.update_usage_plan(usagePlanId=plan["id"], patchOperations=ops)

    def keys() -> list[Data]:
        inside = {k["id"] for k in _items(apigateway.get_usage_plan_keys, usagePlanId=plan["id"])}
        found = _items(apigateway.get_api_keys, nameQuery=admin["name"])
        return [k | {"member": k["id"] in inside} for k in found if k["name"] == admin["name"]]

    def put_key() -> None:
        key = (keys() or [apigateway.create_api_key(**named, description=admin["description"])])[0]
        enable = [dict(op="replace", path="/enabled", value="true")]
        apigateway.update_api_key(apiKey=key["id"], patchOperations=enable)
        if not key.get("member"):
            apigateway.create_usage_plan_key(usagePlanId=plan["id"], keyId=key["id"], keyType="API_KEY")

    steps.append((f"stage {stage}: throttle {rate:g} req/s, burst {burst}", settings, throttle, update))
    what = f"usage plan {admin['name']}: on stage {stage}, admin throttle"
    steps.append((what, usage_plan, {"stages": [on_stage], "throttle": throttled}, put_plan))
    what = f"API key {admin['name']}: enabled, in its usage plan"
    steps.append((what, lambda: [[k["enabled"], k["member"]] for k in keys()], [[True, True]], put_key))
    return steps


def watch_steps(d: Data, session: Any, account: str, topic: str | None, email: str | None) -> list[Step]:
    """The alarms, and the daily budget with its alert."""
    cloudwatch, budgets, budget = session.client("cloudwatch"), session.client("budgets"), d["budget"]
    steps: list[Step] = []
    refs = arn_refs(d) | {"alarm_actions": lambda _: [topic] if topic else []}
    for alarm in [resolve(a["properties"], refs) for a in d["alarms"]]:
        have = partial(_set, get(cloudwatch.describe_alarms, "MetricAlarms", AlarmNames=[alarm["AlarmName"]]))
        put = partial(cloudwatch.put_metric_alarm, **alarm)
        steps.append((f"alarm {alarm['AlarmName']}", have, alarm, put))
    named = {"AccountId": account, "BudgetName": budget["name"]}
    limit = budget["limit"] | {"BudgetLimit": {"Amount": str(budget["usd"]), "Unit": "USD"}}
    amount = get(budgets.describe_budget, "Budget", "BudgetLimit", "Amount", **named)
    create = partial(budgets.create_budget, AccountId=account, Budget=limit)
    update = partial(budgets.update_budget, AccountId=account, NewBudget=limit)
    what, usd = f"budget {budget['name']}: ${budget['usd']} a day", budget["usd"]
    steps.append((what, lambda: float(amount() or 0), usd, lambda: (update if amount() else create)()))
    if email:
        notes = get(budgets.describe_notifications_for_budget, "Notifications", **named)
        to = [{"SubscriptionType": "EMAIL", "Address": email}]
        notify = partial(budgets.create_notification, **named, Notification=budget["alert"], Subscribers=to)
        what = f"budget {budget['name']}: alert {email}"
        steps.append((what, lambda: any(same(budget["alert"], n) for n in notes() or []), True, notify))
    return steps


def run(
    stage_name: str,
    session: Any = None,
    deployed: Path | None = None,
    rest_api_id: str | None = None,
    alarm_topic_arn: str | None = None,
    budget_email: str | None = None,
    dry_run: bool = False,
    report: Report = print,
) -> list[str]:
    """`iot-playground guards`: apply the description to a stage `chalice deploy` made."""
    import boto3

    stage, session = Stage.load(stage_name), session or boto3.session.Session()
    d, apigateway, api_stage = describe(stage), session.client("apigateway"), stage.api_stage_name
    deployed = deployed or CHALICE_DIR / "deployed" / f"{stage.name}.json"
    record = json.loads(deployed.read_text())["resources"] if deployed.exists() else []
    api = rest_api_id or next((r["rest_api_id"] for r in record if r["resource_type"] == "rest_api"), None)
    if api is None:
        raise GuardsError(f"no {deployed.name} from `chalice deploy`: pass --rest-api-id")
    if get(apigateway.get_stage, restApiId=api, stageName=api_stage)() is None:
        raise GuardsError(f"REST API {api} has no stage {api_stage!r}: run `chalice deploy` first")
    functions = ", ".join(d["functions"].values())
    if report:
        report(f"{stage.name}: REST API {api}, stage {api_stage}, functions {functions}")
    steps, responses = api_steps(d, apigateway, api, api_stage), len(d["gateway_responses"])
    changes = converge(steps[:responses], dry_run, report)
    if changes:  # gateway responses take effect on a deployment
        deploy = partial(apigateway.create_deployment, restApiId=api, stageName=api_stage)
        redeploy: Step = (f"stage {api_stage}: deployed again", lambda: False, True, deploy)
        changes += converge([redeploy], dry_run, report)
    account = session.client("sts").get_caller_identity()["Account"]
    steps = steps[responses:] + watch_steps(d, session, account, alarm_topic_arn, budget_email)
    steps += storage_steps(d, account, *[session.client(s) for s in ("dynamodb", "s3", "sqs")])
    changes += converge(steps + device_steps(d, session, account), dry_run, report)
    if not changes and report:
        report(f"{stage.name}: nothing to change")
    return changes
