"""Run analytics (`GET /api/runs/{id}/stats`, `GET /api/sensors/latest`) against figures the
test computes itself from the readings stored in DynamoDB, read straight from the table
(not through readings.Stream, which the fold reads through)."""

from __future__ import annotations

import itertools
import os
import threading
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from chalicelib import analytics, readings
from chalicelib.schemas import format_ms
from tests.helpers import call, finish, http, post_ok, start_run

T0 = 1_800_000_000_000


# ---- the independent side -------------------------------------------------------------


def stored_readings(run_id: str) -> list[tuple[str, str, int, float]]:
    """(sensor, type, timestamp ms, value) of every reading stored for the run, from the table."""
    import app

    client = app.parts().dynamodb
    out: list[tuple[str, str, int, float]] = []
    request: dict[str, Any] = {
        "TableName": app.parts().settings.readings_table,
        "KeyConditionExpression": "pk = :pk",
        "ExpressionAttributeValues": {":pk": {"S": run_id}},
    }
    while True:
        response = client.query(**request)
        for item in response["Items"]:
            out.append(
                (item["sensorId"]["S"], item["type"]["S"], int(item["at"]["N"]), float(item["reading"]["N"]))
            )
        if "LastEvaluatedKey" not in response:
            return out
        request["ExclusiveStartKey"] = response["LastEvaluatedKey"]


def expected_series(readings: list[tuple[str, str, int, float]]) -> dict[tuple[str, str], dict[str, Any]]:
    by_series: dict[tuple[str, str], list[tuple[int, float]]] = defaultdict(list)
    for sensor, kind, at, value in readings:
        by_series[(sensor, kind)].append((at, value))
    out = {}
    for key, points in by_series.items():
        times = sorted(at for at, _ in points)
        values = [v for _, v in points]
        last_at = times[-1]
        out[key] = {
            "count": len(points),
            "min": min(values),
            "max": max(values),
            "mean": sum(values) / len(values),
            "firstTimestamp": format_ms(times[0]),
            "lastTimestamp": format_ms(last_at),
            # Readings of one series at one instant: any of them may be the last.
            "lastValues": {v for at, v in points if at == last_at},
            "largestGapMs": max((b - a for a, b in itertools.pairwise(times)), default=None),
        }
    return out


def assert_stats_match(stats: dict[str, Any], run: dict[str, Any], readings: list[Any]) -> None:
    expected = expected_series(readings)
    assert [(s["sensorId"], s["type"]) for s in stats["series"]] == sorted(expected)
    for series in stats["series"]:
        want = expected[(series["sensorId"], series["type"])]
        assert series["count"] == want["count"]
        assert series["min"] == want["min"] and series["max"] == want["max"]
        assert series["mean"] == pytest.approx(want["mean"])
        assert series["firstTimestamp"] == want["firstTimestamp"]
        assert series["lastTimestamp"] == want["lastTimestamp"]
        assert series["lastValue"] in want["lastValues"]
        assert series["largestGapMs"] == want["largestGapMs"]
    values = [r[3] for r in readings]
    assert stats["readings"] == len(readings)
    assert stats["sensors"] == len({r[0] for r in readings})
    assert stats["min"] == min(values) and stats["max"] == max(values)
    assert stats["mean"] == pytest.approx(sum(values) / len(values))
    assert stats["firstTimestamp"] == format_ms(min(r[2] for r in readings))
    assert stats["lastTimestamp"] == format_ms(max(r[2] for r in readings))
    sensors = run["params"]["sensorIds"]
    rounds = run["duration"] // run["interval"]
    per_sensor: dict[str, int] = defaultdict(int)
    for (sensor, _), want in expected.items():
        per_sensor[sensor] = max(per_sensor[sensor], want["count"])
    received = sum(min(rounds, per_sensor[s]) for s in sensors)
    assert stats["expected"] == rounds * len(sensors)
    assert stats["received"] == received
    assert stats["completeness"] == pytest.approx(received / (rounds * len(sensors)))


def latest_expected(readings: list[Any]) -> dict[tuple[str, str], tuple[str, set[float]]]:
    return {
        key: (want["lastTimestamp"], want["lastValues"]) for key, want in expected_series(readings).items()
    }


def stats_of(client: Any, run_id: str) -> dict[str, Any]:
    status, stats = call(client, "GET", f"/api/runs/{run_id}/stats")
    assert status == 200, stats
    return stats  # type: ignore[no-any-return]


@pytest.fixture
def final_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """An ended run's readings count as final at once (not RUN_STATUS_CACHE_SECONDS + 60 s later)."""
    monkeypatch.setattr(analytics, "settle_ms", lambda cache_seconds: 0)


@pytest.fixture
def small_pages(monkeypatch: pytest.MonkeyPatch) -> None:
    """One page of 10 readings per call."""
    monkeypatch.setattr(analytics, "STATS_CALLS", 1)
    monkeypatch.setattr(readings, "PAGE_READINGS", 10)


@pytest.fixture
def real_environ() -> Any:
    """chalice.test.Client swaps os.environ for a patched copy around each request and puts
    back what it found; requests overlapping on several threads can leave a copy in place."""
    real = os.environ
    yield
    os.environ = real  # noqa: B003 - putting the real mapping back is the point


def stats_item(run_id: str) -> dict[str, Any] | None:
    import app

    key = {"id": {"S": f"#stats#{run_id}"}}
    return app.parts().dynamodb.get_item(TableName=app.parts().settings.runs_table, Key=key).get("Item")  # type: ignore[no-any-return]


# ---- stats ------------------------------------------------------------------------------


def test_stats_of_a_running_run_equal_figures_computed_from_the_stored_readings(client):
    run = start_run(client, sensors=3, duration=30, interval=2)
    run_id = run["id"]
    post_ok(
        client,
        run_id,
        [{"sensorId": "sensor-1", "reading": i * 1.5, "timestamp": T0 + i * 700} for i in range(40)],
    )
    post_ok(
        client,
        run_id,
        [{"sensorId": "sensor-2", "reading": -i, "timestamp": T0 + i * 3000 + 5} for i in range(9)],
    )
    for i in range(4):  # measurement objects: three types of one sensor at one instant
        post_ok(
            client,
            run_id,
            {
                "sensorId": "sensor-3",
                "temperature": 20 + i,
                "humidity": 40 - i,
                "pressure": 1000.5 + i,
                "timestamp": T0 + i * 2000,
            },
        )
    post_ok(client, run_id, {"sensorId": "s1", "reading": 7.25})  # stamped on arrival
    stats = stats_of(client, run_id)
    readings = stored_readings(run_id)
    assert len(readings) == 40 + 9 + 12 + 1
    assert_stats_match(stats, run, readings)
    assert stats["status"] == "RUNNING" and stats["complete"] is True and stats["final"] is False
    assert "RUNNING" in stats["note"]
    # 15 rounds due per declared sensor: sensor-1 sent 40 (counts 15), sensor-2 9, sensor-3 4 rounds
    # of 3 types (4), s1 1; the other 14 declared sensors none.
    assert stats["received"] == 15 + 9 + 4 + 1
    assert stats["expected"] == 15 * len(run["params"]["sensorIds"])
    assert stats_item(run_id) is None  # nothing kept while RUNNING


def test_latest_is_the_last_reading_of_each_sensor_and_type(client):
    run = start_run(client, sensors=2)
    run_id = run["id"]
    post_ok(
        client,
        run_id,
        [
            {"sensorId": f"sensor-{1 + i % 2}", "reading": i, "timestamp": T0 + 1000 * (i % 7)}
            for i in range(30)
        ],
    )
    post_ok(
        client, run_id, [{"sensorId": "sensor-1", "humidity": 50 + i, "timestamp": T0 - i} for i in range(5)]
    )
    post_ok(client, run_id, {"sensorId": "s2", "reading": 3.5})
    status, latest = call(client, "GET", f"/api/sensors/latest?runId={run_id.upper()}")
    assert status == 200, latest
    want = latest_expected(stored_readings(run_id))
    assert latest["runId"] == run_id and latest["complete"] is True and latest["count"] == len(want) == 4
    assert [(i["sensorId"], i["type"]) for i in latest["items"]] == sorted(want)
    for item in latest["items"]:
        timestamp, values = want[(item["sensorId"], item["type"])]
        assert item["timestamp"] == timestamp and item["reading"] in values


def test_latest_of_a_run_beyond_the_bound_comes_from_its_newest_readings(client, monkeypatch):
    """A running run with more readings than one call reads: the newest are read, newest first,
    and only those: a series absent from them is not listed, and the answer says it is partial."""
    monkeypatch.setattr(analytics, "STATS_CALLS", 1)
    monkeypatch.setattr(readings, "PAGE_READINGS", 10)
    run_id = start_run(client, sensors=2)["id"]
    post_ok(client, run_id, [{"sensorId": "sensor-2", "reading": -1.0, "timestamp": T0 - 1}])  # only old
    post_ok(
        client,
        run_id,
        [{"sensorId": "sensor-1", "reading": i, "timestamp": T0 + 1000 * i} for i in range(40)],
    )
    status, latest = call(client, "GET", f"/api/sensors/latest?runId={run_id}")
    assert status == 200, latest
    assert latest["complete"] is False  # 41 readings, 10 read newest first
    by_series = {(i["sensorId"], i["type"]): (i["reading"], i["timestamp"]) for i in latest["items"]}
    assert by_series == {("sensor-1", "temperature"): (39.0, format_ms(T0 + 39_000))}


def test_bad_ids_are_400_and_unknown_runs_404(client):
    unknown = "00000000-0000-4000-8000-000000000000"
    assert call(client, "GET", "/api/runs/not-a-run/stats")[0] == 404  # a path naming no run
    status, body = call(client, "GET", f"/api/runs/{unknown}/stats")
    assert status == 404 and body["error"] == "NotFound"
    assert call(client, "GET", "/api/sensors/latest")[0] == 400
    assert call(client, "GET", "/api/sensors/latest?runId=x")[0] == 400
    assert call(client, "GET", f"/api/sensors/latest?runId={unknown}")[0] == 404


def test_a_run_without_readings_has_zero_counts(client, final_at_once):
    run = start_run(client)
    stats = stats_of(client, run["id"])
    assert stats["readings"] == 0 and stats["series"] == [] and stats["received"] == 0
    assert stats["mean"] is None and stats["firstTimestamp"] is None and stats["complete"] is True
    finish(client, run["id"])
    stats = stats_of(client, run["id"])
    assert stats["final"] is True and stats["complete"] is True and stats["readings"] == 0


def test_resent_batches_do_not_change_the_counts(client):
    run = start_run(client)
    batch = [{"sensorId": f"s{i % 3}", "reading": i / 4, "timestamp": T0 + i * 10} for i in range(60)]
    single = {"sensorId": "s1", "reading": 99.5, "timestamp": T0 + 5}
    post_ok(client, run["id"], batch)
    post_ok(client, run["id"], single)
    first = stats_of(client, run["id"])
    for _ in range(3):
        post_ok(client, run["id"], batch)
        post_ok(client, run["id"], single)
    again = stats_of(client, run["id"])
    assert again == first and again["readings"] == 61
    assert_stats_match(again, run, stored_readings(run["id"]))


def test_running_stats_beyond_the_bound_are_partial_then_complete_across_calls_after_finish(
    client, small_pages, final_at_once
):
    import app

    run = start_run(client)
    run_id = run["id"]
    post_ok(
        client,
        run_id,
        [{"sensorId": f"s{i % 4}", "reading": (i * 7) % 11, "timestamp": T0 + i * 100} for i in range(35)],
    )
    readings = sorted(stored_readings(run_id), key=lambda r: (r[2], r[0], r[1]))
    for _ in range(2):  # RUNNING: folded afresh every call, never further than the bound
        stats = stats_of(client, run_id)
        assert stats["complete"] is False and stats["final"] is False and stats["readings"] == 10
        assert "partial" in stats["note"]
        assert_stats_match(stats, run, readings[:10])
    assert stats_item(run_id) is None
    finish(client, run_id)
    seen = []
    for _ in range(4):
        stats = stats_of(client, run_id)
        assert stats["final"] is True
        seen.append((stats["readings"], stats["complete"]))
    assert seen == [(10, False), (20, False), (30, False), (35, True)]
    assert_stats_match(stats, run, readings)
    # Complete: the answer is read, not computed; one GetItem for the run, one for its stats.
    calls: list[str] = []
    app.parts().dynamodb.meta.events.register(
        "before-call.dynamodb", lambda model, **_: calls.append(model.name)
    )
    assert stats_of(client, run_id) == stats
    status, latest = call(client, "GET", f"/api/sensors/latest?runId={run_id}")
    assert status == 200 and latest["complete"] is True and latest["final"] is True
    assert calls == ["GetItem", "GetItem"] * 2


def test_a_run_ended_moments_ago_is_folded_afresh_and_not_kept(client):
    run = start_run(client)
    post_ok(client, run["id"], [{"sensorId": "s", "reading": i, "timestamp": T0 + i} for i in range(5)])
    finish(client, run["id"])
    stats = stats_of(client, run["id"])  # within RUN_STATUS_CACHE_SECONDS + 60 s of the end
    assert stats["complete"] is True and stats["final"] is False and stats["readings"] == 5
    assert "ended moments ago" in stats["note"]
    assert stats_item(run["id"]) is None


def test_the_kept_fold_is_not_listed_as_a_run(client, final_at_once):
    run = start_run(client)
    post_ok(client, run["id"], {"sensorId": "s", "reading": 1.0})
    finish(client, run["id"])
    assert stats_of(client, run["id"])["final"] is True
    assert stats_item(run["id"]) is not None
    listed = [
        call(client, "GET", "/api/runs?limit=100")[1]["items"],
        call(client, "GET", "/api/runs?limit=100&status=SUCCESS")[1]["items"],
        call(client, "GET", "/api/runs?limit=100&user=alice")[1]["items"],
        call(client, "GET", "/api/runs/all")[1],
        call(client, "GET", "/api/runs/running")[1],
    ]
    assert [[r["id"] for r in runs] for runs in listed] == [[run["id"]]] * 3 + [[run["id"]], []]


def test_a_call_that_loses_the_race_to_store_keeps_the_winners_progress(
    client, small_pages, final_at_once, monkeypatch
):
    """Every stored state is a whole fold with its own cursor, so no readings are ever added
    twice; what the version condition prevents is a slow call overwriting newer progress."""
    import app

    run = start_run(client)
    post_ok(client, run["id"], [{"sensorId": "s", "reading": i, "timestamp": T0 + i} for i in range(45)])
    finish(client, run["id"])
    assert stats_of(client, run["id"])["readings"] == 10
    store = app.parts().analytics
    real_put = store.keep
    raced: list[int] = []
    nested = threading.local()

    def put_after_other_calls(*args: Any) -> bool:
        if not raced and not getattr(nested, "active", False):
            # Two other calls read and store while this one folds 10 -> 20.
            nested.active = True
            raced.extend(stats_of(client, run["id"])["readings"] for _ in range(2))
            nested.active = False
        return bool(real_put(*args))

    monkeypatch.setattr(store, "keep", put_after_other_calls)
    stats = stats_of(client, run["id"])
    assert raced == [20, 30]
    assert stats["readings"] == 30 and stats["complete"] is False  # the newest stored, not its own 20
    monkeypatch.setattr(store, "keep", real_put)
    assert [stats_of(client, run["id"])["readings"] for _ in range(2)] == [40, 45]
    assert_stats_match(stats_of(client, run["id"]), run, stored_readings(run["id"]))


# ---- concurrency, on moto's server with each call atomic (tests/dynamodb_faults.py) ----------


@pytest.mark.slow
def test_stats_after_concurrent_ingestion_from_eight_threads_are_exact(
    faulty_client, final_at_once, real_environ
):
    run = start_run(faulty_client, sensors=8, duration=600, interval=1)
    run_id = run["id"]
    barrier = threading.Barrier(8)

    def ingest(worker: int) -> None:
        barrier.wait()
        sensor = f"sensor-{worker + 1}"
        for round_ in range(5):
            batch = [
                {
                    "sensorId": sensor,
                    "reading": worker * 100 + round_ * 10 + i,
                    "timestamp": T0 + round_ * 20_000 + i * 500,
                }
                for i in range(10)
            ]
            post_ok(faulty_client, run_id, batch)
            if round_ % 2:
                post_ok(faulty_client, run_id, batch)  # a re-send: stored once
            post_ok(
                faulty_client,
                run_id,
                {
                    "sensorId": sensor,
                    "type": "humidity",
                    "reading": worker + round_,
                    "timestamp": T0 + round_ * 1000 + worker,
                },
            )
            post_ok(faulty_client, run_id, {"sensorId": "s", "reading": worker})  # stamped on arrival

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(ingest, range(8)))
    finish(faulty_client, run_id)
    readings = stored_readings(run_id)
    assert len(readings) == 8 * 5 * (10 + 1 + 1)
    stats = stats_of(faulty_client, run_id)
    assert stats["final"] is True and stats["complete"] is True
    assert_stats_match(stats, run, readings)
    assert stats_of(faulty_client, run_id) == stats


@pytest.mark.slow
def test_concurrent_stats_calls_on_an_ended_run_count_every_reading_once_and_never_go_back(
    faulty_client, final_at_once, real_environ, monkeypatch
):
    monkeypatch.setattr(analytics, "STATS_CALLS", 1)
    monkeypatch.setattr(readings, "PAGE_READINGS", 3)
    run = start_run(faulty_client, sensors=3)
    run_id = run["id"]
    post_ok(
        faulty_client,
        run_id,
        [{"sensorId": f"sensor-{1 + i % 3}", "reading": i, "timestamp": T0 + i * 37} for i in range(90)],
    )
    finish(faulty_client, run_id)
    barrier = threading.Barrier(2)

    def keep_asking(_: int) -> list[int]:
        barrier.wait()
        counts = []
        for _ in range(100):  # 30 steps are needed; the rest is slack for lost races
            stats = stats_of(faulty_client, run_id)
            counts.append(stats["readings"])
            if stats["complete"]:
                break
        return counts

    with ThreadPoolExecutor(2) as pool:
        answers = list(pool.map(keep_asking, range(2)))
    for counts in answers:
        assert counts == sorted(counts) and counts[-1] == 90 and all(c <= 90 and c % 3 == 0 for c in counts)
    item = stats_item(run_id)
    # 30 folds of 3 readings; the 31st reads the empty page after a full one (as DynamoDB pages).
    assert item is not None and item["done"]["BOOL"] and int(item["version"]["N"]) == 31
    assert_stats_match(stats_of(faulty_client, run_id), run, stored_readings(run_id))


# ---- the fold itself ----------------------------------------------------------------------


def reading(sensor: str, kind: str, value: float, at: int) -> Any:
    return readings.Reading(sensor, kind, value, at, "r", "u")


def a_run(**changes: Any) -> Any:
    from chalicelib.runs import Run

    fields: dict[str, Any] = {
        "id": "r",
        "username": "u",
        "status": "SUCCESS",
        "started_ms": T0,
        "duration": 10,
        "interval": 2,
        "sensor_ids": ("a", "b"),
        "finished_ms": T0 + 10_000,
    }
    return Run(**{**fields, **changes})


def test_the_fold_survives_encoding_and_gives_the_summary_row():
    fold = analytics.Fold()
    for i in range(6):
        fold.add(reading("a", "temperature", i, T0 + i * 1000))
    fold = analytics.Fold.decode(fold.encode())
    for i in range(3):
        fold.add(reading("a", "humidity", 50 - i, T0 + 6000 + i))
    fold.add(reading("b", "temperature", -2.5, T0 + 9000))
    assert fold.summary_row(a_run()) == {
        "readings": 10,
        "sensorsReporting": 2,
        "expected": 10,
        "completeness": (5 + 1) / 10,
        "firstReadingAt": format_ms(T0),
        "lastReadingAt": format_ms(T0 + 9000),
        "min": -2.5,
        "max": 50,
        "mean": (15 + 147 - 2.5) / 10,
    }
    assert list(fold.summary_row(a_run())) == list(analytics.SUMMARY_COLUMNS)
    empty = analytics.Fold().summary_row(a_run(status="RUNNING", finished_ms=None))
    assert empty["lastReadingAt"] == empty["mean"] == empty["min"] == "" and empty["readings"] == 0


def test_series_past_the_listed_ones_count_in_every_total_and_the_answer_says_what_it_left_out():
    fold = analytics.Fold()
    for i in range(analytics.MAX_LISTED_SERIES + 5):
        fold.add(reading(f"{i:064d}", "t" * 32, -123456.789 / (i + 1), 4_000_000_000_000 + i))
    assert len(fold.encode()) < analytics.MAX_KEPT_BYTES
    view = fold.view(a_run(), complete=True, final=True, note="")
    assert len(view.series) == analytics.MAX_LISTED_SERIES and view.omittedReadings == 5
    assert (
        view.readings == analytics.MAX_LISTED_SERIES + 5 and view.sensors == analytics.MAX_LISTED_SERIES + 5
    )
    assert view.complete is False and "5 series" in view.note


@pytest.mark.slow
def test_a_run_of_1100_series_counts_every_declared_sensor(client, final_at_once):
    """100 declared sensors each sending 11 types at one instant: 1,100 series, every input
    within the documented limits."""
    sensors = [f"d-{i}" for i in range(100)]
    status, run = call(
        client, "POST", "/api/runs/start", {"sensorIds": sensors, "duration": 60, "interval": 1}
    )
    assert status == 201, run
    kinds = [f"type-{k}" for k in range(11)]
    body = [{"sensorId": s, "type": k, "reading": 1.0, "timestamp": T0} for s in sensors for k in kinds]
    for start in range(0, len(body), 500):
        post_ok(client, run["id"], body[start : start + 500])
    status, latest = call(client, "GET", f"/api/sensors/latest?runId={run['id']}")
    assert (latest["count"], latest["complete"]) == (1100, True)
    finish(client, run["id"])
    stats = stats_of(client, run["id"])
    assert (stats["readings"], stats["sensors"], stats["received"]) == (1100, 100, 100)
    assert stats["completeness"] == 100 / 6000 and stats["omittedReadings"] == 100 and not stats["complete"]
    status, latest = call(client, "GET", f"/api/sensors/latest?runId={run['id']}")
    assert (latest["count"], latest["complete"]) == (1100, True)
    import csv
    import io
    import zipfile

    response = client.http.get("/api/reports/download", headers={"Accept": "application/zip"})
    with zipfile.ZipFile(io.BytesIO(response.body)) as archive:
        (row,) = csv.DictReader(io.StringIO(archive.read("summary.csv").decode()))
    assert (row["readings"], row["sensorsReporting"], row["complete"]) == ("1100", "100", "true")


# ---- over HTTP, against the local stack --------------------------------------------------


@pytest.mark.e2e
def test_stats_and_latest_over_http(local_stack):
    api = local_stack.base_url
    status, run, _ = http(
        "POST",
        f"{api}/api/runs/start",
        {"sensorIds": ["a", "b"], "duration": 20, "interval": 1},
        **{"X-User": "analyst"},
    )
    assert status == 201, run
    headers = {"X-User": "analyst", "X-Run-Id": run["id"]}
    try:
        batch = [{"sensorId": "ab"[i % 2], "reading": i * 0.5, "timestamp": T0 + i * 250} for i in range(40)]
        for _ in range(2):
            assert http("POST", f"{api}/api/sensors/data", batch, **headers)[0] == 201
        assert (
            http(
                "POST",
                f"{api}/api/sensors/data",
                {"sensorId": "b", "humidity": 33.0, "timestamp": T0 - 5},
                **headers,
            )[0]
            == 201
        )
    finally:
        assert http("POST", f"{api}/api/runs/{run['id']}/finish", {"status": "SUCCESS"})[0] == 200
    status, stats, _ = http("GET", f"{api}/api/runs/{run['id']}/stats")
    assert status == 200, stats
    assert stats["readings"] == 41 and stats["complete"] is True and stats["status"] == "SUCCESS"
    by_series = {(s["sensorId"], s["type"]): s for s in stats["series"]}
    assert by_series[("a", "temperature")]["count"] == 20
    assert by_series[("a", "temperature")]["largestGapMs"] == 500
    assert by_series[("b", "temperature")]["lastValue"] == 19.5
    assert by_series[("b", "humidity")]["lastTimestamp"] == format_ms(T0 - 5)
    assert stats["expected"] == 40 and stats["received"] == 40 and stats["completeness"] == 1.0
    status, latest, _ = http("GET", f"{api}/api/sensors/latest?runId={run['id']}")
    assert status == 200 and [(i["sensorId"], i["type"], i["reading"]) for i in latest["items"]] == [
        ("a", "temperature", 19.0),
        ("b", "humidity", 33.0),
        ("b", "temperature", 19.5),
    ]
    assert http("GET", f"{api}/api/runs/{run['id'][:-1]}x/stats")[0] == 404
