"""Readings as plain items: what each request writes as DynamoDB bills it, a reading stored once
however it is re-sent, and the exact order and pages of every query shape, over the layer that
makes moto answer as DynamoDB does (tests/dynamodb_faults.py)."""

from __future__ import annotations

import random
import time
from collections import Counter

import pytest

from benchmarks.dynamodb_units import item_size
from chalicelib import readings
from chalicelib.schemas import parse_iso_ms
from tests.helpers import T0, call, post_readings, start_run, stored_readings


@pytest.fixture
def billed(aws):
    """Write units of the readings-table items the app writes, from the requests it sends."""
    import app

    table, seen = app.parts().settings.readings_table, Counter[str]()

    def record(model, params, **_):
        items = [params["Item"]] if model.name == "PutItem" and params["TableName"] == table else []
        if model.name == "BatchWriteItem":
            items = [request["PutRequest"]["Item"] for request in params["RequestItems"].get(table, [])]
        seen["units"] += sum(-(-item_size(item) // 1024) for item in items)
        seen["items"] += len(items)

    app.parts().dynamodb.meta.events.register("before-parameter-build.dynamodb", record)
    return seen


@pytest.mark.parametrize(
    ("body", "count"),
    [
        ({"sensorId": "sensor-1", "reading": 21.5, "type": "temperature"}, 1),  # the frontend's
        ({"sensorId": "sensor-1", "temperature": 21.5, "humidity": 40, "pressure": 1013.25}, 3),
        (
            [{"sensorId": f"sensor-{i % 10 + 1}", "reading": i / 3, "timestamp": T0 + i} for i in range(100)],
            100,
        ),
    ],
)
def test_every_reading_is_one_write_unit_whatever_the_request(client, billed, body, count):
    run = start_run(client, sensors=10)
    billed.clear()
    assert post_readings(client, run["id"], body)[0] == 201
    assert billed == Counter({"units": count, "items": count})


def test_the_largest_reading_the_api_accepts_is_one_write_unit():
    longest = readings.Reading("s" * 64, "t" * 32, -1.2345678901234567e-99, T0, "0" * 36, "u" * 64, "n" * 40)
    assert item_size(longest.item(expires_at=4_102_444_800)) < 1024


def test_a_timestamped_reading_sent_alone_then_in_two_batches_is_stored_once(client):
    run = start_run(client)
    reading = {"sensorId": "sensor-1", "reading": 20.5, "timestamp": T0}
    others = [{"sensorId": "sensor-2", "reading": float(i), "timestamp": T0 + i} for i in range(1, 4)]
    assert post_readings(client, run["id"], reading)[0] == 201
    assert post_readings(client, run["id"], [others[0], reading, others[1]])[1] == {"ingested": 3}
    assert post_readings(client, run["id"], [*others, reading])[1] == {"ingested": 4}
    stored = stored_readings(client, run["id"])
    assert [(r["sensorId"], r["reading"]) for r in stored] == [("sensor-1", 20.5)] + [
        ("sensor-2", float(i)) for i in range(1, 4)
    ]


def test_a_stored_reading_is_plain_attributes_to_a_raw_get_item(client):
    import app

    run = start_run(client, user="alice")
    reading = {"sensorId": "sensor-1", "type": "humidity", "reading": 40.25, "timestamp": T0}
    before = int(time.time())
    assert post_readings(client, run["id"], reading, user="alice")[0] == 201
    table = app.parts().settings.readings_table
    dynamodb = app.parts().dynamodb
    query = {":run": {"S": run["id"]}}
    keys = dynamodb.query(
        TableName=table, KeyConditionExpression="pk = :run", ExpressionAttributeValues=query
    )
    [key] = [{"pk": item["pk"], "sk": item["sk"]} for item in keys["Items"]]
    item = dynamodb.get_item(TableName=table, Key=key)["Item"]
    expires = int(item.pop("expiresAt")["N"])
    assert before + 30 * 86_400 <= expires <= int(time.time()) + 30 * 86_400  # READING_TTL_DAYS
    iso = "2027-01-15T08:00:00.000Z"
    assert key["sk"]["S"].startswith(f"{iso}#sensor-1#humidity#")
    assert item == {
        **key,
        "runId": {"S": run["id"]},
        "sensorId": {"S": "sensor-1"},
        "type": {"S": "humidity"},
        "reading": {"N": "40.25"},
        "timestamp": {"S": iso},
        "at": {"N": str(T0)},
        "user": {"S": "alice"},
    }


# ---- exact order and pagination --------------------------------------------------------


def send_history(client, run_id: str, rng: random.Random) -> list[tuple[int, str, str, float, str | None]]:
    """Posts a random history (single readings, sometimes at an instant already used, and batches
    with equal timestamps in them); returns what was sent: (timestamp, sensor, type, value, run)."""
    sent: list[tuple[int, str, str, float, str | None]] = []
    value = 0.0
    for _ in range(7):
        start = T0 + rng.randrange(0, 60_000)
        size = 1 if rng.random() < 0.4 else rng.randrange(2, 20)
        body = []
        for _ in range(size):
            at = rng.choice([start, 5_000 + T0, start + rng.randrange(0, 30_000)])
            value += 1.0
            body.append(
                {
                    "sensorId": rng.choice(("s0", "s1", "s2", "a")),
                    "type": rng.choice(("temperature", "humidity")),
                    "timestamp": at,
                    "reading": value,
                }
            )
        status, answer = post_readings(client, run_id, body)
        assert status == 201, answer
        sent += [
            (int(r["timestamp"]), str(r["sensorId"]), str(r["type"]), float(r["reading"]), run_id)
            for r in body
        ]
    return sent


def walk(client, path: str, queries: Counter[str]) -> list[tuple[int, str, str, float, str | None]]:
    got, token, pages = [], None, 0
    while True:
        queries.clear()
        status, page = call(client, "GET", path + (f"&nextKey={token}" if token else ""))
        assert status == 200, page
        assert queries["Query"] <= readings.MAX_QUERY_CALLS, (path, queries)
        got += [
            (parse_iso_ms(i["timestamp"]), i["sensorId"], i["type"], i["reading"], i["runId"])
            for i in page["items"]
        ]
        token, pages = page["nextKey"], pages + 1
        assert pages < 2000, path
        if token is None:
            return got


@pytest.mark.slow
def test_every_query_shape_walks_in_exact_order_without_loss_or_duplicate(
    faulty_client, dynamodb_faults, monkeypatch
):
    import app

    # Small pages, so that they end inside the history as they do in a long one.
    monkeypatch.setattr(readings, "PAGE_READINGS", 8)
    monkeypatch.setattr(readings, "FILTERED_READ_LIMIT", 3)
    queries: Counter[str] = Counter()
    app.parts().dynamodb.meta.events.register(
        "before-call.dynamodb", lambda model, **_: queries.update([model.name])
    )
    rng = random.Random(1010)
    # Written through lost answers (applied, then sent again) and unprocessed batch items.
    dynamodb_faults.lose_answer("BatchWriteItem", times=3)
    dynamodb_faults.lose_answer("PutItem", times=3)
    dynamodb_faults.unprocess_batch_writes(times=5, keep=4)
    runs, sent = [], []
    for n in range(3):  # each starts later: a sensor alone lists the newest run first
        runs.append(start_run(faulty_client, user=f"u{n % 2 + 1}")["id"])
        sent += send_history(faulty_client, runs[-1], rng)
        time.sleep(0.01)
    for i in range(12):  # readings without a run, found by sensor after the runs
        reading = {"sensorId": "a", "reading": 1000.0 + i, "timestamp": T0 + 997 * i}
        assert post_readings(faulty_client, None, reading)[0] == 201
        sent.append((T0 + 997 * i, "a", "temperature", 1000.0 + i, None))
    assert dynamodb_faults.counts["lost_answers"] == 6 and len(sent) > 80

    def expected(run=None, sensor=None, kind=None, low=None, high=None, order="asc"):
        def keep(r):
            return (
                (sensor is None or r[1] == sensor)
                and (kind is None or r[2] == kind)
                and (low is None or r[0] >= low)
                and (high is None or r[0] <= high)
            )

        def of_run(run_id):
            chosen = sorted((r for r in set(sent) if r[4] == run_id and keep(r)), key=lambda r: r[:3])
            return chosen if order == "asc" else chosen[::-1]

        # A sensor alone: newest run first, then its readings without a run.
        return (
            of_run(run)
            if run is not None
            else [r for run_id in [*reversed(runs), None] for r in of_run(run_id)]
        )

    low, high = T0 + 7_000, T0 + 41_000
    shapes = [
        ({"runId": runs[0]}, {"run": runs[0]}),
        ({"runId": runs[1], "sensorId": "s1"}, {"run": runs[1], "sensor": "s1"}),
        ({"runId": runs[0], "type": "humidity"}, {"run": runs[0], "kind": "humidity"}),
        ({"sensorId": "a"}, {"sensor": "a"}),
        ({"sensorId": "s2", "type": "temperature"}, {"sensor": "s2", "kind": "temperature"}),
        ({"runId": runs[0], "from": low, "to": high}, {"run": runs[0], "low": low, "high": high}),
        ({"sensorId": "a", "from": low}, {"sensor": "a", "low": low}),
        ({"runId": runs[2], "to": high}, {"run": runs[2], "high": high}),
    ]
    for number, (params, reference) in enumerate(shapes):
        for order in ("asc", "desc"):
            want = expected(**reference, order=order)
            for limit in (1, 1000) if number == 0 else (5,):
                query = "&".join(f"{k}={v}" for k, v in {**params, "order": order, "limit": limit}.items())
                got = walk(faulty_client, f"/api/sensors/data?{query}", queries)
                # Exact order by (timestamp, sensor, type); readings equal in those come in a fixed
                # order of their own: the projection exactly, the readings as a multiset.
                assert [r[:3] for r in got] == [r[:3] for r in want], (query, len(got), len(want))
                assert Counter(got) == Counter(want), query


def test_pages_of_readings_stamped_on_arrival_join_without_loss_or_duplicate(client):
    """Their keys hold a nonce the item does not: a page goes on from the key it read."""
    run = start_run(client)
    for _ in range(5):  # batches: readings of one instant, told apart by their nonces only
        assert post_readings(client, run["id"], [{"sensorId": "s", "reading": 1.0}] * 5)[1] == {"ingested": 5}
    for order in ("asc", "desc"):
        seen, token = [], None
        for _ in range(20):
            path = f"/api/sensors/data?runId={run['id']}&limit=3&order={order}" + (
                f"&nextKey={token}" if token else ""
            )
            page = call(client, "GET", path)[1]
            seen += page["items"]
            token = page["nextKey"]
            if token is None:
                break
        assert len(seen) == 25
        assert [r["timestamp"] for r in seen] == sorted(
            (r["timestamp"] for r in seen), reverse=order == "desc"
        )
