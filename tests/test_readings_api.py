"""Sensor readings: ingest forms, run checks, queries, TTL."""

from __future__ import annotations

import time

import pytest

from tests.helpers import call, post_readings, start_run


def test_single_reading_returns_the_stored_reading(client):
    run = start_run(client)
    reading = {"sensorId": "sensor-1", "reading": 27.4, "type": "temperature"}
    code, stored = post_readings(client, run["id"], reading, user="alice")
    assert code == 201
    assert stored["sensorId"] == "sensor-1" and stored["reading"] == 27.4
    assert stored["type"] == "temperature" and stored["runId"] == run["id"] and stored["user"] == "alice"
    items = call(client, "GET", f"/api/sensors/data?runId={run['id']}")[1]["items"]
    assert items == [stored]


def test_type_defaults_to_temperature_and_alias_path_works(client):
    run = start_run(client)
    code, stored = post_readings(client, run["id"], {"sensorId": "s", "reading": 1}, path="/sensors/data")
    assert code == 201 and stored["type"] == "temperature" and stored["reading"] == 1.0
    assert call(client, "GET", f"/sensors/data?runId={run['id']}")[1]["count"] == 1


def test_measurement_form_stores_one_reading_per_measurement(client):
    run = start_run(client)
    code, body = post_readings(
        client, run["id"], {"sensorId": "s1", "temperature": 21.5, "humidity": 40, "pressure": 1013.2}
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
    assert post_readings(client, run["id"], batch) == (201, {"ingested": 61})
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
    assert post_readings(client, run["id"], distinct) == (201, {"ingested": 22})
    post_readings(client, run["id"], {"sensorId": "sensor-1", "reading": 1.0, "timestamp": at}, user="bob")
    # Stamped on arrival: equal content sent twice is two readings, whatever the clock says.
    for _ in range(3):
        assert post_readings(client, run["id"], [{"sensorId": "sensor-1", "reading": 7.0}] * 2)[1] == {
            "ingested": 2
        }
    assert call(client, "GET", f"/api/sensors/data?runId={run['id']}&limit=1000")[1]["count"] == 22 + 1 + 6


def test_a_reading_sent_again_with_its_own_timestamp_is_stored_once(client):
    run = start_run(client)
    same = {"sensorId": "sensor-1", "reading": 20.0, "timestamp": "2026-01-01T00:00:00.000Z"}
    for _ in range(5):
        assert post_readings(client, run["id"], same)[0] == 201
    assert post_readings(client, run["id"], [same] * 30)[1] == {"ingested": 1}
    assert call(client, "GET", f"/api/sensors/data?runId={run['id']}&limit=1000")[1]["count"] == 1


def test_timestamps_iso_or_epoch_ms_normalised(client):
    run = start_run(client)
    a = post_readings(
        client, run["id"], {"sensorId": "s", "reading": 1, "timestamp": "2026-03-01T10:00:00+02:00"}
    )[1]
    b = post_readings(client, run["id"], {"sensorId": "s", "reading": 2, "timestamp": 1_772_359_200_123})[1]
    assert a["timestamp"] == "2026-03-01T08:00:00.000Z"
    assert b["timestamp"] == "2026-03-01T10:00:00.123Z"


def test_run_id_in_body_and_readings_without_run(client):
    run = start_run(client)
    code, stored = post_readings(client, None, {"sensorId": "s", "reading": 3, "runId": run["id"]})
    assert code == 201 and stored["runId"] == run["id"]
    code, loose = post_readings(client, None, {"sensorId": "free-sensor", "reading": 4})
    assert code == 201 and loose["runId"] is None
    by_sensor = call(client, "GET", "/api/sensors/data?sensorId=free-sensor")[1]["items"]
    assert [i["reading"] for i in by_sensor] == [4.0]


def test_unknown_run_is_404_and_ended_run_is_409(client):
    code, body = post_readings(
        client, "00000000-0000-4000-8000-000000000000", {"sensorId": "s", "reading": 1}
    )
    assert code == 404 and body["error"] == "NotFound"
    run = start_run(client)
    assert post_readings(client, run["id"], {"sensorId": "s", "reading": 1})[0] == 201
    call(client, "POST", f"/api/runs/{run['id']}/finish")
    # Refused at once in the process that ended the run, although its status was cached.
    code, body = post_readings(client, run["id"], {"sensorId": "s", "reading": 1})
    assert code == 409 and body["status"] == "SUCCESS"
    assert call(client, "GET", f"/api/sensors/data?runId={run['id']}")[1]["count"] == 1


def test_run_ended_elsewhere_is_refused_once_the_cache_expires(client, monkeypatch):
    """Over HTTP; tests/test_run_status_cache.py checks the bound itself, setting by setting."""
    import app

    now = [1000.0]
    monkeypatch.setattr(app.parts().runs, "_monotonic", lambda: now[0])
    ttl = app.parts().settings.run_status_cache_seconds
    run = start_run(client)  # remembered as RUNNING at 1000.0
    assert post_readings(client, run["id"], {"sensorId": "s", "reading": 1})[0] == 201
    # Another container ends the run: this one's cache does not hear of it.
    app.parts().runs.repository.end(run["id"], "SUCCESS", None, "another container")
    now[0] = 1000.0 + ttl - 0.001
    assert post_readings(client, run["id"], {"sensorId": "s", "reading": 2})[0] == 201  # within the bound
    now[0] = 1000.0 + ttl
    assert post_readings(client, run["id"], {"sensorId": "s", "reading": 3})[0] == 409


def test_overdue_run_refuses_readings_and_times_out(client, monkeypatch):
    from chalicelib import schemas

    run = start_run(client, duration=1)
    assert post_readings(client, run["id"], {"sensorId": "s", "reading": 1})[0] == 201
    real_now = schemas.now_ms
    monkeypatch.setattr(schemas, "now_ms", lambda: real_now() + 500_000)
    code, body = post_readings(client, run["id"], {"sensorId": "s", "reading": 1})
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
    post_readings(client, run["id"], batch)
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


def raw_items(pk):
    import app

    return app.parts().dynamodb.query(
        TableName=app.parts().settings.readings_table,
        KeyConditionExpression="pk = :pk",
        ExpressionAttributeValues={":pk": {"S": pk}},
    )["Items"]


def test_a_stored_reading_is_a_plain_item_with_a_ttl(client):
    import app

    run = start_run(client)
    reading = {"sensorId": "sensor-1", "reading": 27.4, "timestamp": "2027-01-15T08:00:00.5Z"}
    post_readings(client, run["id"], reading, user="alice")
    (listed,) = raw_items(run["id"])
    key = {"pk": listed["pk"], "sk": listed["sk"]}
    item = app.parts().dynamodb.get_item(TableName=app.parts().settings.readings_table, Key=key)["Item"]
    expires = int(item.pop("expiresAt")["N"])
    assert abs(expires - (time.time() + 30 * 86_400)) < 60  # counted from arrival
    assert item.pop("sk")["S"].startswith("2027-01-15T08:00:00.500Z#sensor-1#temperature#")
    assert item == {
        "pk": {"S": run["id"]},
        "runId": {"S": run["id"]},
        "sensorId": {"S": "sensor-1"},
        "type": {"S": "temperature"},
        "reading": {"N": "27.4"},
        "timestamp": {"S": "2027-01-15T08:00:00.500Z"},
        "at": {"N": "1800000000500"},
        "user": {"S": "alice"},
    }


def test_readings_without_a_run_are_kept_per_sensor_and_without_ttl_when_it_is_zero(monkeypatch, aws):
    from chalice.test import Client

    import app
    from tests.conftest import reset_app

    monkeypatch.setenv("READING_TTL_DAYS", "0")
    reset_app()
    app.parts()  # now: chalice.test.Client puts its stage's variables in place during requests
    with Client(app.app) as local:
        for sensor in ("free-1", "free-2"):
            assert post_readings(local, None, {"sensorId": sensor, "reading": 1.5})[0] == 201
    (item,) = raw_items("sensor#free-1")
    assert "expiresAt" not in item and "runId" not in item and item["sensorId"] == {"S": "free-1"}
    assert len(raw_items("sensor#free-2")) == 1


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
