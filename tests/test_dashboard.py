"""The Grafana dashboard against the code: what it queries is what the API emits,
its uid and variables are the ones run links use, its resource names are the
deployed stages' names, and the committed JSON is the builder's output."""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import yaml

from chalicelib import grafana, metrics
from chalicelib.grafana import run_dashboard_url
from iot_playground.common.stages import DEPLOY_STAGES, Stage
from iot_playground.deploy import dashboard_builder
from tests.test_emf import capture_emf_documents, emitted_metrics

ROOT = Path(__file__).resolve().parent.parent
DASHBOARD_FILE = ROOT / "grafana" / "dashboards" / "iot-serverless.json"
PROVISIONING = ROOT / "grafana" / "provisioning"
Metric = tuple[str, str, frozenset[str]]

_SQL = re.compile(
    r'^SELECT\s+\w+\((?P<metric>\w+)\)\s+FROM\s+SCHEMA\("(?P<namespace>[^"]+)",\s*(?P<schema>[\w\s,]+)\)'
    r"(?:\s+WHERE\s+(?P<where>.+?))?(?:\s+GROUP BY\s+(?P<group>[\w\s,]+?))?(?:\s+ORDER BY.*)?$",
    re.IGNORECASE,
)
_SEARCH = re.compile(r"SEARCH\(\s*'\{(?P<schema>[^}]*)\}(?P<terms>[^']*)'")
_VARIABLE_REFERENCE = re.compile(r"\$\{(\w+)(?::\w+)?\}|\$(\w+)|\[\[(\w+)\]\]")
_GRAFANA_BUILTINS = {"__all", "__interval", "__interval_ms", "__range", "__rate_interval", "__from", "__to"}


@pytest.fixture(scope="module")
def dashboard() -> dict[str, Any]:
    return dict(json.loads(DASHBOARD_FILE.read_text()))


def targets(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    return [target for panel in dashboard["panels"] for target in panel.get("targets", [])]


def is_own_namespace(namespace: str) -> bool:
    # Anything that is not an AWS service namespace is taken for the app's own (a typo included).
    return bool(namespace) and not namespace.startswith("AWS/")


def metric_problems(dashboard: dict[str, Any], emitted: set[Metric]) -> list[str]:
    """References to the app's namespace that the code does not emit, and emitted metrics no panel shows."""
    problems: list[str] = []
    shown: set[Metric] = set()
    emitted_dimensions: dict[tuple[str, str], set[str]] = {}
    for namespace, name, dims in emitted:
        emitted_dimensions.setdefault((namespace, name), set()).update(dims)

    def check(where: str, namespace: str, metric: str, dimensions: frozenset[str], exact: bool) -> None:
        if not is_own_namespace(namespace):
            return
        candidates = [
            m for m in emitted if m[0] == namespace and m[1] == metric and (m[2] == dimensions or not exact)
        ]
        if not exact:
            candidates = [m for m in candidates if dimensions <= m[2]]
        if not candidates:
            problems.append(f"{where}: {namespace} {metric} {sorted(dimensions)} is not emitted by the API")
        shown.update(candidates if exact else [])

    for panel in dashboard["panels"]:
        for target in panel.get("targets", []):
            where = f"panel {panel['title']!r} query {target['refId']}"
            if target.get("queryMode") == "Logs":
                continue
            if target.get("metricQueryType") == 1:
                match = _SQL.match(" ".join(target["sqlExpression"].split()))
                assert match, f"{where}: unreadable Metrics Insights query {target['sqlExpression']!r}"
                schema = frozenset(d.strip() for d in match["schema"].split(","))
                check(where, match["namespace"], match["metric"], schema, exact=True)
                used = set(re.findall(r"(\w+)\s*(?:=|!=|LIKE)", match["where"] or ""))
                used |= {d.strip() for d in (match["group"] or "").split(",") if d.strip()}
                if used - schema:
                    problems.append(
                        f"{where}: filters or groups on {sorted(used - schema)} outside {sorted(schema)}"
                    )
            elif target.get("metricEditorMode") == 1:
                for search in _SEARCH.finditer(target.get("expression", "")):
                    namespace, *keys = [part.strip().strip('"') for part in search["schema"].split(",")]
                    metric_name = re.search(r'MetricName="(\w+)"', search["terms"])
                    assert metric_name, f"{where}: SEARCH without a MetricName"
                    check(where, namespace, metric_name[1], frozenset(keys), exact=True)
            else:
                dimensions = frozenset(target.get("dimensions", {}))
                check(
                    where,
                    target["namespace"],
                    target["metricName"],
                    dimensions,
                    target.get("matchExact", True),
                )
    for variable in dashboard["templating"]["list"]:
        query = variable.get("query")
        if isinstance(query, dict) and is_own_namespace(query.get("namespace", "")):
            where = f"variable {variable['name']}"
            known = emitted_dimensions.get((query["namespace"], query.get("metricName", "")), set())
            if query.get("dimensionKey") not in known:
                problems.append(
                    f"{where}: {query.get('metricName')}/{query.get('dimensionKey')} is not emitted"
                )
    for namespace, metric, dimensions in sorted(emitted - shown, key=str):
        problems.append(f"{namespace} {metric} {sorted(dimensions)} is emitted but no panel shows it")
    return problems


# ---- the committed file ---------------------------------------------------------


def test_committed_dashboard_is_the_builders_output():
    assert dashboard_builder.DASHBOARD_PATH == DASHBOARD_FILE
    assert DASHBOARD_FILE.read_text() == dashboard_builder.render(), (
        "grafana/dashboards/iot-serverless.json is stale: iot-playground dashboard"
    )


# ---- against what the API emits ----------------------------------------------------


def test_dashboard_queries_exactly_the_metrics_the_api_emits(dashboard, client, capsys):
    emitted = emitted_metrics(capture_emf_documents(client, capsys))
    assert {name for _, name, _ in emitted} == {metrics.SENSOR_READING, metrics.DATA_INGESTED}
    assert metric_problems(dashboard, emitted) == []


def test_the_metric_check_fails_on_a_wrong_dashboard_or_an_unshown_metric(dashboard):
    emitted = {
        (metrics.NAMESPACE, metrics.SENSOR_READING, frozenset(metrics.READING_DIMENSIONS)),
        (metrics.NAMESPACE, metrics.DATA_INGESTED, frozenset(metrics.INGESTED_DIMENSIONS)),
    }
    assert metric_problems(dashboard, emitted) == []

    def mutated(change: Any) -> dict[str, Any]:
        copied: dict[str, Any] = copy.deepcopy(dashboard)
        change(copied)
        return copied

    def first(board: dict[str, Any], metric: str) -> dict[str, Any]:
        return next(t for t in targets(board) if t.get("metricName") == metric)

    wrong_boards = [
        mutated(lambda b: first(b, metrics.SENSOR_READING).update(metricName="SensorReadings")),
        mutated(lambda b: first(b, metrics.SENSOR_READING).update(namespace="IoTPlayground/Sensor")),
        mutated(lambda b: first(b, metrics.SENSOR_READING)["dimensions"].update(Device="*")),
        mutated(lambda b: first(b, metrics.DATA_INGESTED)["dimensions"].pop(metrics.USER_DIMENSION)),
        mutated(
            lambda b: next(t for t in targets(b) if "sqlExpression" in t).update(
                sqlExpression=f'SELECT SUM(DataIngested) FROM SCHEMA("{metrics.NAMESPACE}", RunId) '
                "GROUP BY User"
            )
        ),
    ]
    for board in wrong_boards:
        assert metric_problems(board, emitted) != []
    unshown = emitted | {(metrics.NAMESPACE, "BatchSize", frozenset({metrics.RUN_DIMENSION}))}
    assert any("no panel shows" in p for p in metric_problems(dashboard, unshown))


# ---- against the run links and chalicelib.grafana ---------------------------------------


def grafana_slug(title: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-")


def test_uid_title_and_variables_are_the_ones_run_links_use(dashboard, monkeypatch):
    assert dashboard["uid"] == grafana.DASHBOARD_UID
    assert dashboard["title"] == grafana.DASHBOARD_TITLE
    assert grafana_slug(dashboard["title"]) == grafana.DASHBOARD_SLUG
    variables = {v["name"] for v in dashboard["templating"]["list"]}
    for name in (
        grafana.RUN_VARIABLE,
        grafana.USER_VARIABLE,
        grafana.SENSOR_VARIABLE,
        grafana.TYPE_VARIABLE,
        grafana.STAGE_VARIABLE,
    ):
        assert name in variables

    url = urlsplit(
        run_dashboard_url(
            "https://grafana.example.com",
            run_id="r-1",
            user="alice",
            started_ms=1_700_000_000_000,
            duration_s=60,
        )
    )
    assert url.path == f"/d/{dashboard['uid']}/{grafana_slug(dashboard['title'])}"
    query = parse_qs(url.query)
    linked = {key.removeprefix("var-") for key in query if key.startswith("var-")}
    assert linked and linked <= variables
    assert query[f"var-{grafana.RUN_VARIABLE}"] == ["r-1"]
    assert query[f"var-{grafana.USER_VARIABLE}"] == ["alice"]
    assert int(query["from"][0]) < 1_700_000_000_000 < 1_700_000_060_000 < int(query["to"][0])


def test_a_run_link_opens_the_dashboard_on_that_run_only(dashboard):
    """Run and user are free text so a link's values always apply; "*" (every run) is the default."""
    by_name = {v["name"]: v for v in dashboard["templating"]["list"]}
    for name in (grafana.RUN_VARIABLE, grafana.USER_VARIABLE):
        assert by_name[name]["type"] == "textbox"
        assert by_name[name]["query"] == dashboard_builder.ALL
    readings = [t for t in targets(dashboard) if t.get("metricName") == metrics.SENSOR_READING]
    assert readings
    for target in readings:
        assert target["dimensions"][metrics.RUN_DIMENSION] == f"${{{grafana.RUN_VARIABLE}}}"
        assert target["dimensions"][metrics.USER_DIMENSION] == f"${{{grafana.USER_VARIABLE}}}"
        assert target["dimensions"][metrics.SENSOR_DIMENSION] == f"${{{grafana.SENSOR_VARIABLE}}}"
    logs = [t for t in targets(dashboard) if t.get("queryMode") == "Logs"]
    assert len(logs) == 1 and f"${{{grafana.RUN_VARIABLE}}}" in logs[0]["expression"]
    assert "runId" in logs[0]["expression"] and '"ERROR"' in logs[0]["expression"]


def test_one_readings_panel_per_measurement_type(dashboard):
    from chalicelib.schemas import MEASUREMENT_FIELDS

    by_name = {v["name"]: v for v in dashboard["templating"]["list"]}
    types = by_name[grafana.TYPE_VARIABLE]
    assert types["type"] == "custom" and types["query"].split(",") == list(MEASUREMENT_FIELDS)
    assert types["includeAll"] and types["current"]["value"] == ["$__all"]
    repeated = [p for p in dashboard["panels"] if p.get("repeat") == grafana.TYPE_VARIABLE]
    assert len(repeated) == 1
    (target,) = repeated[0]["targets"]
    assert target["dimensions"][metrics.TYPE_DIMENSION] == f"${{{grafana.TYPE_VARIABLE}}}"


# ---- importable as is -----------------------------------------------------------------


def test_dashboard_is_self_contained_and_well_formed(dashboard):
    text = DASHBOARD_FILE.read_text()
    assert not re.search(r"arn:aws|\b\d{12}\b", text), "no account ids or ARNs"
    assert "__inputs" not in dashboard and dashboard["id"] is None
    assert isinstance(dashboard["schemaVersion"], int) and dashboard["schemaVersion"] >= 36
    defined = {v["name"] for v in dashboard["templating"]["list"]}
    referenced = {
        name
        for match in _VARIABLE_REFERENCE.finditer(text)
        for name in match.groups()
        if name and not name.startswith("PROP")
    }
    assert referenced - defined - _GRAFANA_BUILTINS == set()

    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    occupied: set[tuple[int, int]] = set()
    for panel in dashboard["panels"]:
        pos = panel["gridPos"]
        assert pos["x"] >= 0 and pos["x"] + pos["w"] <= 24 and pos["h"] > 0
        # A panel repeated across the row takes the whole row.
        width = 24 if panel.get("repeat") else pos["w"]
        cells = {(pos["y"] + dy, pos["x"] + dx) for dy in range(pos["h"]) for dx in range(width)}
        assert not cells & occupied, f"panel {panel['title']!r} overlaps another"
        occupied |= cells
        if panel["type"] == "row":
            continue
        assert panel["datasource"] == dashboard_builder.DATASOURCE
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            assert target["datasource"] == dashboard_builder.DATASOURCE
            assert target["region"] == "default"
    refs = [t["refId"] for p in dashboard["panels"] for t in p.get("targets", [])]
    assert all(refs)


def test_resource_names_are_each_stages_deployed_names(dashboard):
    """With Stage set to a deployment stage, every function, log group and table the dashboard
    names is that stage's, and each of the stage's functions and tables is on the dashboard."""
    text = DASHBOARD_FILE.read_text()
    stage_ref = f"${{{grafana.STAGE_VARIABLE}}}"
    functions = {
        t["dimensions"]["FunctionName"] for t in targets(dashboard) if t.get("namespace") == "AWS/Lambda"
    }
    tables = {
        t["dimensions"]["TableName"] for t in targets(dashboard) if t.get("namespace") == "AWS/DynamoDB"
    }
    log_groups = {name for t in targets(dashboard) for name in t.get("logGroupNames", [])}
    assert stage_ref in text
    for stage_name in DEPLOY_STAGES:
        stage = Stage.load(stage_name)
        expected_functions = set(stage.function_names().values())
        expected_tables = {stage.app_settings.runs_table, stage.app_settings.readings_table}
        assert {f.replace(stage_ref, stage_name) for f in functions} == expected_functions
        assert {t.replace(stage_ref, stage_name) for t in tables} == expected_tables
        assert {g.replace(stage_ref, stage_name) for g in log_groups} == {
            f"/aws/lambda/{name}" for name in expected_functions
        }
        api = [t for t in targets(dashboard) if t.get("namespace") == "AWS/ApiGateway"]
        assert api
    by_name = {v["name"]: v for v in dashboard["templating"]["list"]}
    default_stage = Stage.load(DEPLOY_STAGES[0])
    assert by_name[dashboard_builder.API_STAGE_VARIABLE]["query"] == default_stage.api_stage_name


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


# ---- provisioning --------------------------------------------------------------------


def test_provisioning_points_grafana_at_the_account_and_the_dashboard():
    datasources = yaml.safe_load((PROVISIONING / "datasources" / "cloudwatch.yaml").read_text())
    (source,) = datasources["datasources"]
    assert source["type"] == "cloudwatch"
    region = source["jsonData"]["defaultRegion"]
    assert re.fullmatch(r"\$\{?[A-Z_]+\}?", region), "the region comes from Grafana's environment"
    assert source["jsonData"]["customMetricsNamespaces"] == metrics.NAMESPACE
    assert "arn:aws" not in json.dumps(datasources)

    providers = yaml.safe_load((PROVISIONING / "dashboards" / "iot-playground.yaml").read_text())
    (provider,) = providers["providers"]
    assert provider["type"] == "file" and provider["options"]["path"]
