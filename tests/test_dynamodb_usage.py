"""What each request costs in DynamoDB calls, and that nothing scans."""

from __future__ import annotations

import ast
from collections import Counter
from pathlib import Path

from tests.helpers import ADMIN, call, start_run

ROOT = Path(__file__).resolve().parent.parent


def post_reading(client, run_id, body):
    return call(client, "POST", "/api/sensors/data", body, **{"X-User": "u", "X-Run-Id": run_id})


def test_single_reading_is_one_write_and_no_read_at_steady_state(client, calls):
    run = start_run(client)
    post_reading(client, run["id"], {"sensorId": "s", "reading": 1})
    calls.clear()
    for value in range(10):
        assert post_reading(client, run["id"], {"sensorId": "s", "reading": value})[0] == 201
    assert calls == Counter({"PutItem": 10})


def test_first_reading_in_another_container_reads_the_run_once(client, calls):
    from chalicelib import deps

    run = start_run(client)
    deps.run_status_cache().forget(run["id"])
    calls.clear()
    for value in range(5):
        post_reading(client, run["id"], {"sensorId": "s", "reading": value})
    assert calls == Counter({"GetItem": 1, "PutItem": 5})


def test_batch_is_one_batch_write_per_25_chunks(client, calls):
    run = start_run(client, sensors=60)
    calls.clear()
    # 4 sensors: 4 chunks, one BatchWriteItem.
    batch = [{"sensorId": f"s{i % 4}", "reading": i} for i in range(60)]
    assert post_reading(client, run["id"], batch) == (201, {"ingested": 60})
    assert calls == Counter({"BatchWriteItem": 1})
    # 60 sensors, one reading each: 60 chunks, 25 per BatchWriteItem.
    calls.clear()
    batch = [{"sensorId": f"sensor-{i + 1}", "reading": i} for i in range(60)]
    assert post_reading(client, run["id"], batch) == (201, {"ingested": 60})
    assert calls == Counter({"BatchWriteItem": 3})


def test_unprocessed_items_are_retried_until_written(aws):
    from chalicelib.aws import dynamodb_client
    from chalicelib.readings import Reading, ReadingQuery, ReadingRepository
    from chalicelib.settings import get_settings

    real = dynamodb_client()
    table = get_settings().readings_table

    class Flaky:
        """Accepts only the first 10 items of every BatchWriteItem."""

        calls = 0

        def batch_write_item(self, RequestItems):
            Flaky.calls += 1
            requests = RequestItems[table]
            real.batch_write_item(RequestItems={table: requests[:10]})
            rest = requests[10:]
            return {"UnprocessedItems": {table: rest} if rest else {}}

    repository = ReadingRepository(Flaky(), table, 30)  # type: ignore[arg-type]
    # 25 sensors: 25 chunks of one reading.
    readings = [
        Reading(f"s{i}", "temperature", float(i), 1_800_000_000_000 + i, None, "u") for i in range(25)
    ]
    assert repository.put_many(readings) == 25
    assert Flaky.calls == 3
    repository = ReadingRepository(real, table, 30)
    values = []
    for i in range(25):
        page = repository.query(ReadingQuery(sensor_id=f"s{i}"), limit=100, start_key=None)
        values += [r.value for r in page.readings]
    assert sorted(values) == [float(i) for i in range(25)]


def test_readings_dynamodb_never_accepts_are_reported_not_dropped(aws, client):
    from chalicelib import deps

    run = start_run(client)

    class Refusing:
        def batch_write_item(self, RequestItems):
            return {"UnprocessedItems": RequestItems}

    deps.reading_repository()._client = Refusing()  # type: ignore[assignment]
    # Three sensors: three chunks, so a BatchWriteItem (one chunk would be one PutItem).
    code, body = post_reading(client, run["id"], [{"sensorId": f"s{n}", "reading": 1} for n in (1, 2, 3)])
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
    post_reading(client, run["id"], {"sensorId": "s", "reading": 1})
    post_reading(client, run["id"], [{"sensorId": "s", "reading": 2}])
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
    call(client, "POST", "/api/runs/interrupt-all", **ADMIN)
    assert calls and "Scan" not in calls


def test_no_scan_call_anywhere_in_the_lambda_code():
    sources = [ROOT / "app.py", *sorted((ROOT / "chalicelib").rglob("*.py"))]
    for source in sources:
        for node in ast.walk(ast.parse(source.read_text())):
            if isinstance(node, ast.Attribute):
                assert node.attr not in ("scan", "Scan"), f"{source.name}:{node.lineno} scans"
