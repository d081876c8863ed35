"""Builds `grafana/dashboards/iot-serverless.json` from the facts the code owns.

Readings panels read the API's EMF lines (`chalicelib.emf_spec`) with CloudWatch Logs Insights
in the API handler's log group; the one custom metric (`DataIngested` by `Stage`) draws the
stage's ingestion. Uid and variable names come from `chalicelib.grafana` (run links use them),
function, table and API stage names from `.chalice/config.json`, templated over `${Stage}`.
No account or ARN, and the datasource is a variable: the file imports as is.

    iot-playground dashboard          # rewrite the committed file
    iot-playground dashboard --check  # exit 1 if it is out of date
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from typing import Any

# The names the app owns (the EMF line, the run links' uid and variables): imported here only.
from chalicelib import ingest as emf
from chalicelib import runs as links
from chalicelib.schemas import MEASUREMENT_FIELDS
from iot_playground.common.stages import DEPLOY_STAGES, PROJECT_ROOT, Stage

DASHBOARD_PATH = PROJECT_ROOT / "grafana" / "dashboards" / f"{links.DASHBOARD_UID}.json"
DATASOURCE_VARIABLE = "datasource"
API_NAME_VARIABLE = "ApiName"
API_STAGE_VARIABLE = "ApiGatewayStage"
DATASOURCE = {"type": "cloudwatch", "uid": f"${{{DATASOURCE_VARIABLE}}}"}
STAGE_REF = f"${{{links.STAGE_VARIABLE}}}"
ALL = "*"  # a text variable's "every run / user / sensor"; also CloudWatch's dimension wildcard
# Every refresh runs each Logs Insights query over the time range, billed per GB scanned.
REFRESH_SECONDS = 60
SCHEMA_VERSION = 38  # Grafana 10.0's dashboard schema; later versions migrate it on load
Box = tuple[int, int, int, int]  # x, y, w, h
J = dict[str, Any]  # a JSON object

DESCRIPTIONS = {
    "readings": "Each sensor's readings of one type (a panel per type, repeated over Type) for the "
    "selected run, user and sensor: average per period of the EMF lines (Logs Insights).",
    "ingested": "Readings stored per minute: the stage's (the DataIngested metric, every run) and the "
    "selected run, user and sensor's by channel (http, mqtt), from the EMF lines.",
    "per run": "Readings stored per run and user (X-User) in the time range, top 20, every run "
    "whatever the Run variable says; run `none` is readings sent without a run.",
    "errors": "ERROR lines of the stage's functions for the selected run and user (* for all); "
    "each carries the request id to find its other lines.",
    "latency": "API Gateway latency, request received to response sent (includes the Lambda).",
    "requests": "Requests per period and how many ended in a client (4xx) or server (5xx) error.",
    "invocations": "Invocations and failed invocations of the stage's functions.",
    "duration": "95th percentile of the functions' run time.",
    "throttles": "Invocations refused for lack of concurrency (reserved concurrency reached).",
    "concurrency": "Most instances running at once, against the stage's reserved concurrency.",
    "capacity": "Read and write capacity units consumed per period by both tables and their indexes.",
    "throttle events": "Requests DynamoDB throttled; the API answers them 503 with Retry-After.",
}


def var(name: str) -> str:
    return f"${{{name}}}"


@dataclass(frozen=True, slots=True)
class StageNames:
    """Resource names with `${Stage}` where the deployment stage goes."""

    app_name: str
    api_gateway_stage: str
    functions: dict[str, str]  # Chalice function name -> Lambda function name template
    tables: dict[str, str]  # logical table -> table name template


def stage_names() -> StageNames:
    """Templates derived from the first deployment stage, checked against every other one."""
    first, *others = (Stage.load(name) for name in DEPLOY_STAGES)

    def named(stage: Stage) -> dict[str, str]:
        tables = {"runs": stage.app_settings.runs_table, "readings": stage.app_settings.readings_table}
        return {**stage.function_names(), **tables}

    templates = {}
    for key, name in named(first).items():
        if first.name not in name:
            raise ValueError(f"{name!r} does not contain its stage {first.name!r}: cannot template it")
        templates[key] = name.replace(first.name, STAGE_REF, 1)
    for stage in others:
        for key, name in named(stage).items():
            if templates[key].replace(STAGE_REF, stage.name) != name:
                raise ValueError(f"stage {stage.name}: {key} is {name!r}, not named like {templates[key]!r}")
    tables = {key: templates.pop(key) for key in ("runs", "readings")}
    return StageNames(first.app_name, first.api_stage_name, templates, tables)


# ---- queries ------------------------------------------------------------------


def metric_query(ref: str, namespace: str, metric: str, dims: dict[str, str], stat: str, **extra: Any) -> Any:
    """A metric search (builder mode); `matchExact` so only this exact dimension set matches."""
    query: J = {"refId": ref, "datasource": DATASOURCE, "queryMode": "Metrics", "metricQueryType": 0}
    query |= {"metricEditorMode": 0, "region": "default", "namespace": namespace, "metricName": metric}
    query |= {"dimensions": dims, "matchExact": True, "statistic": stat, "period": ""}
    return query | {"id": "", "expression": "", "label": "", "hide": False} | extra


def logs_query(ref: str, log_groups: list[str], expression: str, *groups: str) -> dict[str, Any]:
    """A Logs Insights query. Log groups by name (templated), in the current and the legacy field
    (Grafana versions differ in which they send); `statsGroups` are the `stats ... by` fields
    besides the time bin: one series per value."""
    query: J = {"refId": ref, "datasource": DATASOURCE, "queryMode": "Logs", "region": "default", "id": ""}
    query |= {"logGroups": [{"arn": name, "name": name} for name in log_groups]}
    return query | {"logGroupNames": log_groups, "expression": expression, "statsGroups": list(groups)}


def chosen(pairs: list[tuple[str, str]], *commands: str, fields: str = "fields ") -> str:
    """A Logs Insights query over the lines whose (field, variable) pairs match. It cannot skip a
    filter, so each variable becomes a field (`concat`) compared as a value: "*" matches all."""
    head = fields + ", ".join(f'concat("{var(v)}", "") as chosen_{f}' for f, v in pairs)
    filters = [f'| filter chosen_{f} = "{ALL}" or {f} = chosen_{f}' for f, _ in pairs]
    return "\n".join([head, *commands[:1], *filters, *commands[1:]])


def emf_expression(*commands: str) -> str:
    """Over the EMF lines (those with DataIngested) of the selected run, user and sensor."""
    pairs = [(emf.RUN_FIELD, links.RUN_VARIABLE), (emf.USER_FIELD, links.USER_VARIABLE)]
    pairs.append((emf.SENSOR_FIELD, links.SENSOR_VARIABLE))
    return chosen(pairs, f"| filter ispresent({emf.DATA_INGESTED})", *commands)


def errors_expression() -> str:
    """ERROR lines of the app's logger (chalicelib/logs.py: level, runId, user, requestId...)."""
    fields = "fields @timestamp, level, message, runId, user, requestId, route, error, exception_name, "
    pairs = [("runId", links.RUN_VARIABLE), ("user", links.USER_VARIABLE)]
    level = '| filter level = "ERROR" or level = "CRITICAL"'
    return chosen(pairs, level, "| sort @timestamp desc", "| limit 200", fields=fields)


# ---- panels -------------------------------------------------------------------


def panel(kind: str, title: str, about: str, box: Box, targets: list[Any], **rest: Any) -> dict[str, Any]:
    x, y, w, h = box
    common = {"type": kind, "title": title, "description": DESCRIPTIONS[about], "datasource": DATASOURCE}
    return common | {"gridPos": {"x": x, "y": y, "w": w, "h": h}, "targets": targets} | rest


def timeseries(title: str, about: str, box: Box, targets: list[Any], unit: str = "short", **rest: Any) -> Any:
    custom = {"drawStyle": "line", "lineWidth": 1, "fillOpacity": 0, "pointSize": 4, "spanNulls": True}
    custom["showPoints"] = "always" if rest.pop("points", False) else "never"
    options = {"legend": {"displayMode": "list", "placement": "bottom", "showLegend": True}}
    options["tooltip"] = {"mode": "multi", "sort": "none"}
    config = {"defaults": {"unit": unit, "custom": custom}, "overrides": []}
    return panel("timeseries", title, about, box, targets, fieldConfig=config, options=options, **rest)


def table(title: str, about: str, box: Box, target: dict[str, Any]) -> dict[str, Any]:
    config = {"defaults": {"custom": {"cellOptions": {"type": "auto"}}}, "overrides": []}
    options = {"showHeader": True, "cellHeight": "sm", "footer": {"show": False}}
    return panel("table", title, about, box, [target], fieldConfig=config, options=options)


def run_panels(names: StageNames, y: int) -> list[dict[str, Any]]:
    api_logs = [f"/aws/lambda/{names.functions['api_handler']}"]
    all_logs = [f"/aws/lambda/{name}" for name in names.functions.values()]
    readings = emf_expression(
        f'| filter {emf.TYPE_FIELD} = "{var(links.TYPE_VARIABLE)}" and ispresent({emf.SENSOR_READING})',
        f"| stats avg({emf.SENSOR_READING}) as reading by bin($__interval), {emf.SENSOR_FIELD}",
        "| limit 10000",
    )
    per_channel = f"| stats sum({emf.DATA_INGESTED}) as readings by bin(1m), {emf.CHANNEL_FIELD}"
    top = [f"fields {emf.RUN_FIELD}, {emf.USER_FIELD}", f"| filter ispresent({emf.DATA_INGESTED})"]
    top += [f"| stats sum({emf.DATA_INGESTED}) as readings by {emf.RUN_FIELD}, {emf.USER_FIELD}"]
    ingested = {emf.STAGE_DIMENSION: STAGE_REF}
    stage_rate = metric_query(
        "A", emf.NAMESPACE, emf.DATA_INGESTED, ingested, "Sum", period="60", label="all"
    )
    repeat: J = {"repeat": links.TYPE_VARIABLE, "repeatDirection": "h", "maxPerRow": 3}
    return [
        timeseries(
            f"Readings · {var(links.TYPE_VARIABLE)}",
            "readings",
            (0, y, 8, 8),
            [logs_query("A", api_logs, readings, emf.SENSOR_FIELD)],
            points=True,
            interval="10s",
            maxDataPoints=60,
            **repeat,
        ),
        timeseries(
            "Readings ingested per minute",
            "ingested",
            (0, y + 8, 8, 8),
            [stage_rate, logs_query("B", api_logs, emf_expression(per_channel), emf.CHANNEL_FIELD)],
        ),
        table(
            "Readings per run and user",
            "per run",
            (8, y + 8, 16, 8),
            logs_query("A", api_logs, "\n".join([*top, "| sort readings desc", "| limit 20"])),
        ),
        table(
            f"Errors · run {var(links.RUN_VARIABLE)}",
            "errors",
            (0, y + 16, 24, 8),
            logs_query("A", all_logs, errors_expression()),
        ),
    ]


def api_and_lambda_panels(names: StageNames, y: int) -> list[dict[str, Any]]:
    api = {"ApiName": var(API_NAME_VARIABLE), "Stage": var(API_STAGE_VARIABLE)}
    functions = list(names.functions.items())

    def per_function(metric: str, stat: str, first: int = 0) -> list[dict[str, Any]]:
        labelled = [({"FunctionName": name}, f"{f} {metric.lower()}") for f, name in functions]
        return [
            metric_query(chr(65 + first + i), "AWS/Lambda", metric, dims, stat, label=label)
            for i, (dims, label) in enumerate(labelled)
        ]

    def gateway(metrics: list[tuple[str, str, str]]) -> list[dict[str, Any]]:
        return [
            metric_query(chr(65 + i), "AWS/ApiGateway", metric, api, stat, label=label)
            for i, (metric, stat, label) in enumerate(metrics)
        ]

    invocations = per_function("Invocations", "Sum") + per_function("Errors", "Sum", len(functions))
    requests = gateway([("Count", "Sum", "requests"), ("4XXError", "Sum", "4xx"), ("5XXError", "Sum", "5xx")])
    latency = gateway([("Latency", p, p) for p in ("p50", "p95", "p99")])
    concurrency = per_function("ConcurrentExecutions", "Maximum")
    duration = per_function("Duration", "p95")
    return [
        timeseries("API latency", "latency", (0, y, 8, 8), latency, "ms"),
        timeseries("API requests, 4xx and 5xx", "requests", (8, y, 8, 8), requests),
        timeseries("Lambda invocations and errors", "invocations", (16, y, 8, 8), invocations),
        timeseries("Lambda duration p95", "duration", (0, y + 8, 8, 8), duration, "ms"),
        timeseries("Lambda throttles", "throttles", (8, y + 8, 8, 8), per_function("Throttles", "Sum")),
        timeseries("Lambda concurrent executions", "concurrency", (16, y + 8, 8, 8), concurrency),
    ]


def dynamodb_panels(names: StageNames, y: int) -> list[dict[str, Any]]:
    def per_table(pairs: list[tuple[str, str]]) -> list[dict[str, Any]]:
        targets = []
        for label, table_name in names.tables.items():
            for metric, short in pairs:
                targets.append(({"TableName": table_name}, f"{label} {short}", metric))
                # Index capacity is billed apart (the runs table has indexes).
                gsi = {"TableName": table_name, "GlobalSecondaryIndexName": ALL}
                targets.append((gsi, f"{label} ${{PROP('Dim.GlobalSecondaryIndexName')}} {short}", metric))
        return [
            metric_query(chr(65 + i), "AWS/DynamoDB", metric, dims, "Sum", label=label)
            for i, (dims, label, metric) in enumerate(targets)
        ]

    capacity = per_table([("ConsumedReadCapacityUnits", "read"), ("ConsumedWriteCapacityUnits", "write")])
    throttles = per_table([("ReadThrottleEvents", "read"), ("WriteThrottleEvents", "write")])
    return [
        timeseries("DynamoDB consumed capacity", "capacity", (0, y, 12, 8), capacity),
        timeseries("DynamoDB throttle events", "throttle events", (12, y, 12, 8), throttles),
    ]


def row(title: str, y: int) -> dict[str, Any]:
    box = {"x": 0, "y": y, "w": 24, "h": 1}
    return {"type": "row", "title": title, "collapsed": False, "gridPos": box, "panels": []}


# ---- variables and the dashboard ----------------------------------------------------


def textbox(name: str, label: str, default: str, description: str) -> dict[str, Any]:
    option = {"selected": True, "text": default, "value": default}
    variable = {"name": name, "label": label, "type": "textbox", "description": description, "query": default}
    return variable | {"current": option, "options": [option], "hide": 0}


def variables(names: StageNames) -> list[dict[str, Any]]:
    source: J = {"name": DATASOURCE_VARIABLE, "label": "CloudWatch", "type": "datasource"}
    source["query"] = "cloudwatch"
    source |= {"current": {}, "options": [], "refresh": 1, "regex": "", "hide": 0}
    types = {"name": links.TYPE_VARIABLE, "label": "Measurement", "type": "custom", "multi": True}
    types |= {"query": ",".join(MEASUREMENT_FIELDS), "includeAll": True, "hide": 0}
    types["current"] = {"selected": True, "text": ["All"], "value": ["$__all"]}
    options = [{"selected": False, "text": t, "value": t} for t in MEASUREMENT_FIELDS]
    types["options"] = [{"selected": True, "text": "All", "value": "$__all"}, *options]
    return [
        source,
        textbox(links.STAGE_VARIABLE, "Stage", DEPLOY_STAGES[0], "Deployment stage: its names, logs."),
        textbox(API_NAME_VARIABLE, "API name", names.app_name, "API Gateway REST API name (the app's)."),
        textbox(API_STAGE_VARIABLE, "API stage", names.api_gateway_stage, "API Gateway stage name."),
        textbox(links.RUN_VARIABLE, "Run", ALL, "Run id; * for all runs. Run links fill it in."),
        textbox(links.USER_VARIABLE, "User", ALL, "X-User of the readings; * for all users."),
        textbox(links.SENSOR_VARIABLE, "Sensor", ALL, "Sensor id; * for every sensor (a series each)."),
        types,
    ]


def build() -> dict[str, Any]:
    names = stage_names()
    panels = [row(f"Run {var(links.RUN_VARIABLE)}", 0), *run_panels(names, 1)]
    panels += [row(f"API and Lambda · stage {STAGE_REF}", 25), *api_and_lambda_panels(names, 26)]
    panels += [row("DynamoDB", 42), *dynamodb_panels(names, 43)]
    annotation = {"builtIn": 1, "datasource": {"type": "grafana", "uid": "-- Grafana --"}, "enable": True}
    annotation |= {"hide": True, "iconColor": "rgba(0, 211, 255, 1)", "name": "Annotations & Alerts"}
    board: J = {"uid": links.DASHBOARD_UID, "title": links.DASHBOARD_TITLE}
    board["tags"] = ["iot-playground", "serverless"]
    board["description"] = "IoT Playground serverless API: a run's readings, ingestion, health, errors."
    board |= {"id": None, "version": 1, "schemaVersion": SCHEMA_VERSION, "editable": True, "graphTooltip": 1}
    board |= {"timezone": "browser", "time": {"from": "now-1h", "to": "now"}, "liveNow": False, "links": []}
    board |= {"refresh": f"{REFRESH_SECONDS // 60}m", "fiscalYearStartMonth": 0}
    board["annotations"] = {"list": [annotation | {"type": "dashboard"}]}
    board["templating"] = {"list": variables(names)}
    board["panels"] = [{"id": n, **p} for n, p in enumerate(panels, start=1)]
    return board


def logs_queries_per_refresh(board: dict[str, Any]) -> int:
    """Logs Insights queries one refresh starts (a panel repeated over Type runs once per type)."""
    return sum(
        (len(MEASUREMENT_FIELDS) if p.get("repeat") == links.TYPE_VARIABLE else 1)
        * sum(t.get("queryMode") == "Logs" for t in p.get("targets", []))
        for p in board["panels"]
    )


def render() -> str:
    return json.dumps(build(), indent=2, ensure_ascii=False) + "\n"


def write_dashboard(*, check: bool = False) -> int:
    """`iot-playground dashboard`: rewrite the committed file (with check: exit 1 if it is out of date)."""
    text = render()
    if check:
        if stale := (DASHBOARD_PATH.read_text() if DASHBOARD_PATH.exists() else "") != text:
            print(f"{DASHBOARD_PATH} is out of date: run `iot-playground dashboard`", file=sys.stderr)
        return int(stale)
    DASHBOARD_PATH.write_text(text)
    print(f"wrote {DASHBOARD_PATH}")
    return 0
