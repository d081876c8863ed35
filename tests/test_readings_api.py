"""Sensor readings: ingest forms, run checks, queries, TTL."""

from __future__ import annotations

import time

import pytest

from tests.helpers import call, start_run


def post(client, body, run_id=None, user="alice", path="/api/sensors/data"):
    headers = {"X-User": user}
    if run_id:
        headers["X-Run-Id"] = run_id
    return call(client, "POST", path, body, **headers)


def test_single_reading_returns_the_stored_reading(client):
    run = start_run(client)
    code, stored = post(client, {"sensorId": "sensor-1", "reading": 27.4, "type": "temperature"}, run["id"])
    assert code == 201
    assert stored["sensorId"] == "sensor-1" and stored["reading"] == 27.4
    assert stored["type"] == "temperature" and stored["runId"] == run["id"] and stored["user"] == "alice"
    items = call(client, "GET", f"/api/sensors/data?runId={run['id']}")[1]["items"]
    assert items == [stored]


def test_type_defaults_to_temperature_and_alias_path_works(client):
    run = start_run(client)
    code, stored = post(client, {"sensorId": "s", "reading": 1}, run["id"], path="/sensors/data")
    assert code == 201 and stored["type"] == "temperature" and stored["reading"] == 1.0
    assert call(client, "GET", f"/sensors/data?runId={run['id']}")[1]["count"] == 1


def test_measurement_form_stores_one_reading_per_measurement(client):
    run = start_run(client)
    code, body = post(
        client, {"sensorId": "s1", "temperature": 21.5, "humidity": 40, "pressure": 1013.2}, run["id"]
    )
    assert (code, body) == (201, {"ingested": 3})
    items = call(client, "GET", f"/api/sensors/data?runId={run['id']}&sensorId=s1")[1]["items"]
    assert sorted((i["type"], i["reading"]) for i in items) == [
        ("humidity", 40.0),
        ("pressure", 1013.2),
        ("temperature", 21.5),
    ]


def test_batch_of_readings(client):
    run = start_run(client)
    batch = [
        {"sensorId": f"s{i % 3}", "reading": float(i), "timestamp": 1_800_000_000_000 + i} for i in range(60)
    ]
    batch.append({"sensorId": "s9", "humidity": 55.5})
    assert post(client, batch, run["id"]) == (201, {"ingested": 61})
    everything = call(client, "GET", f"/api/sensors/data?runId={run['id']}&limit=1000&order=asc")[1]
    assert everything["count"] == 61 and everything["nextKey"] is None
    values = [i["reading"] for i in everything["items"] if i["sensorId"] != "s9"]
    assert values == [float(i) for i in range(60)]  # ascending by timestamp


def test_readings_of_the_same_millisecond_never_overwrite_each_other(client):
    run = start_run(client)
    at = "2026-01-01T00:00:00.000Z"
    distinct = [{"sensorId": "sensor-1", "reading": float(v), "timestamp": at} for v in range(20)]
    distinct += [
        {"sensorId": "sensor-1", "reading": 1.0, "type": kind, "timestamp": at} for kind in ("a", "b")
    ]
    assert post(client, distinct, run["id"]) == (201, {"ingested": 22})
    post(client, {"sensorId": "sensor-1", "reading": 1.0, "timestamp": at}, run["id"], user="bob")
    # Stamped on arrival: equal content sent twice is two readings, whatever the clock says.
    for _ in range(3):
        assert post(client, [{"sensorId": "sensor-1", "reading": 7.0}] * 2, run["id"])[1] == {"ingested": 2}
    assert call(client, "GET", f"/api/sensors/data?runId={run['id']}&limit=1000")[1]["count"] == 22 + 1 + 6


def test_a_reading_sent_again_with_its_own_timestamp_is_stored_once(client):
    run = start_run(client)
    same = {"sensorId": "sensor-1", "reading": 20.0, "timestamp": "2026-01-01T00:00:00.000Z"}
    for _ in range(5):
        assert post(client, same, run["id"])[0] == 201
    assert post(client, [same] * 30, run["id"])[1] == {"ingested": 1}
    assert call(client, "GET", f"/api/sensors/data?runId={run['id']}&limit=1000")[1]["count"] == 1


def test_timestamps_iso_or_epoch_ms_normalised(client):
    run = start_run(client)
    a = post(client, {"sensorId": "s", "reading": 1, "timestamp": "2026-03-01T10:00:00+02:00"}, run["id"])[1]
    b = post(client, {"sensorId": "s", "reading": 2, "timestamp": 1_772_359_200_123}, run["id"])[1]
    assert a["timestamp"] == "2026-03-01T08:00:00.000Z"
    assert b["timestamp"] == "2026-03-01T10:00:00.123Z"


def test_run_id_in_body_and_readings_without_run(client):
    run = start_run(client)
    code, stored = post(client, {"sensorId": "s", "reading": 3, "runId": run["id"]})
    assert code == 201 and stored["runId"] == run["id"]
    code, loose = post(client, {"sensorId": "free-sensor", "reading": 4})
    assert code == 201 and loose["runId"] is None
    by_sensor = call(client, "GET", "/api/sensors/data?sensorId=free-sensor")[1]["items"]
    assert [i["reading"] for i in by_sensor] == [4.0]


def test_unknown_run_is_404_and_ended_run_is_409(client):
    code, body = post(client, {"sensorId": "s", "reading": 1}, "00000000-0000-4000-8000-000000000000")
    assert code == 404 and body["error"] == "NotFound"
    run = start_run(client)
    assert post(client, {"sensorId": "s", "reading": 1}, run["id"])[0] == 201
    call(client, "POST", f"/api/runs/{run['id']}/finish")
    # Refused at once in the process that ended the run, although its status was cached.
    code, body = post(client, {"sensorId": "s", "reading": 1}, run["id"])
    assert code == 409 and body["status"] == "SUCCESS"
    assert call(client, "GET", f"/api/sensors/data?runId={run['id']}")[1]["count"] == 1


def test_run_ended_elsewhere_is_refused_once_the_cache_expires(client, monkeypatch):
    """Over HTTP; tests/test_run_status_cache.py checks the bound itself, setting by setting."""
    import functools

    from chalicelib import deps
    from chalicelib.aws import dynamodb_client
    from chalicelib.run_status import RunStatusCache
    from chalicelib.runs import RunRepository
    from chalicelib.settings import get_settings

    now = [1000.0]
    monkeypatch.setattr(deps, "RunStatusCache", functools.partial(RunStatusCache, monotonic=lambda: now[0]))
    deps.run_status_cache.cache_clear()  # the app's cache, built again with the stepped clock
    ttl = get_settings().run_status_cache_seconds
    run = start_run(client)  # remembered as RUNNING at 1000.0
    assert post(client, {"sensorId": "s", "reading": 1}, run["id"])[0] == 201
    # Another container ends the run: this one's cache does not hear of it.
    other = RunRepository(dynamodb_client(), get_settings().runs_table, 5)
    other.end(run["id"], "SUCCESS")
    now[0] = 1000.0 + ttl - 0.001
    assert post(client, {"sensorId": "s", "reading": 2}, run["id"])[0] == 201  # within the bound
    now[0] = 1000.0 + ttl
    assert post(client, {"sensorId": "s", "reading": 3}, run["id"])[0] == 409


def test_overdue_run_refuses_readings_and_times_out(client, monkeypatch):
    from chalicelib import clock

    run = start_run(client, duration=1)
    assert post(client, {"sensorId": "s", "reading": 1}, run["id"])[0] == 201
    real_now = clock.now_ms
    monkeypatch.setattr(clock, "now_ms", lambda: real_now() + 500_000)
    code, body = post(client, {"sensorId": "s", "reading": 1}, run["id"])
    assert code == 409 and body["status"] == "TIMEOUT"
    assert call(client, "GET", "/api/runs/can-start")[1]["currentRunning"] == 0


def test_query_filters_order_range_and_pages(client):
    run = start_run(client)
    base = 1_800_000_000_000
    batch = [
        {"sensorId": s, "reading": float(i), "type": t, "timestamp": base + i * 1000}
        for i in range(10)
        for s, t in (("a", "temperature"), ("b", "humidity"))
    ]
    post(client, batch, run["id"])
    rid = run["id"]
    desc = call(client, "GET", f"/api/sensors/data?runId={rid}&sensorId=a")[1]["items"]
    assert [i["reading"] for i in desc] == [float(i) for i in reversed(range(10))]
    humid = call(client, "GET", f"/api/sensors/data?runId={rid}&type=humidity&order=asc")[1]["items"]
    assert {i["sensorId"] for i in humid} == {"b"} and len(humid) == 10
    start, end = "2027-01-15T08:00:02.000Z", base + 5000
    ranged = call(client, "GET", f"/api/sensors/data?runId={rid}&sensorId=a&from={start}&to={end}&order=asc")[
        1
    ]
    assert [i["reading"] for i in ranged["items"]] == [2.0, 3.0, 4.0, 5.0]
    aliased = call(
        client, "GET", f"/api/sensors/data?runId={rid}&sensorId=a&startDate={start}&endDate={end}"
    )[1]
    assert aliased["count"] == 4
    by_sensor = call(client, "GET", "/api/sensors/data?sensorId=b&limit=3")[1]
    assert by_sensor["count"] == 3 and by_sensor["nextKey"]
    seen, token = [], None
    while True:
        page = call(
            client, "GET", f"/api/sensors/data?runId={rid}&limit=7" + (f"&nextKey={token}" if token else "")
        )[1]
        seen += page["items"]
        token = page["nextKey"]
        if not token:
            break
    assert len(seen) == 20 and len({(i["sensorId"], i["timestamp"]) for i in seen}) == 20


def test_readings_carry_a_ttl(client, monkeypatch):
    from chalicelib.aws import dynamodb_client
    from chalicelib.settings import get_settings

    run = start_run(client)
    post(client, {"sensorId": "s", "reading": 1}, run["id"])
    items = dynamodb_client().query(
        TableName=get_settings().readings_table,
        KeyConditionExpression="pk = :pk",
        ExpressionAttributeValues={":pk": {"S": run["id"]}},
    )["Items"]
    assert len(items) == 1
    expires = int(items[0]["expiresAt"]["N"])
    assert abs(expires - (time.time() + 30 * 86_400)) < 60


def test_ttl_zero_keeps_readings_forever(monkeypatch):
    from chalicelib.readings import Reading, ReadingRepository

    repository = ReadingRepository(client=None, table_name="t", ttl_days=0)  # type: ignore[arg-type]
    (chunk,) = repository.prepare([Reading("s", "temperature", 1.0, 1_800_000_000_000, None, "u")])
    assert "expiresAt" not in chunk.item and chunk.item["pk"] == {"S": "-"} and chunk.count == 1


@pytest.mark.parametrize(
    "query",
    [
        "",
        "type=temperature",
        "runId=nope",
        "sensorId=a%20b",
        "sensorId=s&limit=0",
        "sensorId=s&limit=1001",
        "sensorId=s&order=up",
        "sensorId=s&from=yesterday",
        "sensorId=s&to=99999999999999999999",
        "sensorId=s&type=%3Cscript%3E",
        "sensorId=s&nextKey=xyz",
    ],
)
def test_bad_queries_are_400(client, query):
    code, body = call(client, "GET", f"/api/sensors/data?{query}")
    assert code == 400, body
    assert body["message"]
