"""What each request costs in DynamoDB calls, and that nothing scans."""

from __future__ import annotations

import ast
from collections import Counter

from tests.helpers import ROOT, call, post_readings, start_run


def test_single_reading_is_one_write_and_no_read_at_steady_state(client, calls):
    run = start_run(client)
    post_readings(client, run["id"], {"sensorId": "s", "reading": 1})
    calls.clear()
    for value in range(10):
        assert post_readings(client, run["id"], {"sensorId": "s", "reading": value})[0] == 201
    assert calls == Counter({"PutItem": 10})


def test_first_reading_in_another_container_reads_the_run_once(client, calls):
    import app

    run = start_run(client)
    app.parts().runs.forget(run["id"])
    calls.clear()
    for value in range(5):
        post_readings(client, run["id"], {"sensorId": "s", "reading": value})
    assert calls == Counter({"GetItem": 1, "PutItem": 5})


def test_a_batch_is_one_batch_write_per_25_readings(client, calls):
    run = start_run(client, sensors=60)
    calls.clear()
    batch = [{"sensorId": f"sensor-{i + 1}", "reading": i} for i in range(60)]
    assert post_readings(client, run["id"], batch) == (201, {"ingested": 60})
    assert calls == Counter({"BatchWriteItem": 3})


def test_unprocessed_items_are_sent_again_until_written(dynamodb_faults, faulty_client):
    run = start_run(faulty_client)
    dynamodb_faults.unprocess_batch_writes(times=2, keep=10)
    batch = [{"sensorId": "s", "reading": i, "timestamp": 1_800_000_000_000 + i} for i in range(25)]
    assert post_readings(faulty_client, run["id"], batch) == (201, {"ingested": 25})
    assert dynamodb_faults.applied["BatchWriteItem"] == 3
    page = call(faulty_client, "GET", f"/api/sensors/data?runId={run['id']}&limit=100&order=asc")[1]
    assert [item["reading"] for item in page["items"]] == [float(i) for i in range(25)]


def test_readings_dynamodb_never_accepts_are_reported_not_dropped(dynamodb_faults, faulty_client):
    run = start_run(faulty_client)
    dynamodb_faults.unprocess_batch_writes(times=1000, keep=0)
    code, body = post_readings(
        faulty_client, run["id"], [{"sensorId": f"s{n}", "reading": 1} for n in (1, 2, 3)]
    )
    assert code == 503
    assert body["error"] == "ServiceUnavailable" and body["details"] == {"stored": 0, "notStored": 3}


def test_polling_routes_do_not_grow_with_history(client, calls):
    for _ in range(12):
        run = start_run(client)
        call(client, "POST", f"/api/runs/{run['id']}/finish")
    calls.clear()
    call(client, "GET", "/api/runs/can-start")
    assert calls == Counter({"GetItem": 1})
    calls.clear()
    call(client, "GET", "/api/runs/running")
    assert calls == Counter({"Query": 1})


def test_a_full_api_session_never_scans(client, calls):
    run = start_run(client)
    post_readings(client, run["id"], {"sensorId": "s", "reading": 1})
    post_readings(client, run["id"], [{"sensorId": "s", "reading": 2}])
    for path in (
        "/api/runs/can-start",
        "/api/runs",
        "/api/runs?status=RUNNING&user=alice",
        "/api/runs/all",
        "/api/runs/running",
        f"/api/runs/{run['id']}",
        f"/api/sensors/data?runId={run['id']}",
        "/api/sensors/data?sensorId=s&type=temperature",
    ):
        assert call(client, "GET", path)[0] == 200
    call(client, "POST", f"/api/runs/{run['id']}/finish")
    call(client, "POST", "/api/runs/interrupt-all")
    assert calls and "Scan" not in calls


def test_no_scan_call_anywhere_in_the_lambda_code():
    sources = [ROOT / "app.py", *sorted((ROOT / "chalicelib").rglob("*.py"))]
    for source in sources:
        for node in ast.walk(ast.parse(source.read_text())):
            if isinstance(node, ast.Attribute):
                assert node.attr not in ("scan", "Scan"), f"{source.name}:{node.lineno} scans"
