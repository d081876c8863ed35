"""`make guards STAGE=dev`: what the packaged templates add to a stage, applied after `chalice deploy`.

`chalice deploy` creates the functions, their role, the REST API and its stage, and sets the
functions' reserved concurrency; it knows nothing of the rest of `guardrails.py`. This module
finds what `chalice deploy` made for the stage and applies, with the AWS APIs:

- the stage's throttle (method settings `*/*`: rate, burst, metrics), from config.json;
- the admin usage plan on the stage, its API key and the key's membership of the plan;
- the gateway responses, then a new deployment of the stage when one changed (they take
  effect on deployment, and `chalice deploy` overwrites the API definition, resetting them);
- the CloudWatch alarms (PutMetricAlarm), notifying `--alarm-topic-arn` when given;
- the functions' reserved concurrency, should it differ from config.json.

Each step reads first and writes only what differs: a second run changes nothing and says so.

    iot-playground guards --stage dev [--alarm-topic-arn ARN] [--dry-run]

The REST API comes from `.chalice/deployed/<stage>.json` (what `chalice deploy` recorded),
else `--rest-api-id`, else the one API named after the app; the functions are found by the
names `chalice deploy` gives them. Account and region: the environment's, as for `chalice deploy`.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from iot_playground.common.stages import CHALICE_DIR, Stage
from iot_playground.deploy import guardrails
from iot_playground.deploy.cfn_template import function_id, table_id

Client = Any  # boto3 clients (no type stubs for these services in the venv)


class GuardsError(RuntimeError):
    """The stage is not deployed the way this module expects."""


@dataclass(frozen=True, slots=True)
class Target:
    """What `chalice deploy` made for a stage."""

    rest_api_id: str
    api_stage: str
    functions: dict[str, str]  # the app's function -> its Lambda's name


def deployed_file(stage: Stage) -> Path:
    return CHALICE_DIR / "deployed" / f"{stage.name}.json"


def _pages(call: Callable[..., dict[str, Any]], key: str, **kwargs: Any) -> list[dict[str, Any]]:
    """Every item of a paginated API Gateway list (`position` tokens)."""
    items: list[dict[str, Any]] = []
    while True:
        page = call(limit=500, **kwargs)
        items.extend(page.get(key, []))
        if not page.get("position"):
            return items
        kwargs["position"] = page["position"]


def find_target(stage: Stage, apigateway: Client, deployed: Path | None, rest_api_id: str | None) -> Target:
    if rest_api_id is None and deployed is not None and deployed.exists():
        resources = json.loads(deployed.read_text()).get("resources", [])
        rest_api_id = next(
            (r["rest_api_id"] for r in resources if r.get("resource_type") == "rest_api"), None
        )
    if rest_api_id is None:
        # chalice deploy names the API after the app, whatever the stage.
        named = [
            api["id"] for api in _pages(apigateway.get_rest_apis, "items") if api["name"] == stage.app_name
        ]
        if len(named) != 1:
            raise GuardsError(
                f"{len(named)} REST APIs named {stage.app_name!r}: pass --rest-api-id, or keep "
                f"{deployed_file(stage).relative_to(CHALICE_DIR.parent)} from `chalice deploy`"
            )
        rest_api_id = named[0]
    try:
        apigateway.get_stage(restApiId=rest_api_id, stageName=stage.api_stage_name)
    except apigateway.exceptions.NotFoundException:
        raise GuardsError(
            f"REST API {rest_api_id} has no stage {stage.api_stage_name!r}: run `chalice deploy` first"
        ) from None
    return Target(rest_api_id, stage.api_stage_name, stage.function_names())


def _same(wanted: Any, have: Any) -> bool:
    """Whether `have` (an AWS answer) holds `wanted`: extra keys in answers are ignored,
    numbers compare by value (AWS answers 5.0 for 5)."""
    if isinstance(wanted, dict):
        return isinstance(have, dict) and all(_same(v, have.get(k)) for k, v in wanted.items())
    if isinstance(wanted, list):
        return isinstance(have, list) and len(wanted) == len(have) and all(map(_same, wanted, have))
    if isinstance(wanted, (int, float)) and not isinstance(wanted, bool):
        return isinstance(have, (int, float)) and float(wanted) == float(have)
    return bool(wanted == have)


@dataclass
class Guards:
    stage: Stage
    apigateway: Client
    cloudwatch: Client
    lambda_: Client
    alarm_topic_arn: str | None = None
    dry_run: bool = False
    report: Callable[[str], None] = print
    changes: list[str] = field(default_factory=list)

    def _change(self, description: str, apply: Callable[[], object]) -> None:
        self.changes.append(description)
        self.report(("would " if self.dry_run else "") + description)
        if not self.dry_run:
            apply()

    def apply(self, target: Target) -> list[str]:
        self.changes = []
        # First: the new deployment they may need must not race the stage settings below.
        self.gateway_responses(target)
        self.throttling(target)
        plan_id = self.usage_plan(target)
        self.api_key(plan_id)
        self.alarms(target)
        self.reserved_concurrency(target)
        if not self.changes:
            self.report(f"{self.stage.name}: nothing to change")
        return self.changes

    # ---- API stage ----------------------------------------------------------------------

    def throttling(self, target: Target) -> None:
        throttle = self.stage.throttling
        current = self.apigateway.get_stage(restApiId=target.rest_api_id, stageName=target.api_stage)
        settings = current.get("methodSettings", {}).get("*/*", {})
        wanted = {
            "throttling/rateLimit": ("throttlingRateLimit", float(throttle.rate_limit)),
            "throttling/burstLimit": ("throttlingBurstLimit", throttle.burst_limit),
            "metrics/enabled": ("metricsEnabled", True),
        }
        operations = [
            {"op": "replace", "path": f"/*/*/{path}", "value": str(value).lower()}
            for path, (key, value) in wanted.items()
            if not _same(value, settings.get(key))
        ]
        if operations:
            self._change(
                f"stage {target.api_stage}: throttle {throttle.rate_limit:g} req/s,"
                f" burst {throttle.burst_limit}",
                lambda: self.apigateway.update_stage(
                    restApiId=target.rest_api_id, stageName=target.api_stage, patchOperations=operations
                ),
            )

    def usage_plan(self, target: Target) -> str:
        name = guardrails.admin_name(self.stage)
        throttle = {
            "rateLimit": guardrails.ADMIN_THROTTLE.rate_limit,
            "burstLimit": guardrails.ADMIN_THROTTLE.burst_limit,
        }
        on_stage = {"apiId": target.rest_api_id, "stage": target.api_stage}
        plans = [p for p in _pages(self.apigateway.get_usage_plans, "items") if p["name"] == name]
        if not plans:
            created: dict[str, Any] = {"id": "(new)"}

            def create() -> None:
                created.update(
                    self.apigateway.create_usage_plan(
                        name=name,
                        description=guardrails.admin_description(self.stage),
                        apiStages=[on_stage],
                        throttle=throttle,
                    )
                )

            self._change(f"usage plan {name}: created on stage {target.api_stage}", create)
            return str(created["id"])
        plan = plans[0]
        operations = []
        if on_stage not in plan.get("apiStages", []):
            stage_ref = f"{target.rest_api_id}:{target.api_stage}"
            operations.append({"op": "add", "path": "/apiStages", "value": stage_ref})
        for key, value in throttle.items():
            if not _same(value, plan.get("throttle", {}).get(key)):
                operations.append({"op": "replace", "path": f"/throttle/{key}", "value": str(value)})
        if operations:
            self._change(
                f"usage plan {name}: attached to stage {target.api_stage}, admin throttle",
                lambda: self.apigateway.update_usage_plan(usagePlanId=plan["id"], patchOperations=operations),
            )
        return str(plan["id"])

    def api_key(self, plan_id: str) -> None:
        name = guardrails.admin_name(self.stage)
        keys = [k for k in _pages(self.apigateway.get_api_keys, "items", nameQuery=name) if k["name"] == name]
        if not keys:
            created: dict[str, Any] = {}

            def create() -> None:
                created.update(
                    self.apigateway.create_api_key(
                        name=name, description=guardrails.admin_description(self.stage), enabled=True
                    )
                )
                self.apigateway.create_usage_plan_key(
                    usagePlanId=plan_id, keyId=created["id"], keyType="API_KEY"
                )

            self._change(f"API key {name}: created in usage plan {name}", create)
            return
        key = keys[0]
        if not key.get("enabled"):
            self._change(
                f"API key {name}: enabled",
                lambda: self.apigateway.update_api_key(
                    apiKey=key["id"], patchOperations=[{"op": "replace", "path": "/enabled", "value": "true"}]
                ),
            )
        if self.dry_run and plan_id == "(new)":
            return
        members = {k["id"] for k in _pages(self.apigateway.get_usage_plan_keys, "items", usagePlanId=plan_id)}
        if key["id"] not in members:
            self._change(
                f"API key {name}: added to its usage plan",
                lambda: self.apigateway.create_usage_plan_key(
                    usagePlanId=plan_id, keyId=key["id"], keyType="API_KEY"
                ),
            )

    def gateway_responses(self, target: Target) -> None:
        current = {
            r["responseType"]: r
            for r in _pages(self.apigateway.get_gateway_responses, "items", restApiId=target.rest_api_id)
        }
        changed = False
        for response in guardrails.GATEWAY_RESPONSES:
            wanted: dict[str, Any] = {
                "responseParameters": guardrails.response_parameters(self.stage, response),
                "responseTemplates": {guardrails.JSON_TYPE: response.template()},
            }
            if response.status_code is not None:
                wanted["statusCode"] = response.status_code
            have = current.get(response.response_type)
            if have is not None and not have.get("defaultResponse") and _same(wanted, have):
                continue
            changed = True
            self._change(
                f"gateway response {response.response_type}",
                functools.partial(
                    self.apigateway.put_gateway_response,
                    restApiId=target.rest_api_id,
                    responseType=response.response_type,
                    **wanted,
                ),
            )
        if changed:
            digest = guardrails.gateway_responses_digest(self.stage)
            self._change(
                f"stage {target.api_stage}: deployed again (gateway responses take effect on deployment)",
                lambda: self.apigateway.create_deployment(
                    restApiId=target.rest_api_id,
                    stageName=target.api_stage,
                    description=f"make guards: gateway responses {digest}",
                ),
            )

    # ---- alarms and functions ---------------------------------------------------------------

    def alarms(self, target: Target) -> None:
        settings = self.stage.app_settings
        names = guardrails.Names(
            function=lambda function: target.functions[function],
            table=lambda definition: definition.table_name(settings),
        )
        actions = [self.alarm_topic_arn] if self.alarm_topic_arn else []
        wanted = [
            guardrails.alarm_properties(alarm, names, actions)
            for alarm in guardrails.alarms(self.stage, list(target.functions), function_id, table_id)
        ]
        described = self.cloudwatch.describe_alarms(AlarmNames=[w["AlarmName"] for w in wanted])
        current = {a["AlarmName"]: a for a in described.get("MetricAlarms", [])}
        for properties in wanted:
            if _same(properties, current.get(properties["AlarmName"])):
                continue
            self._change(
                f"alarm {properties['AlarmName']}",
                functools.partial(self.cloudwatch.put_metric_alarm, **properties),
            )

    def reserved_concurrency(self, target: Target) -> None:
        for function, name in target.functions.items():
            settings = {**self.stage.settings, **self.stage.function_settings.get(function, {})}
            wanted = settings.get("reserved_concurrency")
            try:
                have = self.lambda_.get_function_concurrency(FunctionName=name).get(
                    "ReservedConcurrentExecutions"
                )
            except self.lambda_.exceptions.ResourceNotFoundException:
                raise GuardsError(
                    f"no Lambda function {name}: run `chalice deploy --stage {self.stage.name}`"
                ) from None
            if wanted is None or have == wanted:
                continue
            self._change(
                f"function {name}: reserved concurrency {wanted}",
                functools.partial(
                    self.lambda_.put_function_concurrency,
                    FunctionName=name,
                    ReservedConcurrentExecutions=wanted,
                ),
            )


def run(
    stage_name: str,
    *,
    session: Any = None,
    deployed: Path | None = None,
    rest_api_id: str | None = None,
    alarm_topic_arn: str | None = None,
    dry_run: bool = False,
    report: Callable[[str], None] = print,
) -> list[str]:
    import boto3

    stage = Stage.load(stage_name)
    session = session or boto3.session.Session()
    guards = Guards(
        stage,
        apigateway=session.client("apigateway"),
        cloudwatch=session.client("cloudwatch"),
        lambda_=session.client("lambda"),
        alarm_topic_arn=alarm_topic_arn,
        dry_run=dry_run,
        report=report,
    )
    target = find_target(stage, guards.apigateway, deployed or deployed_file(stage), rest_api_id)
    report(
        f"{stage.name}: REST API {target.rest_api_id}, stage {target.api_stage}, functions "
        f"{', '.join(target.functions.values())}"
    )
    return guards.apply(target)
