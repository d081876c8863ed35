"""The Grafana dashboard, edited in Grafana and exported as is, against the code: its Logs Insights
queries name only fields of the EMF line `chalicelib/ingest.py` writes (or of the app's log lines,
for errors), its one metric is that line's, its variables resolve and are the ones run links use,
and its resource names are each deployed stage's."""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import jsonschema
import msgspec
import pytest
import yaml

from benchmarks import cost
from benchmarks.cost import EXAMPLE
from chalicelib import ingest as emf_spec
from chalicelib import runs as grafana
from chalicelib.schemas import MEASUREMENT_FIELDS
from iot_playground.common.stages import DEPLOY_STAGES, Stage
from tests.test_emf import EMF_SCHEMA, capture_emf_documents, emitted_metrics, spec_violations

ROOT = Path(__file__).resolve().parent.parent
# What a Logs Insights query over the EMF lines may name, and the channels a reading comes by.
EMF_FIELDS = (emf_spec.STAGE_DIMENSION, emf_spec.DATA_INGESTED, *emf_spec.PROPERTIES)
CHANNELS = ("http", "mqtt")
DASHBOARD_FILE = cost.DASHBOARD
DATASOURCE = {"type": "cloudwatch", "uid": "${datasource}"}  # a variable: the file imports as is
PROVISIONING = ROOT / "grafana" / "provisioning"
_VARIABLE_REFERENCE = re.compile(r"\$\{(\w+)(?::\w+)?\}|\$(\w+)|\[\[(\w+)\]\]")
_GRAFANA_BUILTINS = {"__all", "__interval", "__interval_ms", "__range", "__rate_interval", "__from", "__to"}
# Fields Logs Insights gives every event, and those of the app's logger lines (chalicelib/http.py).
_LOGS_BUILTINS = {"@timestamp", "@message", "@logStream", "@log"}
_LOG_LINE_FIELDS = {"level", "message", "route", "error", "exception_name", "runId", "user", "requestId"}
_KEYWORDS = {
    "fields",
    "filter",
    "stats",
    "sort",
    "limit",
    "by",
    "as",
    "and",
    "or",
    "not",
    "asc",
    "desc",
    "in",
}


@pytest.fixture(scope="module")
def dashboard() -> dict[str, Any]:
    return dict(json.loads(DASHBOARD_FILE.read_text()))


def targets(board: dict[str, Any]) -> list[dict[str, Any]]:
    return [target for panel in board["panels"] for target in panel.get("targets", [])]


def fields_named(expression: str) -> set[str]:
    """The fields a Logs Insights query reads: its words, less strings, regexes, variables,
    keywords, functions and the aliases it defines itself."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"|/(?:[^/\\]|\\.)+/|\$\{?\w+\}?', " ", expression)
    functions = set(re.findall(r"(\w+)\s*\(", text))
    aliases = set(re.findall(r"\bas\s+(\w+)", text))
    words = set(re.findall(r"(?<![\w.@])@?[A-Za-z_][\w.]*", text))
    return words - _KEYWORDS - functions - aliases


def query_problems(board: dict[str, Any]) -> list[str]:
    """Logs queries naming a field their lines lack, and metric queries of the app's namespace that
    are not the EMF line's metric; also the EMF line's metric that no panel shows."""
    problems = []
    spec_metrics = emitted_metrics([EXAMPLE])
    shown = set()
    for panel in board["panels"]:
        for target in panel.get("targets", []):
            where = f"panel {panel['title']!r} query {target['refId']}"
            if target.get("queryMode") == "Logs":
                expression = target["expression"]
                emf_query = f"ispresent({emf_spec.DATA_INGESTED})" in expression
                known = set(EMF_FIELDS) if emf_query else _LOG_LINE_FIELDS
                if unknown := fields_named(expression) - known - _LOGS_BUILTINS:
                    problems.append(f"{where}: {sorted(unknown)} are not fields of its lines")
            elif not target.get("namespace", "AWS/").startswith("AWS/"):
                metric = (target["namespace"], target["metricName"], frozenset(target["dimensions"]))
                if metric not in spec_metrics:
                    problems.append(f"{where}: {metric} is not the EMF line's metric")
                shown.add(metric)
    problems += [f"{metric} is in the EMF line but on no panel" for metric in spec_metrics - shown]
    return problems


# ---- the committed file and the EMF line ------------------------------------------


def test_the_specified_line_is_valid_emf_with_one_metric_per_stage():
    line = EXAMPLE
    assert list(jsonschema.Draft202012Validator(EMF_SCHEMA).iter_errors(line)) == []
    assert spec_violations(line) == []
    assert emitted_metrics([line]) == {
        (emf_spec.NAMESPACE, emf_spec.DATA_INGESTED, frozenset({emf_spec.STAGE_DIMENSION}))
    }
    assert set(line) - {"_aws"} == set(EMF_FIELDS)
    assert isinstance(line[emf_spec.SENSOR_READING], float) and line[emf_spec.DATA_INGESTED] == 1


def test_queries_read_only_what_the_lines_have(dashboard):
    assert query_problems(dashboard) == []
    logs_queries = [t["expression"] for t in targets(dashboard) if t.get("queryMode") == "Logs"]
    emf_queries = [e for e in logs_queries if f"ispresent({emf_spec.DATA_INGESTED})" in e]
    assert len(emf_queries) == 3 and len(logs_queries) == 4
    assert {emf_spec.SENSOR_READING, emf_spec.CHANNEL_FIELD} <= set().union(*map(fields_named, emf_queries))


def test_the_query_check_fails_on_a_wrong_dashboard(dashboard):
    def mutated(change: Any) -> dict[str, Any]:
        board: dict[str, Any] = copy.deepcopy(dashboard)
        change(board)
        return board

    def own_metric(board: dict[str, Any]) -> dict[str, Any]:
        return next(t for t in targets(board) if t.get("namespace") == emf_spec.NAMESPACE)

    def rename(field: str, to: str) -> Any:
        def change(board: dict[str, Any]) -> None:
            for target in targets(board):
                if "expression" in target:
                    target["expression"] = target["expression"].replace(field, to)

        return change

    wrong = [
        mutated(rename(emf_spec.SENSOR_READING, "SensorReadings")),
        mutated(rename(emf_spec.RUN_FIELD, "runid")),
        mutated(rename("runId", "RunId")),  # the errors query reads the logger's field
        mutated(lambda b: own_metric(b).update(metricName="SensorReading")),
        mutated(lambda b: own_metric(b)["dimensions"].update(RunId="*")),
        mutated(lambda b: own_metric(b).update(namespace="AWS/Lambda")),  # the metric on no panel
    ]
    for board in wrong:
        assert query_problems(board) != []


def test_the_app_emits_the_specified_line(client, capsys):
    documents = capture_emf_documents(client, capsys)
    assert documents
    for document in documents:
        assert document.keys() == EXAMPLE.keys()
        assert document["_aws"]["CloudWatchMetrics"] == EXAMPLE["_aws"]["CloudWatchMetrics"]
        assert isinstance(document[emf_spec.SENSOR_READING], (int, float))
        assert document[emf_spec.DATA_INGESTED] == 1 and document[emf_spec.CHANNEL_FIELD] in CHANNELS


# ---- variables: defined, resolved, and the ones run links use ------------------------


def grafana_slug(title: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-")


def run_link_values() -> dict[str, str]:
    from chalicelib.runs import Run, RunService
    from chalicelib.settings import load_settings

    settings = msgspec.structs.replace(load_settings(), grafana_url="https://g")
    run = Run("r-1", "alice", "RUNNING", 1_700_000_000_000, 60, 1, ("s",))
    url = urlsplit(RunService(None, settings).view(run).grafanaUrl)  # type: ignore[arg-type]
    return {key.removeprefix("var-"): value[0] for key, value in parse_qs(url.query).items()}


def test_uid_title_and_variables_are_the_ones_run_links_use(dashboard):
    assert dashboard["uid"] == grafana.DASHBOARD_UID and dashboard["title"] == grafana.DASHBOARD_TITLE
    assert grafana_slug(dashboard["title"]) == grafana.DASHBOARD_SLUG
    by_name = {v["name"]: v for v in dashboard["templating"]["list"]}
    names = (grafana.STAGE_VARIABLE, grafana.RUN_VARIABLE, grafana.USER_VARIABLE, grafana.SENSOR_VARIABLE)
    assert set(names) | {grafana.TYPE_VARIABLE} <= by_name.keys()
    for name in names:  # free text, so a link's value always applies; "*" is every run, user, sensor
        assert by_name[name]["type"] == "textbox"
    assert all(by_name[n]["query"] == "*" for n in names[1:])
    linked = run_link_values()
    assert {grafana.RUN_VARIABLE, grafana.USER_VARIABLE, grafana.STAGE_VARIABLE} <= linked.keys()
    assert {key for key in linked if key not in ("orgId", "from", "to")} <= by_name.keys()


def test_every_variable_resolves_and_a_run_link_selects_its_run(dashboard):
    text = DASHBOARD_FILE.read_text()
    defined = {v["name"] for v in dashboard["templating"]["list"]}
    referenced = {n for match in _VARIABLE_REFERENCE.finditer(text) for n in match.groups() if n}
    assert referenced - defined - _GRAFANA_BUILTINS == set()

    values = {v["name"]: v["query"] for v in dashboard["templating"]["list"]}
    values |= run_link_values() | {grafana.TYPE_VARIABLE: MEASUREMENT_FIELDS[0], "datasource": "cw"}
    values |= {"__interval": "1m", "__interval_ms": "60000"}

    def resolve(template: str) -> str:
        return _VARIABLE_REFERENCE.sub(lambda m: values[next(g for g in m.groups() if g)], template)

    for target in targets(dashboard):
        resolved = resolve(json.dumps({k: v for k, v in target.items() if k != "datasource"}))
        assert "$" not in resolved.replace("${PROP(", ""), resolved
        if f"ispresent({emf_spec.DATA_INGESTED})" in target.get("expression", "") and "concat" in resolved:
            assert 'concat(\\"r-1\\", \\"\\") as chosen_RunId' in resolved
            assert 'concat(\\"alice\\", \\"\\") as chosen_User' in resolved


def test_one_readings_panel_per_measurement_type(dashboard):
    types = next(v for v in dashboard["templating"]["list"] if v["name"] == grafana.TYPE_VARIABLE)
    assert types["type"] == "custom" and types["query"].split(",") == list(MEASUREMENT_FIELDS)
    assert types["includeAll"] and types["current"]["value"] == ["$__all"]
    (repeated,) = [p for p in dashboard["panels"] if p.get("repeat") == grafana.TYPE_VARIABLE]
    (target,) = repeated["targets"]
    assert f'{emf_spec.TYPE_FIELD} = "${{{grafana.TYPE_VARIABLE}}}"' in target["expression"]
    assert f"avg({emf_spec.SENSOR_READING})" in target["expression"]
    assert target["statsGroups"] == [emf_spec.SENSOR_FIELD]  # one series per sensor
    assert cost.logs_queries_per_refresh(dashboard) == len(MEASUREMENT_FIELDS) + 3


# ---- importable as is, and each stage's names -------------------------------------------


def test_dashboard_is_self_contained_and_well_formed(dashboard):
    text = DASHBOARD_FILE.read_text()
    assert not re.search(r"arn:aws|\b\d{12}\b", text), "no account ids or ARNs"
    assert "__inputs" not in dashboard and dashboard["id"] is None
    assert isinstance(dashboard["schemaVersion"], int) and dashboard["schemaVersion"] >= 36
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    occupied: set[tuple[int, int]] = set()
    for panel in dashboard["panels"]:
        pos = panel["gridPos"]
        assert pos["x"] >= 0 and pos["x"] + pos["w"] <= 24 and pos["h"] > 0
        width = 24 if panel.get("repeat") else pos["w"]  # a panel repeated across the row takes it all
        cells = {(pos["y"] + dy, pos["x"] + dx) for dy in range(pos["h"]) for dx in range(width)}
        assert not cells & occupied, f"panel {panel['title']!r} overlaps another"
        occupied |= cells
        if panel["type"] != "row":
            assert panel["datasource"] == DATASOURCE and panel["targets"], panel["title"]
            for target in panel["targets"]:
                assert target["datasource"] == DATASOURCE and target["region"] == "default"
                assert target["refId"]


def test_resource_names_are_each_stages_deployed_names(dashboard):
    """With Stage set to a deployment stage, every function, log group and table the dashboard
    names is that stage's, and each of the stage's functions and tables is on the dashboard."""
    stage_ref = f"${{{grafana.STAGE_VARIABLE}}}"
    found: dict[str, set[str]] = {"AWS/Lambda": set(), "AWS/DynamoDB": set(), "logs": set()}
    for t in targets(dashboard):
        if t.get("namespace") in ("AWS/Lambda", "AWS/DynamoDB"):
            found[t["namespace"]] |= {t["dimensions"].get("FunctionName") or t["dimensions"]["TableName"]}
        found["logs"] |= set(t.get("logGroupNames", []))
        assert [g["name"] for g in t.get("logGroups", [])] == t.get("logGroupNames", [])
    for stage_name in DEPLOY_STAGES:
        stage = Stage.load(stage_name)
        functions = set(stage.function_names().values())
        expected = {"AWS/Lambda": functions, "logs": {f"/aws/lambda/{name}" for name in functions}}
        expected["AWS/DynamoDB"] = {stage.app_settings.runs_table, stage.app_settings.readings_table}
        for kind, names in found.items():
            assert {name.replace(stage_ref, stage_name) for name in names} == expected[kind]
    api_stage = next(v for v in dashboard["templating"]["list"] if v["name"] == "ApiGatewayStage")
    assert api_stage["query"] == Stage.load(DEPLOY_STAGES[0]).api_stage_name


def test_every_requested_aws_panel_is_there(dashboard):
    shown = {(t.get("namespace"), t.get("metricName"), t.get("statistic")) for t in targets(dashboard)}
    for wanted in [
        ("AWS/ApiGateway", "Latency", "p95"),
        ("AWS/ApiGateway", "4XXError", "Sum"),
        ("AWS/ApiGateway", "5XXError", "Sum"),
        ("AWS/Lambda", "Invocations", "Sum"),
        ("AWS/Lambda", "Errors", "Sum"),
        ("AWS/Lambda", "Duration", "p95"),
        ("AWS/Lambda", "Throttles", "Sum"),
        ("AWS/Lambda", "ConcurrentExecutions", "Maximum"),
        ("AWS/DynamoDB", "ConsumedReadCapacityUnits", "Sum"),
        ("AWS/DynamoDB", "ConsumedWriteCapacityUnits", "Sum"),
        ("AWS/DynamoDB", "ReadThrottleEvents", "Sum"),
        ("AWS/DynamoDB", "WriteThrottleEvents", "Sum"),
    ]:
        assert wanted in shown


def test_provisioning_points_grafana_at_the_account_and_the_dashboard():
    datasources = yaml.safe_load((PROVISIONING / "datasources" / "cloudwatch.yaml").read_text())
    (source,) = datasources["datasources"]
    assert source["type"] == "cloudwatch"
    region = source["jsonData"]["defaultRegion"]
    assert re.fullmatch(r"\$\{?[A-Z_]+\}?", region), "the region comes from Grafana's environment"
    assert source["jsonData"]["customMetricsNamespaces"] == emf_spec.NAMESPACE
    assert "arn:aws" not in json.dumps(datasources)
    providers = yaml.safe_load((PROVISIONING / "dashboards" / "iot-playground.yaml").read_text())
    (provider,) = providers["providers"]
    assert provider["type"] == "file" and provider["options"]["path"]
