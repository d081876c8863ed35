"""Builds `grafana/dashboards/iot-serverless.json` from the facts the code owns (`iot-playground
dashboard` rewrites it, `--check` exits 1 when it is out of date). Readings panels read the API's EMF
lines (`chalicelib.emf_spec`) with Logs Insights in the API handler's log group; the one custom metric
(`DataIngested` by `Stage`) draws the stage's ingestion. Names come from `.chalice/config.json`,
templated over `${Stage}`; no account or ARN, and the datasource is a variable: the file imports as is.
"""

from __future__ import annotations

import json
import sys
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


def stage_names() -> tuple[Stage, dict[str, str]]:
    """The first deployment stage, and its function and table names with `${Stage}` where the stage
    goes, checked against every other stage's."""
    stages = [Stage.load(name) for name in DEPLOY_STAGES]

    def named(stage: Stage) -> dict[str, str]:
        tables = {"runs": stage.app_settings.runs_table, "readings": stage.app_settings.readings_table}
        return {**stage.function_names(), **tables}

    templates = {key: name.replace(stages[0].name, STAGE_REF, 1) for key, name in named(stages[0]).items()}
    for stage in stages:
        for key, name in named(stage).items():
            if STAGE_REF not in templates[key] or templates[key].replace(STAGE_REF, stage.name) != name:
                raise ValueError(f"stage {stage.name}: {key} is {name!r}, not named like {templates[key]!r}")
    return stages[0], templates


def metric_query(ref: str, namespace: str, metric: str, dims: dict[str, str], stat: str, **extra: Any) -> Any:
    """A metric search (builder mode); `matchExact` so only this exact dimension set matches."""
    query: J = {"refId": ref, "datasource": DATASOURCE, "queryMode": "Metrics", "metricQueryType": 0}
    query |= {"metricEditorMode": 0, "region": "default", "namespace": namespace, "metricName": metric}
    query |= {"dimensions": dims, "matchExact": True, "statistic": stat, "period": ""}
    return query | {"id": "", "expression": "", "label": "", "hide": False} | extra


def metric_queries(namespace: str, specs: list[tuple[str, dict[str, str], str, str]]) -> list[J]:
    """A query per (metric, dimensions, statistic, label), their refIds A, B, C..."""
    return [metric_query(chr(65 + i), namespace, *spec[:3], label=spec[3]) for i, spec in enumerate(specs)]


def logs_query(ref: str, log_groups: list[str], expression: str, *groups: str) -> J:
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


def panel(kind: str, title: str, about: str, box: Box, targets: list[Any], **rest: Any) -> J:
    x, y, w, h = box
    common = {"type": kind, "title": title, "description": DESCRIPTIONS[about], "datasource": DATASOURCE}
    return common | {"gridPos": {"x": x, "y": y, "w": w, "h": h}, "targets": targets} | rest


def timeseries(title: str, about: str, box: Box, targets: list[Any], unit: str = "short", **rest: Any) -> J:
    custom = {"drawStyle": "line", "lineWidth": 1, "fillOpacity": 0, "pointSize": 4, "spanNulls": True}
    custom["showPoints"] = "always" if rest.pop("points", False) else "never"
    options = {"legend": {"displayMode": "list", "placement": "bottom", "showLegend": True}}
    options["tooltip"] = {"mode": "multi", "sort": "none"}
    config = {"defaults": {"unit": unit, "custom": custom}, "overrides": []}
    return panel("timeseries", title, about, box, targets, fieldConfig=config, options=options, **rest)


def table(title: str, about: str, box: Box, target: J) -> J:
    config = {"defaults": {"custom": {"cellOptions": {"type": "auto"}}}, "overrides": []}
    options = {"showHeader": True, "cellHeight": "sm", "footer": {"show": False}}
    return panel("table", title, about, box, [target], fieldConfig=config, options=options)


def row(title: str, y: int) -> J:
    box = {"x": 0, "y": y, "w": 24, "h": 1}
    return {"type": "row", "title": title, "collapsed": False, "gridPos": box, "panels": []}


def panels(stage: Stage, names: dict[str, str]) -> list[J]:
    """Rows of a run's readings and errors, of the API's and the functions' health, of the tables'."""
    functions = [(f, names[f]) for f in stage.function_names()]
    run, types = var(links.RUN_VARIABLE), var(links.TYPE_VARIABLE)
    api_logs, all_logs = [f"/aws/lambda/{names['api_handler']}"], [f"/aws/lambda/{n}" for _, n in functions]
    readings = emf_expression(
        f'| filter {emf.TYPE_FIELD} = "{types}" and ispresent({emf.SENSOR_READING})',
        f"| stats avg({emf.SENSOR_READING}) as reading by bin($__interval), {emf.SENSOR_FIELD}",
        "| limit 10000",
    )
    per_channel = f"| stats sum({emf.DATA_INGESTED}) as readings by bin(1m), {emf.CHANNEL_FIELD}"
    top = [f"fields {emf.RUN_FIELD}, {emf.USER_FIELD}", f"| filter ispresent({emf.DATA_INGESTED})"]
    top += [f"| stats sum({emf.DATA_INGESTED}) as readings by {emf.RUN_FIELD}, {emf.USER_FIELD}"]
    per_run = logs_query("A", api_logs, "\n".join([*top, "| sort readings desc", "| limit 20"]))
    # ERROR lines of the app's logger (chalicelib/logs.py: level, runId, user, requestId...).
    fields = "fields @timestamp, level, message, runId, user, requestId, route, error, exception_name, "
    level, last = '| filter level = "ERROR" or level = "CRITICAL"', ["| sort @timestamp desc", "| limit 200"]
    pairs = [("runId", links.RUN_VARIABLE), ("user", links.USER_VARIABLE)]
    errors = logs_query("A", all_logs, chosen(pairs, level, *last, fields=fields))
    ingested = {emf.STAGE_DIMENSION: STAGE_REF}
    rate = metric_query("A", emf.NAMESPACE, emf.DATA_INGESTED, ingested, "Sum", period="60", label="all")
    by_channel = logs_query("B", api_logs, emf_expression(per_channel), emf.CHANNEL_FIELD)
    by_sensor = logs_query("A", api_logs, readings, emf.SENSOR_FIELD)
    each_type: J = {"points": True, "interval": "10s", "maxDataPoints": 60, "repeat": links.TYPE_VARIABLE}
    each_type |= {"repeatDirection": "h", "maxPerRow": 3}
    api = {"ApiName": var(API_NAME_VARIABLE), "Stage": var(API_STAGE_VARIABLE)}
    gateway = [("Count", "Sum", "requests"), ("4XXError", "Sum", "4xx"), ("5XXError", "Sum", "5xx")]
    requests = metric_queries("AWS/ApiGateway", [(m, api, stat, label) for m, stat, label in gateway])
    latency = metric_queries("AWS/ApiGateway", [("Latency", api, p, p) for p in ("p50", "p95", "p99")])

    def per_function(*metrics: tuple[str, str]) -> list[J]:
        specs = [(m, {"FunctionName": n}, s, f"{f} {m.lower()}") for m, s in metrics for f, n in functions]
        return metric_queries("AWS/Lambda", specs)

    def per_table(*metrics: tuple[str, str]) -> list[J]:
        specs: list[Any] = []
        for label, n in [("runs", names["runs"]), ("readings", names["readings"])]:
            index = f"{label} ${{PROP('Dim.GlobalSecondaryIndexName')}}"  # billed apart (runs has indexes)
            each = [({"TableName": n}, label), ({"TableName": n, "GlobalSecondaryIndexName": ALL}, index)]
            specs += [(m, dims, "Sum", f"{name} {short}") for m, short in metrics for dims, name in each]
        return metric_queries("AWS/DynamoDB", specs)

    invocations = per_function(("Invocations", "Sum"), ("Errors", "Sum"))
    concurrency = per_function(("ConcurrentExecutions", "Maximum"))
    capacity = per_table(("ConsumedReadCapacityUnits", "read"), ("ConsumedWriteCapacityUnits", "write"))
    throttles = per_table(("ReadThrottleEvents", "read"), ("WriteThrottleEvents", "write"))
    return [
        row(f"Run {run}", 0),
        timeseries(f"Readings · {types}", "readings", (0, 1, 8, 8), [by_sensor], **each_type),
        timeseries("Readings ingested per minute", "ingested", (0, 9, 8, 8), [rate, by_channel]),
        table("Readings per run and user", "per run", (8, 9, 16, 8), per_run),
        table(f"Errors · run {run}", "errors", (0, 17, 24, 8), errors),
        row(f"API and Lambda · stage {STAGE_REF}", 25),
        timeseries("API latency", "latency", (0, 26, 8, 8), latency, "ms"),
        timeseries("API requests, 4xx and 5xx", "requests", (8, 26, 8, 8), requests),
        timeseries("Lambda invocations and errors", "invocations", (16, 26, 8, 8), invocations),
        timeseries("Lambda duration p95", "duration", (0, 34, 8, 8), per_function(("Duration", "p95")), "ms"),
        timeseries("Lambda throttles", "throttles", (8, 34, 8, 8), per_function(("Throttles", "Sum"))),
        timeseries("Lambda concurrent executions", "concurrency", (16, 34, 8, 8), concurrency),
        row("DynamoDB", 42),
        timeseries("DynamoDB consumed capacity", "capacity", (0, 43, 12, 8), capacity),
        timeseries("DynamoDB throttle events", "throttle events", (12, 43, 12, 8), throttles),
    ]


def textbox(name: str, label: str, default: str, description: str) -> J:
    option = {"selected": True, "text": default, "value": default}
    variable = {"name": name, "label": label, "type": "textbox", "description": description, "query": default}
    return variable | {"current": option, "options": [option], "hide": 0}


def build() -> J:
    stage, names = stage_names()
    source: J = {"name": DATASOURCE_VARIABLE, "label": "CloudWatch", "type": "datasource"}
    source["query"] = "cloudwatch"
    source |= {"current": {}, "options": [], "refresh": 1, "regex": "", "hide": 0}
    types = {"name": links.TYPE_VARIABLE, "label": "Measurement", "type": "custom", "multi": True}
    types |= {"query": ",".join(MEASUREMENT_FIELDS), "includeAll": True, "hide": 0}
    types["current"] = {"selected": True, "text": ["All"], "value": ["$__all"]}
    options = [{"selected": False, "text": t, "value": t} for t in MEASUREMENT_FIELDS]
    types["options"] = [{"selected": True, "text": "All", "value": "$__all"}, *options]
    variables = [
        source,
        textbox(links.STAGE_VARIABLE, "Stage", DEPLOY_STAGES[0], "Deployment stage: its names, logs."),
        textbox(API_NAME_VARIABLE, "API name", stage.app_name, "API Gateway REST API name (the app's)."),
        textbox(API_STAGE_VARIABLE, "API stage", stage.api_stage_name, "API Gateway stage name."),
        textbox(links.RUN_VARIABLE, "Run", ALL, "Run id; * for all runs. Run links fill it in."),
        textbox(links.USER_VARIABLE, "User", ALL, "X-User of the readings; * for all users."),
        textbox(links.SENSOR_VARIABLE, "Sensor", ALL, "Sensor id; * for every sensor (a series each)."),
        types,
    ]
    annotation = {"builtIn": 1, "datasource": {"type": "grafana", "uid": "-- Grafana --"}, "enable": True}
    annotation |= {"hide": True, "iconColor": "rgba(0, 211, 255, 1)", "name": "Annotations & Alerts"}
    board: J = {"uid": links.DASHBOARD_UID, "title": links.DASHBOARD_TITLE}
    board["tags"] = ["iot-playground", "serverless"]
    board["description"] = "IoT Playground serverless API: a run's readings, ingestion, health, errors."
    board |= {"id": None, "version": 1, "schemaVersion": SCHEMA_VERSION, "editable": True, "graphTooltip": 1}
    board |= {"timezone": "browser", "time": {"from": "now-1h", "to": "now"}, "liveNow": False, "links": []}
    board |= {"refresh": f"{REFRESH_SECONDS // 60}m", "fiscalYearStartMonth": 0}
    board["annotations"] = {"list": [annotation | {"type": "dashboard"}]}
    board["templating"] = {"list": variables}
    board["panels"] = [{"id": n, **p} for n, p in enumerate(panels(stage, names), start=1)]
    return board


def logs_queries_per_refresh(board: J) -> int:
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
