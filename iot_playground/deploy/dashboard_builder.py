"""Builds `grafana/dashboards/iot-serverless.json` from the facts the code owns.

Metric names, dimensions and the namespace come from `chalicelib.metrics`; the
dashboard uid and variable names from `chalicelib.grafana` (the links the API
hands out use them); function, table and API Gateway stage names from the
deployment stages in `.chalice/config.json` (`iot_playground.common.stages`), turned
into templates over the dashboard's `Stage` variable. Nothing names an account
or an ARN: the CloudWatch datasource is a dashboard variable too, so the file
imports as is.

    iot-playground dashboard          # rewrite the committed file
    iot-playground dashboard --check  # exit 1 if it is out of date

`tests/test_dashboard.py` fails when the committed file differs from this output.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from typing import Any

from chalicelib import grafana, metrics
from chalicelib.schemas import MEASUREMENT_FIELDS
from iot_playground.common.stages import DEPLOY_STAGES, PROJECT_ROOT, Stage

DASHBOARD_PATH = PROJECT_ROOT / "grafana" / "dashboards" / f"{grafana.DASHBOARD_UID}.json"
DATASOURCE_VARIABLE = "datasource"
API_NAME_VARIABLE = "ApiName"
API_STAGE_VARIABLE = "ApiGatewayStage"
DATASOURCE = {"type": "cloudwatch", "uid": f"${{{DATASOURCE_VARIABLE}}}"}
STAGE_REF = f"${{{grafana.STAGE_VARIABLE}}}"
# "*" is the CloudWatch datasource's wildcard: a dimension with it is left out of the search.
ALL = "*"
# Grafana 10.0's dashboard schema; later versions migrate it on load.
SCHEMA_VERSION = 38


def var(name: str) -> str:
    return f"${{{name}}}"


# ---- names over the Stage variable -----------------------------------------


@dataclass(frozen=True, slots=True)
class StageNames:
    """Resource names with `${Stage}` where the deployment stage goes."""

    app_name: str
    api_gateway_stage: str
    functions: dict[str, str]  # Chalice function name -> Lambda function name template
    tables: dict[str, str]  # logical table -> table name template


def _template(name: str, stage: str) -> str:
    if stage not in name:
        raise ValueError(f"{name!r} does not contain its stage {stage!r}: cannot template it")
    return name.replace(stage, STAGE_REF, 1)


def stage_names() -> StageNames:
    """Templates derived from the first deployment stage, checked against every other one."""
    stages = [Stage.load(name) for name in DEPLOY_STAGES]
    first = stages[0]
    settings = first.app_settings
    names = StageNames(
        app_name=first.app_name,
        api_gateway_stage=first.api_stage_name,
        functions={
            function: _template(lambda_name, first.name)
            for function, lambda_name in first.function_names().items()
        },
        tables={
            "runs": _template(settings.runs_table, first.name),
            "readings": _template(settings.readings_table, first.name),
        },
    )
    for stage in stages[1:]:
        actual = {
            **stage.function_names(),
            "runs": stage.app_settings.runs_table,
            "readings": stage.app_settings.readings_table,
        }
        templated = {**names.functions, **names.tables}
        for key, template in templated.items():
            if template.replace(STAGE_REF, stage.name) != actual[key]:
                raise ValueError(f"stage {stage.name}: {key} is {actual[key]!r}, not named like {template!r}")
    return names


# ---- queries ------------------------------------------------------------------


def metric_query(
    ref_id: str,
    namespace: str,
    metric_name: str,
    dimensions: dict[str, str],
    statistic: str,
    *,
    label: str = "",
    query_id: str = "",
    hide: bool = False,
) -> dict[str, Any]:
    """A metric search (builder mode); `matchExact` so only this exact dimension set matches."""
    return {
        "refId": ref_id,
        "datasource": DATASOURCE,
        "queryMode": "Metrics",
        "metricQueryType": 0,
        "metricEditorMode": 0,
        "region": "default",
        "namespace": namespace,
        "metricName": metric_name,
        "dimensions": dimensions,
        "matchExact": True,
        "statistic": statistic,
        "period": "",
        "id": query_id,
        "expression": "",
        "label": label,
        "hide": hide,
    }


def math_query(ref_id: str, expression: str, *, label: str) -> dict[str, Any]:
    """Metric math over other queries of the panel, referenced by their `id`."""
    return {
        "refId": ref_id,
        "datasource": DATASOURCE,
        "queryMode": "Metrics",
        "metricQueryType": 0,
        "metricEditorMode": 1,
        "region": "default",
        "namespace": "",
        "metricName": "",
        "dimensions": {},
        "matchExact": True,
        "statistic": "Sum",
        "period": "",
        "id": "",
        "expression": expression,
        "label": label,
        "hide": False,
    }


def insights_query(ref_id: str, sql: str) -> dict[str, Any]:
    """A CloudWatch Metrics Insights query: the way to sum a metric over some of its dimensions."""
    return {
        "refId": ref_id,
        "datasource": DATASOURCE,
        "queryMode": "Metrics",
        "metricQueryType": 1,
        "metricEditorMode": 1,
        "region": "default",
        "namespace": "",
        "metricName": "",
        "dimensions": {},
        "statistic": "Sum",
        "period": "",
        "id": "",
        "sqlExpression": sql,
        "label": "",
        "hide": False,
    }


def logs_query(ref_id: str, log_groups: list[str], expression: str) -> dict[str, Any]:
    """A Logs Insights query. Log groups by name (templated), in both the current and the
    legacy field: Grafana versions differ in which one they send."""
    return {
        "refId": ref_id,
        "datasource": DATASOURCE,
        "queryMode": "Logs",
        "region": "default",
        "id": "",
        "logGroups": [{"arn": name, "name": name} for name in log_groups],
        "logGroupNames": log_groups,
        "expression": expression,
        "statsGroups": [],
    }


def sensor_dimensions(*, with_type: str | None) -> dict[str, str]:
    dimensions = {
        metrics.SENSOR_DIMENSION: var(grafana.SENSOR_VARIABLE),
        metrics.USER_DIMENSION: var(grafana.USER_VARIABLE),
        metrics.RUN_DIMENSION: var(grafana.RUN_VARIABLE),
    }
    if with_type is not None:
        dimensions[metrics.TYPE_DIMENSION] = with_type
    return dimensions


def per_dimension_sum_sql(dimension: str) -> str:
    schema = ", ".join(sorted(metrics.INGESTED_DIMENSIONS))
    return (
        f'SELECT SUM({metrics.DATA_INGESTED}) FROM SCHEMA("{metrics.NAMESPACE}", {schema}) '
        f"GROUP BY {dimension} ORDER BY SUM() DESC LIMIT 20"
    )


def errors_logs_expression() -> str:
    # Logs Insights has no way to skip a filter, so the dashboard's "*" (all runs,
    # all users) is compared as a value: `concat` turns the variable into a field.
    return "\n".join(
        [
            "fields @timestamp, level, message, runId, user, requestId, route, error, exception_name,"
            f' concat("{var(grafana.RUN_VARIABLE)}", "") as selectedRun,'
            f' concat("{var(grafana.USER_VARIABLE)}", "") as selectedUser',
            '| filter level = "ERROR" or level = "CRITICAL"',
            f'| filter selectedRun = "{ALL}" or runId = selectedRun',
            f'| filter selectedUser = "{ALL}" or user = selectedUser',
            "| sort @timestamp desc",
            "| limit 200",
        ]
    )


# ---- panels -------------------------------------------------------------------


class PanelIds:
    def __init__(self) -> None:
        self._next = 0

    def __call__(self) -> int:
        self._next += 1
        return self._next


def grid(x: int, y: int, w: int, h: int) -> dict[str, int]:
    return {"x": x, "y": y, "w": w, "h": h}


def row(panel_id: int, title: str, y: int) -> dict[str, Any]:
    return {
        "id": panel_id,
        "type": "row",
        "title": title,
        "collapsed": False,
        "gridPos": grid(0, y, 24, 1),
        "panels": [],
    }


def timeseries(
    panel_id: int,
    title: str,
    description: str,
    position: dict[str, int],
    targets: list[dict[str, Any]],
    *,
    unit: str = "short",
    points: bool = False,
    **extra: Any,
) -> dict[str, Any]:
    return {
        "id": panel_id,
        "type": "timeseries",
        "title": title,
        "description": description,
        "datasource": DATASOURCE,
        "gridPos": position,
        "targets": targets,
        "fieldConfig": {
            "defaults": {
                "unit": unit,
                "custom": {
                    "drawStyle": "line",
                    "lineWidth": 1,
                    "fillOpacity": 0,
                    "showPoints": "always" if points else "never",
                    "pointSize": 4,
                    "spanNulls": True,
                },
            },
            "overrides": [],
        },
        "options": {
            "legend": {"displayMode": "list", "placement": "bottom", "showLegend": True},
            "tooltip": {"mode": "multi", "sort": "none"},
        },
        **extra,
    }


def bar_gauge(
    panel_id: int, title: str, description: str, position: dict[str, int], targets: list[dict[str, Any]]
) -> dict[str, Any]:
    return {
        "id": panel_id,
        "type": "bargauge",
        "title": title,
        "description": description,
        "datasource": DATASOURCE,
        "gridPos": position,
        "targets": targets,
        "fieldConfig": {"defaults": {"unit": "short", "min": 0}, "overrides": []},
        "options": {
            "reduceOptions": {"calcs": ["sum"], "fields": "", "values": False},
            "orientation": "horizontal",
            "displayMode": "gradient",
            "showUnfilled": True,
        },
    }


def table(
    panel_id: int, title: str, description: str, position: dict[str, int], targets: list[dict[str, Any]]
) -> dict[str, Any]:
    return {
        "id": panel_id,
        "type": "table",
        "title": title,
        "description": description,
        "datasource": DATASOURCE,
        "gridPos": position,
        "targets": targets,
        "fieldConfig": {"defaults": {"custom": {"cellOptions": {"type": "auto"}}}, "overrides": []},
        "options": {"showHeader": True, "cellHeight": "sm", "footer": {"show": False}},
    }


def sensor_panels(ids: PanelIds, y: int) -> list[dict[str, Any]]:
    type_ref = var(grafana.TYPE_VARIABLE)
    readings = timeseries(
        ids(),
        f"Readings · {type_ref}",
        "Each sensor's readings of one measurement type (one panel per type, repeated over the "
        "Type variable), for the selected run, user and sensors. Average per period.",
        grid(0, y, 8, 8),
        [
            metric_query(
                "A",
                metrics.NAMESPACE,
                metrics.SENSOR_READING,
                sensor_dimensions(with_type=type_ref),
                "Average",
                label="${PROP('Dim.SensorId')}",
            )
        ],
        points=True,
        repeat=grafana.TYPE_VARIABLE,
        repeatDirection="h",
        maxPerRow=3,
    )
    rate = timeseries(
        ids(),
        "Ingestion rate",
        "Readings stored per second, all selected sensors together.",
        grid(0, y + 8, 8, 8),
        [
            metric_query(
                "A",
                metrics.NAMESPACE,
                metrics.DATA_INGESTED,
                sensor_dimensions(with_type=None),
                "Sum",
                query_id="ingested",
                hide=True,
            ),
            math_query("B", "SUM(ingested) / PERIOD(ingested)", label="readings/s"),
        ],
        unit="short",
    )
    per_run = bar_gauge(
        ids(),
        "Readings per run",
        "Readings stored per run in the time range (top 20). `none` counts readings sent without a run.",
        grid(8, y + 8, 8, 8),
        [insights_query("A", per_dimension_sum_sql(metrics.RUN_DIMENSION))],
    )
    per_user = bar_gauge(
        ids(),
        "Readings per user",
        "Readings stored per user (X-User) in the time range (top 20).",
        grid(16, y + 8, 8, 8),
        [insights_query("A", per_dimension_sum_sql(metrics.USER_DIMENSION))],
    )
    return [readings, rate, per_run, per_user]


def errors_panel(ids: PanelIds, names: StageNames, y: int) -> dict[str, Any]:
    log_groups = [f"/aws/lambda/{name}" for name in names.functions.values()]
    return table(
        ids(),
        f"Errors · run {var(grafana.RUN_VARIABLE)}",
        "ERROR lines of this stage's functions (Logs Insights) for the selected run and user; "
        "with RunId = * for every run. Each line has the request id to find its other lines.",
        grid(0, y, 24, 8),
        [logs_query("A", log_groups, errors_logs_expression())],
    )


def api_and_lambda_panels(ids: PanelIds, names: StageNames, y: int) -> list[dict[str, Any]]:
    api = {"ApiName": var(API_NAME_VARIABLE), "Stage": var(API_STAGE_VARIABLE)}
    functions = list(names.functions.items())

    def per_function(metric: str, statistic: str, *, first_ref: int = 0) -> list[dict[str, Any]]:
        return [
            metric_query(
                chr(ord("A") + first_ref + index),
                "AWS/Lambda",
                metric,
                {"FunctionName": lambda_name},
                statistic,
                label=f"{function} {metric.lower()}",
            )
            for index, (function, lambda_name) in enumerate(functions)
        ]

    return [
        timeseries(
            ids(),
            "API latency",
            "API Gateway latency, from request received to response sent (includes the Lambda).",
            grid(0, y, 8, 8),
            [
                metric_query("A", "AWS/ApiGateway", "Latency", api, "p50", label="p50"),
                metric_query("B", "AWS/ApiGateway", "Latency", api, "p95", label="p95"),
                metric_query("C", "AWS/ApiGateway", "Latency", api, "p99", label="p99"),
            ],
            unit="ms",
        ),
        timeseries(
            ids(),
            "API requests, 4xx and 5xx",
            "Requests per period and how many ended in a client (4xx) or server (5xx) error.",
            grid(8, y, 8, 8),
            [
                metric_query("A", "AWS/ApiGateway", "Count", api, "Sum", label="requests"),
                metric_query("B", "AWS/ApiGateway", "4XXError", api, "Sum", label="4xx"),
                metric_query("C", "AWS/ApiGateway", "5XXError", api, "Sum", label="5xx"),
            ],
        ),
        timeseries(
            ids(),
            "Lambda invocations and errors",
            "Invocations and failed invocations of this stage's functions.",
            grid(16, y, 8, 8),
            per_function("Invocations", "Sum") + per_function("Errors", "Sum", first_ref=len(functions)),
        ),
        timeseries(
            ids(),
            "Lambda duration p95",
            "95th percentile of the functions' run time.",
            grid(0, y + 8, 8, 8),
            per_function("Duration", "p95"),
            unit="ms",
        ),
        timeseries(
            ids(),
            "Lambda throttles",
            "Invocations refused for lack of concurrency (reserved concurrency reached).",
            grid(8, y + 8, 8, 8),
            per_function("Throttles", "Sum"),
        ),
        timeseries(
            ids(),
            "Lambda concurrent executions",
            "Highest number of instances running at once, against the stage's reserved concurrency.",
            grid(16, y + 8, 8, 8),
            per_function("ConcurrentExecutions", "Maximum"),
        ),
    ]


def dynamodb_panels(ids: PanelIds, names: StageNames, y: int) -> list[dict[str, Any]]:
    def per_table(metric_pairs: list[tuple[str, str]]) -> list[dict[str, Any]]:
        targets = []
        for table_label, table_name in names.tables.items():
            for metric, short in metric_pairs:
                targets.append(({"TableName": table_name}, f"{table_label} {short}", metric))
                # Index writes are billed on their own: every reading is written to two indexes.
                targets.append(
                    (
                        {"TableName": table_name, "GlobalSecondaryIndexName": ALL},
                        f"{table_label} ${{PROP('Dim.GlobalSecondaryIndexName')}} {short}",
                        metric,
                    )
                )
        return [
            metric_query(chr(ord("A") + index), "AWS/DynamoDB", metric, dimensions, "Sum", label=label)
            for index, (dimensions, label, metric) in enumerate(targets)
        ]

    return [
        timeseries(
            ids(),
            "DynamoDB consumed capacity",
            "Read and write capacity units consumed per period by both tables and their indexes.",
            grid(0, y, 12, 8),
            per_table([("ConsumedReadCapacityUnits", "read"), ("ConsumedWriteCapacityUnits", "write")]),
        ),
        timeseries(
            ids(),
            "DynamoDB throttle events",
            "Requests DynamoDB throttled; the API answers them 503 with Retry-After.",
            grid(12, y, 12, 8),
            per_table([("ReadThrottleEvents", "read"), ("WriteThrottleEvents", "write")]),
        ),
    ]


# ---- variables ------------------------------------------------------------------


def textbox(name: str, label: str, default: str, description: str) -> dict[str, Any]:
    option = {"selected": True, "text": default, "value": default}
    return {
        "name": name,
        "label": label,
        "type": "textbox",
        "description": description,
        "query": default,
        "current": option,
        "options": [option],
        "hide": 0,
    }


def variables(names: StageNames) -> list[dict[str, Any]]:
    all_selected = {"selected": True, "text": ["All"], "value": ["$__all"]}
    measurement_options = [{"selected": False, "text": t, "value": t} for t in MEASUREMENT_FIELDS]
    return [
        {
            "name": DATASOURCE_VARIABLE,
            "label": "CloudWatch",
            "type": "datasource",
            "query": "cloudwatch",
            "current": {},
            "options": [],
            "refresh": 1,
            "regex": "",
            "hide": 0,
        },
        textbox(
            grafana.STAGE_VARIABLE,
            "Stage",
            DEPLOY_STAGES[0],
            "Deployment stage: picks the stage's functions, tables and log groups by name.",
        ),
        textbox(
            API_NAME_VARIABLE,
            "API name",
            names.app_name,
            "API Gateway REST API name (`chalice deploy` names it after the app).",
        ),
        textbox(API_STAGE_VARIABLE, "API stage", names.api_gateway_stage, "API Gateway stage name."),
        textbox(grafana.RUN_VARIABLE, "Run", ALL, "Run id; * for all runs. Run links fill it in."),
        textbox(grafana.USER_VARIABLE, "User", ALL, "X-User of the readings; * for all users."),
        {
            "name": grafana.SENSOR_VARIABLE,
            "label": "Sensors",
            "type": "query",
            "datasource": DATASOURCE,
            "query": {
                "refId": "SensorIds",
                "queryType": "dimensionValues",
                "region": "default",
                "namespace": metrics.NAMESPACE,
                "metricName": metrics.SENSOR_READING,
                "dimensionKey": metrics.SENSOR_DIMENSION,
                "dimensionFilters": {},
            },
            "definition": "",
            "multi": True,
            "includeAll": True,
            "allValue": ALL,
            "current": all_selected,
            "options": [],
            "refresh": 2,
            "sort": 1,
            "regex": "",
            "hide": 0,
        },
        {
            "name": grafana.TYPE_VARIABLE,
            "label": "Measurement",
            "type": "custom",
            "query": ",".join(MEASUREMENT_FIELDS),
            "multi": True,
            "includeAll": True,
            "current": all_selected,
            "options": [{"selected": True, "text": "All", "value": "$__all"}, *measurement_options],
            "hide": 0,
        },
    ]


# ---- the dashboard -------------------------------------------------------------------


def build() -> dict[str, Any]:
    names = stage_names()
    ids = PanelIds()
    panels: list[dict[str, Any]] = [row(ids(), f"Run {var(grafana.RUN_VARIABLE)}", 0)]
    panels += sensor_panels(ids, 1)
    panels.append(errors_panel(ids, names, 17))
    panels.append(row(ids(), f"API and Lambda · stage {STAGE_REF}", 25))
    panels += api_and_lambda_panels(ids, names, 26)
    panels.append(row(ids(), "DynamoDB", 42))
    panels += dynamodb_panels(ids, names, 43)
    return {
        "uid": grafana.DASHBOARD_UID,
        "title": grafana.DASHBOARD_TITLE,
        "description": "IoT Playground serverless API: a run's sensor readings, ingestion, "
        "API Gateway, Lambda and DynamoDB health, and error logs.",
        "tags": ["iot-playground", "serverless"],
        "id": None,
        "version": 1,
        "schemaVersion": SCHEMA_VERSION,
        "editable": True,
        "graphTooltip": 1,
        "timezone": "browser",
        "time": {"from": "now-1h", "to": "now"},
        "refresh": "30s",
        "fiscalYearStartMonth": 0,
        "liveNow": False,
        "links": [],
        "annotations": {
            "list": [
                {
                    "builtIn": 1,
                    "datasource": {"type": "grafana", "uid": "-- Grafana --"},
                    "enable": True,
                    "hide": True,
                    "iconColor": "rgba(0, 211, 255, 1)",
                    "name": "Annotations & Alerts",
                    "type": "dashboard",
                }
            ]
        },
        "templating": {"list": variables(names)},
        "panels": panels,
    }


def render() -> str:
    return json.dumps(build(), indent=2, ensure_ascii=False) + "\n"


def write_dashboard(*, check: bool = False) -> int:
    """`iot-playground dashboard`: rewrite the committed file (with check: exit 1 if it is out of date)."""
    text = render()
    if check:
        current = DASHBOARD_PATH.read_text() if DASHBOARD_PATH.exists() else ""
        if current != text:
            print(f"{DASHBOARD_PATH} is out of date: run `iot-playground dashboard`", file=sys.stderr)
            return 1
        return 0
    DASHBOARD_PATH.write_text(text)
    print(f"wrote {DASHBOARD_PATH}")
    return 0
