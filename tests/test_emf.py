"""The metrics the API writes, captured from stdout while it handles requests, checked
against the CloudWatch Embedded Metric Format (EMF) specification.

`EMF_SCHEMA` is the specification's document structure written as JSON Schema
(https://docs.aws.amazon.com/AmazonCloudWatch/latest/monitoring/
CloudWatch_Embedded_Metric_Format_Specification.html); `spec_violations` checks the
rules a schema cannot express, those tying `_aws` references to root members.
`capture_emf_documents` is also what `test_dashboard.py` takes the emitted metric set from.
"""

from __future__ import annotations

import json
import math
import time
from typing import Any

import jsonschema
import pytest

from chalicelib import ingest

# Units a MetricDefinition may name (CloudWatch MetricDatum's StandardUnit).
_UNITS = [
    "Seconds", "Microseconds", "Milliseconds", "Bytes", "Kilobytes", "Megabytes", "Gigabytes",
    "Terabytes", "Bits", "Kilobits", "Megabits", "Gigabits", "Terabits", "Percent", "Count",
    "Bytes/Second", "Kilobytes/Second", "Megabytes/Second", "Gigabytes/Second", "Terabytes/Second",
    "Bits/Second", "Kilobits/Second", "Megabits/Second", "Gigabits/Second", "Terabits/Second",
    "Count/Second", "None",
]  # fmt: skip
_NAME = {"type": "string", "minLength": 1, "maxLength": 255}

EMF_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "title": "CloudWatch Embedded Metric Format document (root node)",
    "type": "object",
    "required": ["_aws"],
    "properties": {
        "_aws": {
            "title": "Metadata object",
            "type": "object",
            "required": ["Timestamp", "CloudWatchMetrics"],
            "properties": {
                # Milliseconds since 1970-01-01T00:00:00Z.
                "Timestamp": {"type": "integer", "minimum": 0},
                "CloudWatchMetrics": {
                    "type": "array",
                    "items": {"$ref": "#/$defs/MetricDirective"},
                },
            },
        }
    },
    "$defs": {
        "MetricDirective": {
            "type": "object",
            "required": ["Namespace", "Dimensions", "Metrics"],
            "properties": {
                "Namespace": _NAME,
                "Dimensions": {"type": "array", "items": {"$ref": "#/$defs/DimensionSet"}},
                "Metrics": {
                    "type": "array",
                    "maxItems": 100,
                    "items": {"$ref": "#/$defs/MetricDefinition"},
                },
            },
        },
        # Dimension keys; each MUST also be a root member with a string value (spec_violations).
        "DimensionSet": {"type": "array", "maxItems": 30, "items": _NAME},
        "MetricDefinition": {
            "type": "object",
            "required": ["Name"],
            "properties": {
                "Name": _NAME,
                "Unit": {"enum": _UNITS},
                "StorageResolution": {"enum": [1, 60]},
            },
        },
    },
}

# CloudWatch Logs' limit on one event, which an EMF document is.
_MAX_DOCUMENT_BYTES = 256 * 1024
_MAX_VALUES = 100
_MAX_DIMENSION_VALUE = 1024


def spec_violations(document: dict[str, Any], now_ms: int | None = None) -> list[str]:
    """What the specification requires of target members, beyond the schema."""
    problems = []
    if len(json.dumps(document).encode()) > _MAX_DOCUMENT_BYTES:
        problems.append("document larger than a CloudWatch Logs event")
    metadata = document["_aws"]
    if now_ms is not None and abs(metadata["Timestamp"] - now_ms) > 3_600_000:
        problems.append(f"Timestamp {metadata['Timestamp']} is not the time of writing in milliseconds")
    for directive in metadata["CloudWatchMetrics"]:
        for dimension_set in directive["Dimensions"]:
            for key in dimension_set:
                value = document.get(key)
                if not isinstance(value, str):
                    problems.append(f"dimension {key!r} has no string member on the root node")
                elif not value.strip() or len(value) > _MAX_DIMENSION_VALUE or not value.isascii():
                    problems.append(f"dimension {key!r} value {value!r} is not a valid CloudWatch value")
        for definition in directive["Metrics"]:
            name = definition["Name"]
            value = document.get(name)
            values = value if isinstance(value, list) else [value]
            if not values or len(values) > _MAX_VALUES:
                problems.append(f"metric {name!r} has {len(values)} values (1 to {_MAX_VALUES} allowed)")
            for item in values:
                if isinstance(item, bool) or not isinstance(item, (int, float)) or not math.isfinite(item):
                    problems.append(f"metric {name!r} value {item!r} is not a finite number")
    return problems


def emf_lines(text: str) -> list[dict[str, Any]]:
    """EMF documents among the lines of captured stdout (log lines are JSON too, without `_aws`)."""
    documents = []
    for line in text.splitlines():
        if line.startswith("{") and '"_aws"' in line:
            document = json.loads(line)
            if "_aws" in document:
                documents.append(document)
    return documents


def capture_emf_documents(client: Any, capsys: pytest.CaptureFixture[str]) -> list[dict[str, Any]]:
    """Drive the API through a run with readings in each body form; return the EMF written."""
    started = client.http.post(
        "/api/runs/start",
        headers={"Content-Type": "application/json", "X-User": "emf-user"},
        body=json.dumps({"sensorIds": ["s-1", "s-2"], "duration": 60, "interval": 1}),
    )
    assert started.status_code == 201, started.body
    run_id = json.loads(started.body)["runId"]
    headers = {"Content-Type": "application/json", "X-User": "emf-user", "X-Run-Id": run_id}
    bodies: list[Any] = [
        {"sensorId": "s-1", "reading": 21.5, "type": "temperature"},  # the frontend's form
        {"sensorId": "s-2", "temperature": 22.5, "humidity": 41.0, "pressure": 1013.2},  # measurement fields
        [{"sensorId": "s-1", "reading": 20.0 + i / 10} for i in range(150)]  # a batch past one document
        + [{"sensorId": "s-2", "humidity": 40.0}],
    ]
    capsys.readouterr()
    for body in bodies:
        response = client.http.post("/api/sensors/data", headers=headers, body=json.dumps(body))
        assert response.status_code == 201, response.body
    # A reading sent without any run.
    response = client.http.post(
        "/api/sensors/data",
        headers={"Content-Type": "application/json", "X-User": "emf-user"},
        body=json.dumps({"sensorId": "s-9", "reading": 1.5}),
    )
    assert response.status_code == 201, response.body
    documents = emf_lines(capsys.readouterr().out)
    client.http.post(f"/api/runs/{run_id}/finish", headers={"Content-Type": "application/json"}, body="{}")
    return documents


def emitted_metrics(documents: list[dict[str, Any]]) -> set[tuple[str, str, frozenset[str]]]:
    """(namespace, metric, dimension set) of every metric the documents define."""
    return {
        (directive["Namespace"], definition["Name"], frozenset(dimension_set))
        for document in documents
        for directive in document["_aws"]["CloudWatchMetrics"]
        for dimension_set in directive["Dimensions"]
        for definition in directive["Metrics"]
    }


@pytest.fixture
def emf_documents(client: Any, capsys: pytest.CaptureFixture[str]) -> list[dict[str, Any]]:
    return capture_emf_documents(client, capsys)


def test_every_emitted_document_follows_the_specification(emf_documents):
    validator = jsonschema.Draft202012Validator(EMF_SCHEMA)
    assert emf_documents
    now = time.time_ns() // 1_000_000
    for document in emf_documents:
        errors = [error.message for error in validator.iter_errors(document)]
        assert errors == [], document
        assert spec_violations(document, now) == [], document


def test_documents_carry_each_reading_with_its_run_sensor_type_user_and_channel(emf_documents):
    """One line a reading, whatever the body (Logs Insights cannot average a JSON array)."""
    by_key: dict[tuple[str, str, str], list[float]] = {}
    for document in emf_documents:
        key = (document["SensorId"], document["Type"], document["RunId"])
        by_key.setdefault(key, []).append(document["SensorReading"])
        assert document[ingest.DATA_INGESTED] == 1
        assert (document["User"], document["Channel"], document["Stage"]) == ("emf-user", "http", "test")
    (run_id,) = {key[2] for key in by_key} - {"none"}
    assert by_key == {
        ("s-1", "temperature", run_id): [21.5] + [20.0 + i / 10 for i in range(150)],
        ("s-2", "temperature", run_id): [22.5],
        ("s-2", "humidity", run_id): [41.0, 40.0],
        ("s-2", "pressure", run_id): [1013.2],
        ("s-9", "temperature", "none"): [1.5],
    }


def test_the_app_emits_one_custom_metric_per_stage(emf_documents):
    """Each distinct dimension value is a billed custom metric: only the stage is one."""
    assert emitted_metrics(emf_documents) == {(ingest.NAMESPACE, ingest.DATA_INGESTED, frozenset({"Stage"}))}
    assert {d["Stage"] for d in emf_documents} == {"test"}


# ---- the checks themselves can fail ---------------------------------------------


def _valid_document() -> dict[str, Any]:
    return {
        "_aws": {
            "Timestamp": 1_700_000_000_000,
            "CloudWatchMetrics": [
                {"Namespace": "N", "Dimensions": [["D"]], "Metrics": [{"Name": "M", "Unit": "Count"}]}
            ],
        },
        "D": "d",
        "M": [1, 2.5],
    }


def test_the_schema_accepts_the_specifications_shape_and_refuses_others():
    validator = jsonschema.Draft202012Validator(EMF_SCHEMA)
    jsonschema.Draft202012Validator.check_schema(EMF_SCHEMA)
    assert list(validator.iter_errors(_valid_document())) == []

    def directive(**fields: Any) -> dict[str, Any]:
        return {"_aws": {"Timestamp": 1, "CloudWatchMetrics": [fields]}}

    broken = [
        {"D": "d"},  # no metadata
        {"_aws": {"CloudWatchMetrics": []}},  # no Timestamp
        {"_aws": {"Timestamp": "now", "CloudWatchMetrics": []}},
        directive(Dimensions=[[]], Metrics=[]),  # no Namespace
        directive(Namespace="N", Dimensions=[[f"d{i}" for i in range(31)]], Metrics=[]),
        directive(Namespace="N", Dimensions=[], Metrics=[{"Name": "M", "Unit": "Furlongs"}]),
        directive(Namespace="N", Dimensions=[], Metrics=[{"Name": "M", "StorageResolution": 5}]),
        directive(Namespace="N", Dimensions=[], Metrics=[{"Unit": "Count"}]),  # no Name
    ]
    for document in broken:
        assert list(validator.iter_errors(document)), document


@pytest.mark.parametrize(
    "change",
    [
        lambda d: d.pop("D"),  # dimension without its member
        lambda d: d.update(D=3),  # dimension value not a string
        lambda d: d.update(D=" "),
        lambda d: d.pop("M"),  # metric without its member
        lambda d: d.update(M="many"),
        lambda d: d.update(M=list(range(101))),
        lambda d: d.update(M=[1, float("nan")]),
        lambda d: d.update(M=True),
    ],
)
def test_target_member_rules_catch_broken_documents(change):
    document = _valid_document()
    assert spec_violations(document) == []
    change(document)
    assert spec_violations(document) != []
