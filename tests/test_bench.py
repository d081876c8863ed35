"""`make bench`: the DynamoDB size rules it prices with, and a smoke run at tiny sizes."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from typing import Any

import pytest

from benchmarks.dynamodb_units import Written, item_size, read_units, value_size, write_units
from tests.deploy_support import package_dev
from tests.helpers import ROOT

# From "DynamoDB item sizes and formats" (Developer Guide): names and values in UTF-8
# bytes; a number is 1 byte per two significant digits plus 1, leading and trailing zeros
# trimmed; null and Boolean 1 byte; a List or Map 3 bytes plus 1 byte per element.
SIZES = [
    ({"S": "Bob"}, 3),
    ({"S": "café"}, 5),  # é is two bytes in UTF-8
    ({"N": "123"}, 3),  # 3 significant digits: 2 bytes + 1
    ({"N": "12.5"}, 3),
    ({"N": "1000"}, 2),  # trailing zeros trimmed: "1"
    ({"N": "0.0012"}, 2),  # leading zeros trimmed: "12"
    ({"N": "-98765.4321"}, 6),  # 9 digits: 5 bytes + 1
    ({"B": "AAEC"}, 3),  # base64 of 3 raw bytes: the raw length counts
    ({"BOOL": True}, 1),
    ({"NULL": True}, 1),
    ({"L": []}, 3),
    ({"M": {}}, 3),
    ({"L": [{"S": "ab"}, {"N": "1"}]}, 3 + (2 + 1) + (2 + 1)),
    ({"M": {"a": {"S": "xy"}}}, 3 + 1 + 2 + 1),
    ({"SS": ["ab", "c"]}, 3),
]


@pytest.mark.parametrize(("value", "size"), SIZES)
def test_value_sizes_follow_the_dynamodb_rules(value, size):
    assert value_size(value) == size


def test_item_size_adds_attribute_names():
    item: dict[str, Any] = {"id": {"S": "run-1"}, "count": {"N": "42"}, "done": {"BOOL": False}}
    assert item_size(item) == (2 + 5) + (5 + 2) + (4 + 1)


def test_units_round_up_per_item_and_count_each_index():
    assert write_units(1) == 1 and write_units(1024) == 1 and write_units(1025) == 2
    assert read_units(4096, consistent=True) == 1 and read_units(4097, consistent=True) == 2
    assert read_units(100, consistent=False) == 0.5
    reading = Written("readings", 230, ("readings-by-run", "readings-by-sensor"))
    assert reading.write_units == 3
    assert reading.stored_bytes == 3 * (230 + 100)
    assert Written("runs", 2000, (), transactional=True).write_units == 4


@pytest.mark.e2e
def test_smoke_run_prints_every_table_and_writes_the_results(tmp_path):
    zip_path = package_dev().cloudformation / "deployment.zip"
    output = tmp_path / "results.json"
    started = time.perf_counter()
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "benchmarks.run",
            "--smoke",
            "--package-zip",
            str(zip_path),
            "--output",
            str(output),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    seconds = time.perf_counter() - started
    assert result.returncode == 0, result.stdout + result.stderr
    print(f"\nbench smoke run: {seconds:.1f} s")
    for heading in (
        "Writes per reading",
        "Reads per call",
        "Warm requests",
        "Cold start",
        "Package",
        "Monthly",
    ):
        assert heading in result.stdout
    results = json.loads(output.read_text())
    writes = {row["shape"]: row for row in results["writes"]}
    assert set(writes) == {"single", "measurement", "batch of 25", "batch of 100", "batch of 500"}
    # One write unit per reading of up to 1 KB whatever the request, counted from what the app
    # wrote; 25 items per BatchWriteItem.
    assert all(row["write_units_per_reading"] == 1 for row in writes.values())
    assert writes["single"]["requests"] == 1 and writes["batch of 500"]["requests"] == 20
    # `latest` of a RUNNING run reads newest first, within its bound; the ZIP holds every run whole.
    latest = results["latest"]["latest"]
    assert latest["complete"] and 1 <= latest["queries"] <= 5
    assert results["report"]["complete"] is True
    reads = {(row["route"], row["finished_runs"]) for row in results["reads"]}
    assert len(reads) == 4 * len(results["history"])
    for cold in (results["cold_start"], results["cold_start_history"]):
        assert cold["app"]["total_ms"] > 0 and cold["ratio"] > 0
    assert results["package"]["zipped_bytes"] == zip_path.stat().st_size
    assert len(results["cost"]) == 6 and all(scenario["total_usd"] > 0 for scenario in results["cost"])
    assert all(line["assumption"] for scenario in results["cost"] for line in scenario["lines"])
    # The same model as docs/cost.md (benchmarks/cost.py), fed with what the bench measured.
    assert len(results["fargate"]) == 3 and set(results["crossover"]) == {"1", "100"}
    assert set(results["metrics"]) == {"metrics_per_stage", "metrics_per_run"}
    assert "Measured against docs/cost.md" in result.stdout


def test_recorder_charges_what_each_request_wrote_and_read(aws):
    import boto3

    import app
    from benchmarks.dynamodb_units import Recorder
    from iot_playground.common.endpoints import LOCAL_CREDENTIALS

    settings = app.parts().settings
    names = {"RUNS_TABLE": settings.runs_table, "READINGS_TABLE": settings.readings_table}
    hooked, reader = (
        boto3.client("dynamodb", region_name=LOCAL_CREDENTIALS["AWS_DEFAULT_REGION"]) for _ in "ab"
    )
    recorder = Recorder(hooked, names, reader)
    # A run item: the runs table has three indexes, and a run without a status carries the keys of two.
    run = {"id": {"S": "run-1"}, "kind": {"S": "run"}, "startedAt": {"S": "2026-01-01T00:00:00.000Z"}}
    run["username"] = {"S": "alice"}
    key = {"id": run["id"]}
    with recorder.capture() as calls:
        hooked.put_item(TableName=names["RUNS_TABLE"], Item=run)
        hooked.update_item(  # grows the item past 1 KB: charged on the larger version
            TableName=names["RUNS_TABLE"],
            Key=key,
            UpdateExpression="SET note = :n",
            ExpressionAttributeValues={":n": {"S": "x" * 1500}},
        )
        hooked.query(
            TableName=names["RUNS_TABLE"],
            KeyConditionExpression="id = :id",
            ExpressionAttributeValues={":id": run["id"]},
        )
    put, update, query = calls
    assert put.operation == "PutItem" and put.write_units == 3  # table + runs-by-start + runs-by-user
    assert update.operation == "UpdateItem" and update.write_units == 2 * 3
    assert query.items_read == 1 and query.read_units == 0.5  # eventually consistent, under 4 KB
    recorder.close()
