"""The description (resources.py) as the template `chalice package --merge-template` merges: its extra
resources, and patches to Chalice's API (throttle, tracing, gateway responses), functions (name, secret,
SQS event), log groups and roles (their policy naming the stack's own resources).
"""

from __future__ import annotations

from typing import Any

from chalice.utils import to_cfn_resource_name

from iot_playground.common.stages import Stage
from iot_playground.deploy.resources import JSON_TYPE, Data, create_table_request, describe, policy, resolve

REST_API_ID, CUSTOM_DOMAIN_ID, BUCKET_ID = "RestAPI", "ApiGatewayCustomDomain", "ReportsBucket"  # Chalice's
RULE_ID, RULE_ROLE_ID = "DeviceMessagesRule", "DeviceMessagesRuleRole"
SECRET_PARAMETER = "PaginationTokenSecret"
SECRET_DESCRIPTION = "Signs the API's pagination tokens (PAGINATION_TOKEN_SECRET); any random string"
OPTIONAL = {"AlarmTopicArn": "SNS topic the alarms notify", "BudgetEmail": "who the daily budget alerts"}


def function_id(function: str) -> str:
    return "APIHandler" if function == "api_handler" else str(to_cfn_resource_name(function))


def table_id(key: str) -> str:
    return function_id(f"{key}-table")


def _if(parameter: str, value: Any) -> Data:
    return {"Fn::If": [f"Has{parameter}", value, {"Ref": "AWS::NoValue"}]}


REFS: dict[str, Any] = {
    "table_name": lambda key: {"Ref": table_id(key)},
    "table_arn": lambda key: {"Fn::GetAtt": [table_id(key), "Arn"]},
    "index_arn": lambda key: {"Fn::Sub": f"${{{table_id(key)}.Arn}}/index/*"},
    "function_name": lambda function: {"Ref": function_id(function)},
    "log_group_arn": lambda function: {"Fn::GetAtt": [function_id(f"{function}-log-group"), "Arn"]},
    "bucket_arn": lambda _: {"Fn::GetAtt": [BUCKET_ID, "Arn"]},
    "objects_arn": lambda _: {"Fn::Sub": f"${{{BUCKET_ID}.Arn}}/*"},
    "alarm_actions": lambda _: _if("AlarmTopicArn", [{"Ref": "AlarmTopicArn"}]),
    "queue_arn": lambda key: {"Fn::Sub": f"${{{function_id(key)}.Arn}}"},  # over the SQS event's Sub
    "queue_url": lambda key: {"Ref": function_id(key)},
    "rule_role_arn": lambda _: {"Fn::GetAtt": [RULE_ROLE_ID, "Arn"]},
}


def _resource(kind: str, properties: Data, keep: str = "") -> Data:
    """A resource of type AWS::<kind>; `keep`, its deletion and replacement policy."""
    policies = dict(DeletionPolicy=keep, UpdateReplacePolicy=keep) if keep else {}
    return {"Type": f"AWS::{kind}", **policies, "Properties": properties}


def _extras(d: Data) -> Data:
    """The resources Chalice does not generate."""
    found, b, admin, budget, mqtt = {}, d["bucket"], d["admin"], d["budget"], d["device_messages"]
    safe = dict(PointInTimeRecoverySpecification={"PointInTimeRecoveryEnabled": True})
    safe["SSESpecification"] = {"SSEEnabled": True}  # the AWS-managed KMS key
    for t in d["tables"]:  # data outlives the stack: deleting or replacing it keeps the table
        ttl = dict(TimeToLiveSpecification=dict(AttributeName=t["ttl"], Enabled=True)) if t["ttl"] else {}
        table = create_table_request(t) | ttl | safe
        found[table_id(t["key"])] = _resource("DynamoDB::Table", table, "Retain")
    rules = []
    for r in b["lifecycle"]:
        rule = dict(Id=r["ID"], Status=r["Status"], Prefix=r["Filter"]["Prefix"])
        rule |= dict(ExpirationInDays=r["Expiration"]["Days"])
        rules.append(rule | {"AbortIncompleteMultipartUpload": r["AbortIncompleteMultipartUpload"]})
    cors = [{("MaxAge" if k == "MaxAgeSeconds" else k): v for k, v in r.items()} for r in b["cors"]]
    sse = [{k.removeprefix("Apply"): v for k, v in r.items()} for r in b["encryption"]["Rules"]]
    bucket = dict(BucketName=b["name"], PublicAccessBlockConfiguration=b["public_access_block"])
    bucket |= dict(BucketEncryption=dict(ServerSideEncryptionConfiguration=sse))
    bucket |= dict(OwnershipControls=b["ownership"], CorsConfiguration=dict(CorsRules=cors))
    bucket["LifecycleConfiguration"] = dict(Rules=rules)
    found[BUCKET_ID] = _resource("S3::Bucket", bucket, "Delete")  # a day of downloads: may go with the stack
    bucket_policy = dict(Bucket={"Ref": BUCKET_ID}, PolicyDocument=b["policy"])
    found[f"{BUCKET_ID}Policy"] = _resource("S3::BucketPolicy", bucket_policy)
    for alarm in d["alarms"]:
        kind, subject = alarm["subject"]
        found[f"{function_id(subject)}{kind}Alarm"] = _resource("CloudWatch::Alarm", alarm["properties"])
    throttle = dict(RateLimit=admin["throttle"]["rateLimit"], BurstLimit=admin["throttle"]["burstLimit"])
    # `<Api>.Stage` is SAM's reference to the stage it creates: the plan waits for it.
    stages = [dict(ApiId={"Ref": REST_API_ID}, Stage={"Ref": f"{REST_API_ID}.Stage"})]
    plan = dict(UsagePlanName=admin["name"], Description=admin["description"], Throttle=throttle)
    found["AdminUsagePlan"] = _resource("ApiGateway::UsagePlan", plan | dict(ApiStages=stages))
    key = dict(Name=admin["name"], Description=admin["description"], Enabled=True)
    found["AdminApiKey"] = _resource("ApiGateway::ApiKey", key)
    member = dict(KeyId={"Ref": "AdminApiKey"}, KeyType="API_KEY", UsagePlanId={"Ref": "AdminUsagePlan"})
    found["AdminUsagePlanKey"] = _resource("ApiGateway::UsagePlanKey", member)
    limit = budget["limit"] | dict(BudgetLimit=dict(Amount=budget["usd"], Unit="USD"))
    email = [dict(SubscriptionType="EMAIL", Address={"Ref": "BudgetEmail"})]
    alerts = _if("BudgetEmail", [dict(Notification=budget["alert"], Subscribers=email)])
    budget = dict(Budget=limit, NotificationsWithSubscribers=alerts)
    found["DailyBudget"] = _resource("Budgets::Budget", budget)
    found |= {function_id(key): _resource("SQS::Queue", queue) for key, queue in mqtt["queues"].items()}
    policies = [dict(PolicyName=mqtt["role"]["name"], PolicyDocument=mqtt["role"]["policy"])]
    role = dict(AssumeRolePolicyDocument=mqtt["role"]["trust"], Policies=policies)
    found[RULE_ROLE_ID] = _resource("IAM::Role", role)
    return found | {RULE_ID: _resource("IoT::TopicRule", mqtt["rule"])}


def merge_template(stage: Stage) -> Data:
    d = describe(stage)
    resources, mqtt = _extras(d), d["device_messages"]
    for file, function in ((file, f) for file, functions in d["policies"].items() for f in functions):
        role, name, own = function_id(f"{function}_role"), d["functions"][function], function_id(function)
        policies = [dict(PolicyName=f"{role}Policy", PolicyDocument=policy(d, file))]
        resources[role] = {"Properties": dict(Policies=policies)}
        secret = dict(Variables={"PAGINATION_TOKEN_SECRET": {"Ref": SECRET_PARAMETER}})
        resources[own] = {"Properties": dict(FunctionName=name, Environment=secret)}
        if function == mqtt["function"]:  # Chalice's SQS event: the queue (waiting for it), the settings
            event = mqtt["mapping"] | {"Queue": REFS["queue_arn"]("device_messages")}
            resources[own]["Properties"]["Events"] = {f"{own}SqsEventSource": {"Properties": event}}
        # Named, not derived from the function: the role grants on the group, the function needs the role.
        group = {"Properties": dict(LogGroupName=f"/aws/lambda/{name}")}
        resources[function_id(f"{function}-log-group")] = group
    throttle = dict(ThrottlingRateLimit=d["throttle"]["rate"], ThrottlingBurstLimit=d["throttle"]["burst"])
    responses = {}  # SAM writes them into the API definition: a deployment carries them
    for r in d["gateway_responses"]:
        response = dict(ResponseParameters=dict(Headers=r["headers"]))
        response["ResponseTemplates"] = {JSON_TYPE: r["template"]}
        responses[r["type"]] = response | (dict(StatusCode=r["status"]) if r["status"] else {})
    settings = dict(ResourcePath="/*", HttpMethod="*", MetricsEnabled=True, **throttle)
    api = dict(TracingEnabled=d["xray"], GatewayResponses=responses, MethodSettings=[settings])
    resources[REST_API_ID] = {"Properties": api}
    outputs: Data = {f"{table_id(t['key'])}Name": {"Value": {"Ref": table_id(t["key"])}} for t in d["tables"]}
    outputs["AdminApiKeyId"] = {"Value": {"Ref": "AdminApiKey"}}
    outputs["ReportsBucketName"] = {"Value": {"Ref": BUCKET_ID}}
    if stage.settings.get("api_gateway_custom_domain"):  # beside Chalice's EndpointURL, usable at once
        outputs["ApiUrl"] = {"Value": {"Fn::Sub": f"https://${{{CUSTOM_DOMAIN_ID}}}/"}}
        outputs["RegionalDomainName"] = {"Value": {"Fn::GetAtt": [CUSTOM_DOMAIN_ID, "RegionalDomainName"]}}
    optional = dict(Type="String", Default="")
    params: Data = {n: optional | dict(Description=f"{w}; or none") for n, w in OPTIONAL.items()}
    params[SECRET_PARAMETER] = dict(Type="String", NoEcho=True, MinLength=32, Description=SECRET_DESCRIPTION)
    conditions = {f"Has{name}": {"Fn::Not": [{"Fn::Equals": [{"Ref": name}, ""]}]} for name in OPTIONAL}
    return dict(Parameters=params, Conditions=conditions, Resources=resolve(resources, REFS), Outputs=outputs)
