"""Readings storage at the floor: write units as DynamoDB bills them, and exact order and
pagination of every query shape over chunked readings (issue 10)."""

from __future__ import annotations

import random
import time
from collections import Counter
from typing import Any

import pytest

from chalicelib import paging
from chalicelib.readings import CHUNK_SPAN_MS, item_size
from chalicelib.tables import READINGS
from tests.helpers import TEST_SENSORS, call, start_run

BASE_MS = 1_800_000_000_000


@pytest.fixture
def billed(aws):
    """Write units of every readings-table item the app writes, counted from the
    PutItem/BatchWriteItem requests it sends: ceil(size / 1 KB) per item, once for the
    table and once per index of the table (every index here projects every item)."""
    from chalicelib.aws import dynamodb_client
    from chalicelib.settings import get_settings

    table = get_settings().readings_table
    indexes = len(READINGS.indexes)
    seen: Counter[str] = Counter()

    def units(item: dict[str, Any]) -> int:
        return -(-item_size(item) // 1024) * (1 + indexes)

    def record(model, params, **_):
        if model.name == "PutItem" and params["TableName"] == table:
            seen["units"] += units(params["Item"])
            seen["items"] += 1
        elif model.name == "BatchWriteItem":
            for request in params["RequestItems"].get(table, []):
                seen["units"] += units(request["PutRequest"]["Item"])
                seen["items"] += 1
        elif model.name == "TransactWriteItems":  # billed twice (prepare and commit)
            for entry in params["TransactItems"]:
                put = entry.get("Put")
                if put and put["TableName"] == table:
                    seen["units"] += 2 * units(put["Item"])
                    seen["items"] += 1

    dynamodb_client().meta.events.register("before-parameter-build.dynamodb", record)
    return seen


def test_item_size_follows_dynamodbs_rules():
    assert item_size({"ab": {"S": "héllo"}}) == 2 + 6
    assert item_size({"b": {"B": b"\x00" * 10}}) == 1 + 10
    # Numbers: 1 byte per two significant digits, plus one.
    assert item_size({"n": {"N": "1800000000000"}}) == 1 + 1 + 1
    assert item_size({"n": {"N": "1795262526898"}}) == 1 + 7 + 1
    assert item_size({"n": {"N": "-0.00125"}}) == 1 + 2 + 1


def per_reading(client, billed, run_id, body) -> float:
    billed.clear()
    status, answer = call(
        client, "POST", "/api/sensors/data", body, **{"X-User": "alice", "X-Run-Id": run_id}
    )
    assert status == 201, answer
    count = answer.get("ingested", 1)
    return float(billed["units"] / count)


def batch_of(readings: int, sensors: int, interval_ms: int = 1000) -> list[dict[str, Any]]:
    """`readings` from `sensors` sensors, each reading with its own timestamp (rounds of
    one reading per sensor, `interval_ms` apart, sensors a few ms apart within a round)."""
    return [
        {
            "sensorId": f"sensor-{i % sensors + 1}",
            "reading": round(random.uniform(15, 35), 1),
            "type": "temperature",
            "timestamp": BASE_MS + (i // sensors) * interval_ms + i % sensors,
        }
        for i in range(readings)
    ]


def test_write_units_per_reading(client, billed):
    random.seed(10)
    run = start_run(client, sensors=10)["id"]
    single = per_reading(
        client, billed, run, {"sensorId": "sensor-1", "reading": 27.4, "type": "temperature"}
    )
    assert single <= 1.0
    measured = per_reading(
        client, billed, run, {"sensorId": "sensor-2", "temperature": 21.5, "humidity": 40, "pressure": 1013.2}
    )
    assert measured <= 1.0
    hundred = per_reading(client, billed, run, batch_of(100, 10))
    assert hundred <= 0.25, hundred
    assert per_reading(client, billed, run, batch_of(25, 10)) <= 0.5
    assert per_reading(client, billed, run, batch_of(500, 10)) <= 0.1
    # The same batch without timestamps of its own (stamped on arrival): one chunk per sensor.
    untimed = [{"sensorId": f"sensor-{i % 10 + 1}", "reading": float(i)} for i in range(100)]
    assert per_reading(client, billed, run, untimed) <= 0.1
    print(f"write units per reading: single {single}, measurement {measured}, batch of 100 {hundred}")


def test_a_chunk_never_exceeds_one_write_unit_or_its_span(client, billed):
    from chalicelib import deps
    from chalicelib.readings import MAX_CHUNK_BYTES, Reading

    repository = deps.reading_repository()
    # 2000 readings of one sensor with long values, 37 ms apart: split by size and by span.
    readings = [
        Reading("s", "temperature", 1 / (i + 3), BASE_MS + 37 * i, None, "someone-with-a-long-name")
        for i in range(2000)
    ]
    chunks = repository.prepare(readings)
    assert sum(chunk.count for chunk in chunks) == 2000
    for chunk in chunks:
        assert item_size(chunk.item) <= MAX_CHUNK_BYTES
        span = int(chunk.item["lastAt"]["N"]) - int(chunk.item["firstAt"]["N"])
        assert span <= chunk.span_ms <= CHUNK_SPAN_MS

    def keys(chunks):
        return [(chunk.item["pk"], chunk.item["sk"], chunk.item["d"], chunk.count) for chunk in chunks]

    assert keys(repository.prepare(list(reversed(readings)))) == keys(chunks)  # deterministic


# ---- exact order and pagination --------------------------------------------------------


def _sent(
    client, run_id: str, rng: random.Random, batch_span_ms: int = 3 * CHUNK_SPAN_MS, singles: float = 0.4
) -> list[tuple[int, str, str, float, str | None]]:
    """Posts a random history; returns what was sent: (timestamp, sensor, type, value, run)."""
    sensors = ("s0", "s1", "s2", "a")
    kinds = ("temperature", "humidity")
    sent: list[tuple[int, str, str, float, str | None]] = []
    value = 0.0
    for _ in range(10):
        shape = rng.random()
        body: list[dict[str, Any]] = []
        if shape < singles:  # a single reading, sometimes at an instant already used
            at = BASE_MS + rng.choice([rng.randrange(0, 60_000), 5_000, 12_000])
            body = [{"sensorId": rng.choice(sensors), "type": rng.choice(kinds), "timestamp": at}]
        else:  # a batch spanning up to `batch_span_ms`, with identical timestamps in it
            start = BASE_MS + rng.randrange(0, 60_000)
            for _ in range(rng.randrange(2, 30)):
                at = start + rng.choice([0, rng.randrange(0, batch_span_ms)])
                body.append({"sensorId": rng.choice(sensors), "type": rng.choice(kinds), "timestamp": at})
        for reading in body:
            value += 1.0
            reading["reading"] = value
        status, answer = call(
            client, "POST", "/api/sensors/data", body, **{"X-User": "u", "X-Run-Id": run_id}
        )
        assert status == 201, answer
        sent += [(r["timestamp"], r["sensorId"], r["type"], r["reading"], run_id) for r in body]
    return sent


def _walk(client, path: str, queries: Counter[str]) -> list[tuple[int, str, str, float, str | None]]:
    from chalicelib.clock import parse_iso_ms

    got, token, pages = [], None, 0
    while True:
        queries.clear()
        status, page = call(client, "GET", path + (f"&nextKey={token}" if token else ""))
        assert status == 200, page
        assert queries["Query"] <= paging.MAX_QUERY_CALLS_STARVED, (path, queries)
        got += [
            (parse_iso_ms(i["timestamp"]), i["sensorId"], i["type"], i["reading"], i["runId"])
            for i in page["items"]
        ]
        token = page["nextKey"]
        pages += 1
        assert pages < 2000, path
        if token is None:
            return got


def test_every_query_shape_walks_in_exact_order_without_loss_or_duplicate(faulty_client, monkeypatch):
    from chalicelib import readings
    from chalicelib.aws import dynamodb_client

    # Few chunks per call, so that pages end inside the history and chunks are read
    # again at page boundaries, as they are in a long history with the real sizes.
    monkeypatch.setattr(readings, "MIN_CHUNKS_PER_CALL", 2)
    monkeypatch.setattr(readings, "MAX_CHUNKS_PER_CALL", 8)
    monkeypatch.setattr(paging, "FILTERED_READ_LIMIT", 3)

    queries: Counter[str] = Counter()
    dynamodb_client().meta.events.register(
        "before-call.dynamodb", lambda model, **_: queries.update([model.name])
    )
    rng = random.Random(1010)
    # Runs whose widest chunks span up to 10 s, at most 1 s, and nothing (single readings
    # only): each is read with its own span (Run.reading_span_ms). Each starts later than
    # the one before: a sensor alone lists the newest run's readings first.
    histories: list[dict[str, Any]] = [{}, {}, {"batch_span_ms": 900}, {"singles": 1.0}]
    runs = []
    for n in range(len(histories)):
        runs.append(start_run(faulty_client, user=f"u{n % 2 + 1}")["id"])
        time.sleep(0.01)
    sent = [
        r
        for run, history in zip(runs, histories, strict=True)
        for r in _sent(faulty_client, run, rng, **history)
    ]
    from chalicelib import deps

    spans = [deps.run_repository().get(run).reading_span_ms for run in runs]  # type: ignore[union-attr]
    assert spans[2] in (0, 1_000) and spans[3] == 0, spans
    # Readings without a run, found by sensor after the runs.
    for i in range(12):
        at, value = BASE_MS + 997 * i, 1000.0 + i
        reading = {"sensorId": "a", "reading": value, "timestamp": at}
        assert call(faulty_client, "POST", "/api/sensors/data", reading)[0] == 201
        sent.append((at, "a", "temperature", value, None))
    assert len(sent) > 150 and TEST_SENSORS

    def expected(run=None, sensor=None, kind=None, low=None, high=None, order="asc"):
        def keep(r):
            return (
                (sensor is None or r[1] == sensor)
                and (kind is None or r[2] == kind)
                and (low is None or r[0] >= low)
                and (high is None or r[0] <= high)
            )

        def sorted_run(run_id):
            chosen = sorted((r for r in sent if r[4] == run_id and keep(r)), key=lambda r: r[:3])
            return chosen if order == "asc" else chosen[::-1]

        if run is not None:
            return sorted_run(run)
        # A sensor alone: newest run first, then readings without a run.
        return [r for run_id in [*reversed(runs), None] for r in sorted_run(run_id)]

    low, high = BASE_MS + 7_000, BASE_MS + 41_000
    shapes = [
        ({"runId": runs[0]}, {"run": runs[0]}),
        ({"runId": runs[1], "sensorId": "s1"}, {"run": runs[1], "sensor": "s1"}),
        ({"runId": runs[0], "type": "humidity"}, {"run": runs[0], "kind": "humidity"}),
        ({"sensorId": "a"}, {"sensor": "a"}),
        ({"sensorId": "s2", "type": "temperature"}, {"sensor": "s2", "kind": "temperature"}),
        ({"runId": runs[0], "from": low, "to": high}, {"run": runs[0], "low": low, "high": high}),
        ({"sensorId": "a", "from": low}, {"sensor": "a", "low": low}),
        ({"runId": runs[1], "to": high}, {"run": runs[1], "high": high}),
        ({"runId": runs[2]}, {"run": runs[2]}),
        ({"runId": runs[3], "from": low}, {"run": runs[3], "low": low}),
    ]
    for number, (params, reference) in enumerate(shapes):
        # Every page size on one shape; fewer on the others, which walk the same machinery.
        limits = (1, 2, 7, 1000) if number == 0 else (3, 1000)
        for order in ("asc", "desc"):
            want = expected(**reference, order=order)
            for limit in limits:
                query = "&".join(f"{k}={v}" for k, v in {**params, "order": order, "limit": limit}.items())
                got = _walk(faulty_client, f"/api/sensors/data?{query}", queries)
                # Exact order by (timestamp, sensor, type); readings equal in those may come in any
                # fixed order, so compare that projection exactly and the readings as a multiset.
                assert [r[:3] for r in got] == [r[:3] for r in want], (query, len(got), len(want))
                assert Counter(got) == Counter(want), query


def test_newest_first_pages_of_single_readings_need_no_look_past_the_page(client, calls):
    """The frontend's heaviest load (100 sensors every 200 ms, single readings) puts
    5,000 chunks in any 10 s of a run: a newest-first page must still show readings
    at once, which it can because the run records that its chunks span nothing."""
    from chalicelib import deps
    from chalicelib.readings import Reading

    run = start_run(client, sensors=50)
    repository = deps.reading_repository()
    now = run_started_ms(run)
    readings = [
        Reading(f"sensor-{i % 50 + 1}", "temperature", float(i), now + 2 * i, run["id"], "u")
        for i in range(5000)
    ]
    chunks = [chunk for reading in readings for chunk in repository.prepare([reading])]
    assert repository.write(chunks) == 5000 and {chunk.span_ms for chunk in chunks} == {0}
    calls.clear()
    status, page = call(client, "GET", f"/api/sensors/data?runId={run['id']}&limit=100")
    assert status == 200 and page["nextKey"]
    assert [item["reading"] for item in page["items"]] == [float(i) for i in range(4999, 4899, -1)]
    assert calls["Query"] == 1, calls


def post(client, run: dict[str, Any], body: Any) -> int:
    return int(call(client, "POST", "/api/sensors/data", body, **{"X-User": "u", "X-Run-Id": run["id"]})[0])


def run_started_ms(run: dict[str, Any]) -> int:
    from chalicelib.clock import parse_iso_ms

    return parse_iso_ms(run["startedAt"])


def test_a_run_records_the_widest_span_of_its_chunks_before_writing_them(client, calls):
    from chalicelib import deps

    run = start_run(client, sensors=10)
    stored = deps.run_repository().get
    assert stored(run["id"]).reading_span_ms == 0  # type: ignore[union-attr]
    at = run_started_ms(run)
    sent: list[dict[str, Any]] = [
        {"sensorId": "sensor-1", "reading": 1.0, "timestamp": at + 400 * i} for i in range(3)
    ]
    calls.clear()
    assert post(client, run, sent) == 201
    assert stored(run["id"]).reading_span_ms == 1_000 and calls["UpdateItem"] == 1  # type: ignore[union-attr]
    calls.clear()  # as wide again: the run's record (cached) already covers it
    resent = [{**reading, "timestamp": reading["timestamp"] + 5} for reading in sent]
    assert (
        call(client, "POST", "/api/sensors/data", resent, **{"X-User": "u", "X-Run-Id": run["id"]})[0] == 201
    )
    assert calls["UpdateItem"] == 0, calls
    wider = [{"sensorId": "sensor-2", "reading": 1.0, "timestamp": at + 4_000 * i} for i in range(3)]
    assert (
        call(client, "POST", "/api/sensors/data", wider, **{"X-User": "u", "X-Run-Id": run["id"]})[0] == 201
    )
    assert stored(run["id"]).reading_span_ms == CHUNK_SPAN_MS  # type: ignore[union-attr]
