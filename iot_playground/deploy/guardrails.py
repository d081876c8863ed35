"""What guards a deployed stage besides the app itself, defined once for every way of deploying.

- the API stage's throttle (`api_gateway_throttling`, sized by `capacity.py`);
- the admin usage plan and its API key, attached to the stage, for the routes declared with
  `api_key_required` (interrupt-all; see chalicelib/admin_key.py);
- gateway responses: what API Gateway answers itself (a missing key, an unknown route,
  throttling, a body too large...) in the API's error format, `{"error", "message"}`, with
  the stage's CORS origin so that the frontend can read it;
- CloudWatch alarms on Lambda errors, API 5xx and DynamoDB throttling.

`cfn_template.py` writes them as CloudFormation, `tf_template.py` as Terraform, and
`guards.py` (`make guards`) applies them with the AWS APIs after `chalice deploy`.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from chalicelib import admin_key
from chalicelib.tables import ALL_TABLES, TableDefinition
from iot_playground.common.stages import Stage, Throttling

# interrupt-all is run by hand, by an operator: a person, not a program.
ADMIN_THROTTLE = Throttling(rate_limit=1.0, burst_limit=2)
# Alarm thresholds: any error or throttle in a 5-minute window is worth a look on a
# playground this size; 5xx counts answers, so a few are tolerated.
ALARM_PERIOD_SECONDS = 300
LAMBDA_ERRORS_THRESHOLD = 1
API_5XX_THRESHOLD = 5
DYNAMODB_THROTTLES_THRESHOLD = 1
JSON_TYPE = "application/json"


def admin_name(stage: Stage) -> str:
    """The name of the stage's admin usage plan and of its API key."""
    return f"{stage.app_name}-{stage.name}-admin"


def admin_description(stage: Stage) -> str:
    return f"{stage.app_name} {stage.name}: operators' key for the routes with api_key_required"


# ---- gateway responses -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class GatewayResponse:
    response_type: str
    status_code: str | None  # None keeps API Gateway's own status (the DEFAULT_* families)
    code: str
    message: str | None  # None: API Gateway's own message ($context.error.messageString)
    headers: tuple[tuple[str, str], ...] = ()

    def template(self) -> str:
        """The body's mapping template: valid JSON once API Gateway fills it in."""
        if self.message is not None:
            return json.dumps({"error": self.code, "message": self.message})
        return (
            f'{{"error": {json.dumps(self.code)}, "message": $context.error.messageString, '
            '"details": {"responseType": "$context.error.responseType"}}'
        )


GATEWAY_RESPONSES = (
    GatewayResponse("INVALID_API_KEY", "403", "Forbidden", admin_key.MESSAGE),
    # `chalice local` answers an unknown route 404 NotFound too (iot_playground/local/chalice_local.py).
    GatewayResponse(
        "MISSING_AUTHENTICATION_TOKEN", "404", "NotFound", "no route matches this method and path"
    ),
    GatewayResponse(
        "THROTTLED",
        "429",
        "TooManyRequests",
        "more requests than the stage's throttle allows; retry shortly",
        (("Retry-After", "1"),),
    ),
    GatewayResponse("REQUEST_TOO_LARGE", "413", "PayloadTooLarge", "request larger than API Gateway accepts"),
    GatewayResponse("UNSUPPORTED_MEDIA_TYPE", "415", "UnsupportedMediaType", "unsupported Content-Type"),
    GatewayResponse("DEFAULT_4XX", None, "RequestRefused", None),
    GatewayResponse("DEFAULT_5XX", None, "InternalError", None),
)


def cors_origins(stage: Stage) -> list[str]:
    return [o.strip() for o in stage.environment.get("CORS_ORIGIN", "*").split(",") if o.strip()]


def response_headers(stage: Stage, response: GatewayResponse) -> dict[str, str]:
    """Header name to value; values are literals, quoted the way API Gateway wants them."""
    headers = dict(response.headers)
    origins = cors_origins(stage)
    # One origin (or `*`) can be a fixed header. With several, API Gateway cannot pick the
    # request's own: the browser then sees a CORS error instead of the body.
    if len(origins) == 1:
        headers["Access-Control-Allow-Origin"] = origins[0]
    return {name: f"'{value}'" for name, value in headers.items()}


def response_parameters(stage: Stage, response: GatewayResponse) -> dict[str, str]:
    """As PutGatewayResponse and Terraform take them."""
    return {
        f"gatewayresponse.header.{name}": value for name, value in response_headers(stage, response).items()
    }


def gateway_responses_digest(stage: Stage) -> str:
    """Changes whenever a gateway response does: a new API deployment is due then."""
    document = [
        [r.response_type, r.status_code, r.template(), response_parameters(stage, r)]
        for r in GATEWAY_RESPONSES
    ]
    return hashlib.sha256(json.dumps(document, sort_keys=True).encode()).hexdigest()[:16]


# ---- alarms ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class FunctionName:
    """A dimension value: the deployed name of one of the app's functions."""

    function: str


@dataclass(frozen=True, slots=True)
class TableName:
    definition: TableDefinition


DimensionValue = str | FunctionName | TableName


@dataclass(frozen=True, slots=True)
class Metric:
    id: str
    namespace: str
    name: str
    dimensions: tuple[tuple[str, DimensionValue], ...]


@dataclass(frozen=True, slots=True)
class Alarm:
    key: str  # CloudFormation logical id; Terraform resource name
    name: str
    description: str
    threshold: float
    metrics: tuple[Metric, ...]
    expression: str | None = None  # metric math over the metrics' ids, else the one metric itself
    expression_id: str = "total"
    label: str | None = None


@dataclass(frozen=True, slots=True)
class Names:
    """How one output names the functions and tables an alarm watches."""

    function: Callable[[str], Any]
    table: Callable[[TableDefinition], Any]

    def __call__(self, value: DimensionValue) -> Any:
        if isinstance(value, FunctionName):
            return self.function(value.function)
        if isinstance(value, TableName):
            return self.table(value.definition)
        return value


def alarms(
    stage: Stage,
    functions: list[str],
    function_key: Callable[[str], str],
    table_key: Callable[[TableDefinition], str],
) -> list[Alarm]:
    """`function_key` and `table_key` give the alarm keys' prefixes (CloudFormation logical ids)."""
    prefix = f"{stage.app_name}-{stage.name}"
    found = []
    for function in functions:
        found.append(
            Alarm(
                key=f"{function_key(function)}ErrorsAlarm",
                name=f"{prefix}-{function}-errors",
                description=f"{stage.app_name} {stage.name}: {function} raised errors",
                threshold=LAMBDA_ERRORS_THRESHOLD,
                metrics=(
                    Metric("errors", "AWS/Lambda", "Errors", (("FunctionName", FunctionName(function)),)),
                ),
            )
        )
    # A REST API's metrics are keyed by its name (the OpenAPI title: the app name) and stage.
    api = (("ApiName", stage.app_name), ("Stage", stage.api_stage_name))
    found.append(
        Alarm(
            key="Api5xxAlarm",
            name=f"{prefix}-api-5xx",
            description=f"{stage.app_name} {stage.name}: API answered 5xx",
            threshold=API_5XX_THRESHOLD,
            metrics=(Metric("errors", "AWS/ApiGateway", "5XXError", api),),
        )
    )
    for definition in ALL_TABLES:
        table = (("TableName", TableName(definition)),)
        found.append(
            Alarm(
                key=f"{table_key(definition)}ThrottlesAlarm",
                name=f"{prefix}-{definition.logical_name}-table-throttles",
                description=f"{stage.app_name} {stage.name}: DynamoDB throttled "
                f"{definition.logical_name} table requests",
                threshold=DYNAMODB_THROTTLES_THRESHOLD,
                metrics=(
                    Metric("reads", "AWS/DynamoDB", "ReadThrottleEvents", table),
                    Metric("writes", "AWS/DynamoDB", "WriteThrottleEvents", table),
                ),
                expression="reads + writes",
                expression_id="throttles",
                label="throttled requests",
            )
        )
    return found


def alarm_properties(alarm: Alarm, names: Names, actions: Any) -> dict[str, Any]:
    """PutMetricAlarm's parameters, which are also AWS::CloudWatch::Alarm's properties."""
    properties: dict[str, Any] = {
        "AlarmName": alarm.name,
        "AlarmDescription": alarm.description,
        "ComparisonOperator": "GreaterThanOrEqualToThreshold",
        "EvaluationPeriods": 1,
        "Threshold": alarm.threshold,
        "TreatMissingData": "notBreaching",
        "AlarmActions": actions,
        "OKActions": actions,
    }

    def dimensions(metric: Metric) -> list[dict[str, Any]]:
        return [{"Name": name, "Value": names(value)} for name, value in metric.dimensions]

    if alarm.expression is None:
        (metric,) = alarm.metrics
        properties.update(
            {
                "Namespace": metric.namespace,
                "MetricName": metric.name,
                "Dimensions": dimensions(metric),
                "Statistic": "Sum",
                "Period": ALARM_PERIOD_SECONDS,
            }
        )
        return properties
    queries: list[dict[str, Any]] = [
        {
            "Id": metric.id,
            "ReturnData": False,
            "MetricStat": {
                "Metric": {
                    "Namespace": metric.namespace,
                    "MetricName": metric.name,
                    "Dimensions": dimensions(metric),
                },
                "Period": ALARM_PERIOD_SECONDS,
                "Stat": "Sum",
            },
        }
        for metric in alarm.metrics
    ]
    queries.append(
        {"Id": alarm.expression_id, "Expression": alarm.expression, "Label": alarm.label, "ReturnData": True}
    )
    properties["Metrics"] = queries
    return properties
