"""GET /api/sensors/series: buckets against a reference computed here, bounds, errors, the read bound."""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any
from urllib.parse import quote

import pytest

from chalicelib import analytics, readings, schemas
from chalicelib.schemas import BadRequest
from tests.helpers import call, http, post_ok, start_run

T0 = 1_800_000_000_000  # 2027-01-15T08:00:00.000Z
AGGS = ("avg", "min", "max", "sum", "count")
FORMS = "500ms, 10s, 5m, 1h"


def iso(ms: int) -> str:
    return schemas.format_ms(ms)


def get_series(client: Any, run_id: str, **query: Any) -> tuple[int, Any]:
    text = "&".join(f"{k}={quote(str(v))}" for k, v in {"runId": run_id, **query}.items())
    return call(client, "GET", f"/api/sensors/series?{text}")


# ---- the reference: plain Python over the readings the test posted ----------------------


REFERENCE: dict[str, Callable[[list[float]], float]] = {
    "avg": lambda v: sum(v) / len(v),
    "min": min,
    "max": max,
    "sum": sum,
    "count": len,
}


def reference(
    posted: list[dict[str, Any]], sensor: str, kind: str, start: int, stop: int, step: int, agg: str
) -> list[tuple[str, float | None]]:
    """[(bucket start, value)] for [start, stop): the bucket at b holds b <= t < min(b + step, stop)."""
    out = []
    b = start
    while b < stop:
        values = [
            r["reading"]
            for r in posted
            if r["sensorId"] == sensor
            and r.get("type", "temperature") == kind
            and b <= r["timestamp"] < min(b + step, stop)
        ]
        out.append((iso(b), REFERENCE[agg](values) if values else None))
        b += step
    return out


def values_of(body: dict[str, Any]) -> list[tuple[str, float | None]]:
    return [(bucket["t"], bucket["value"]) for bucket in body["buckets"]]


def same(got: list[tuple[str, float | None]], want: list[tuple[str, float | None]]) -> bool:
    if [t for t, _ in got] != [t for t, _ in want]:
        return False
    return all(
        (g is None and w is None) or (g is not None and w is not None and g == pytest.approx(w, rel=1e-12))
        for (_, g), (_, w) in zip(got, want, strict=True)
    )


def mixed_readings(seed: int = 7) -> list[dict[str, Any]]:
    """Readings of sensor s (two types) and of another sensor, before, inside and after
    [T0, T0 + 5000), with some on the bucket edges of a 700 ms grid and at the range's ends."""
    rng = random.Random(seed)
    posted: list[dict[str, Any]] = []
    for _ in range(300):
        posted.append(
            {
                "sensorId": rng.choice(["s", "s", "s1"]),
                "type": rng.choice(["temperature", "temperature", "humidity"]),
                "reading": round(rng.uniform(-40, 60), 3),
                "timestamp": T0 + rng.randrange(-2000, 7000),
            }
        )
    for i, offset in enumerate((0, 0, 699, 700, 701, 1399, 1400, 4899, 4900, 4999, 5000, -1)):
        posted.append({"sensorId": "s", "reading": float(i), "timestamp": T0 + offset})
    # Equal values in one bucket: counted twice.
    posted += [{"sensorId": "s", "reading": 5.5, "timestamp": T0 + at} for at in (10, 20)]
    # Equal readings with a timestamp of their own are one reading (stored once).
    posted = list({tuple(sorted(r.items())): r for r in posted}.values())
    # A gap: no reading of s/temperature in [T0 + 2100, T0 + 2800).
    return [
        r
        for r in posted
        if not (r["sensorId"] == "s" and r.get("type", "temperature") == "temperature")
        or not 2100 <= r["timestamp"] - T0 < 2800
    ]


@pytest.fixture
def mixed(client):
    run = start_run(client)
    posted = mixed_readings()
    post_ok(client, run["id"], posted)
    return run, posted


# ---- buckets ---------------------------------------------------------------------------


@pytest.mark.parametrize("agg", AGGS)
def test_each_aggregate_matches_the_reference(client, mixed, agg):
    run, posted = mixed
    status, body = get_series(
        client,
        run["id"],
        sensorId="s",
        type="temperature",
        interval="700ms",
        agg=agg,
        **{"from": T0},
        to=T0 + 5000,
    )
    assert status == 200, body
    want = reference(posted, "s", "temperature", T0, T0 + 5000, 700, agg)
    assert len(want) == 8  # the last bucket, [4900, 5000), is cut at `to`
    assert same(values_of(body), want), (values_of(body), want)
    assert want[3][1] is None  # the gap is listed, as null
    assert {k: v for k, v in body.items() if k != "buckets"} == {
        "runId": run["id"],
        "sensorId": "s",
        "type": "temperature",
        "agg": agg,
        "interval": "700ms",
        "intervalMs": 700,
        "from": iso(T0),
        "to": iso(T0 + 5000),
        "complete": True,
        "nextFrom": None,
    }


def test_other_types_and_sensors_stay_out(client, mixed):
    run, posted = mixed
    for sensor, kind in (("s", "humidity"), ("s1", "temperature"), ("s1", "humidity")):
        status, body = get_series(
            client,
            run["id"],
            sensorId=sensor,
            type=kind,
            interval="1s",
            agg="sum",
            **{"from": T0 - 2000},
            to=T0 + 7000,
        )
        assert status == 200
        assert same(values_of(body), reference(posted, sensor, kind, T0 - 2000, T0 + 7000, 1000, "sum"))


def test_type_defaults_to_temperature(client, mixed):
    run, posted = mixed
    status, body = get_series(
        client, run["id"], sensorId="s", interval="1s", agg="count", **{"from": T0}, to=T0 + 5000
    )
    assert status == 200 and body["type"] == "temperature"
    assert same(values_of(body), reference(posted, "s", "temperature", T0, T0 + 5000, 1000, "count"))


def test_from_is_inclusive_and_to_exclusive(client):
    run = start_run(client)
    post_ok(
        client,
        run["id"],
        [
            {"sensorId": "s", "reading": v, "timestamp": T0 + at}
            for at, v in ((-1, 1.0), (0, 2.0), (999, 3.0), (1000, 4.0), (2000, 5.0))
        ],
    )
    status, body = get_series(
        client, run["id"], sensorId="s", interval="1s", agg="sum", **{"from": iso(T0)}, to=iso(T0 + 2000)
    )
    assert status == 200 and values_of(body) == [(iso(T0), 5.0), (iso(T0 + 1000), 4.0)]
    # One millisecond more takes the reading at T0 + 2000, in a bucket of its own.
    status, body = get_series(
        client, run["id"], sensorId="s", interval="1s", agg="sum", **{"from": T0}, to=T0 + 2001
    )
    assert status == 200 and values_of(body)[-1] == (iso(T0 + 2000), 5.0) and len(body["buckets"]) == 3
    # from == to: an empty range, no buckets.
    status, body = get_series(client, run["id"], sensorId="s", **{"from": T0}, to=T0)
    assert status == 200 and body["buckets"] == [] and body["complete"] is True


def test_the_default_range_is_the_runs_span(client):
    run = start_run(client)
    outside = [{"sensorId": "s", "reading": 99.0, "timestamp": t} for t in (T0, schemas.EARLIEST_MS + 1)]
    post_ok(client, run["id"], [{"sensorId": "s", "reading": float(v)} for v in range(4)] + outside)
    status, body = get_series(client, run["id"], sensorId="s", interval="1h", agg="count")
    assert status == 200 and body["from"] == run["startedAt"]
    assert schemas.parse_iso_ms(body["to"]) <= schemas.now_ms() + 1  # RUNNING: up to now
    assert values_of(body) == [(run["startedAt"], 4.0)]
    finished = call(client, "POST", f"/api/runs/{run['id']}/finish")[1]
    status, body = get_series(client, run["id"], sensorId="s", interval="1h", agg="max")
    ended = schemas.parse_iso_ms(finished["finishedAt"])
    assert status == 200 and body["to"] == iso(ended + 1)  # finishedAt included
    assert values_of(body) == [(run["startedAt"], 3.0)]
    # Only one end given: the other is the run's; a `from` past the run's end is an empty series.
    status, body = get_series(client, run["id"], sensorId="s", interval="1h", **{"from": ended + 10})
    assert status == 200 and body["buckets"] == [] and body["to"] == iso(ended + 10)
    status, body = get_series(client, run["id"], sensorId="s", interval="1h", agg="count", to=ended + 5000)
    assert status == 200 and body["from"] == run["startedAt"] and values_of(body) == [(run["startedAt"], 4.0)]
    before = schemas.parse_iso_ms(run["startedAt"]) - 1000
    status, body = get_series(client, run["id"], sensorId="s", interval="1h", to=before)
    assert status == 200 and body["buckets"] == [] and body["from"] == body["to"] == iso(before)


# ---- limits and errors ------------------------------------------------------------------


def test_more_than_1000_buckets_is_a_400(client):
    run = start_run(client)
    status, body = get_series(
        client, run["id"], sensorId="s", interval="1s", **{"from": T0}, to=T0 + 1_000_001
    )
    assert status == 400 and "at most 1000 buckets" in body["message"] and "1001" in body["message"], body
    status, body = get_series(
        client, run["id"], sensorId="s", interval="1s", **{"from": T0}, to=T0 + 1_000_000
    )
    assert status == 200 and len(body["buckets"]) == 1000


@pytest.mark.parametrize(
    "interval",
    [
        "0s",
        "10",
        "s",
        "1.5s",
        "10 s",
        " 10s",
        "10sec",
        "-1s",
        "+1s",
        "10S",
        "1d",
        "01s",
        "1234567890ms",
        "\uff11s",  # a full-width digit
    ],
)
def test_a_bad_interval_is_a_400_that_says_the_accepted_forms(client, interval):
    run = start_run(client)
    status, body = get_series(client, run["id"], sensorId="s", interval=interval)
    assert status == 400 and FORMS in body["message"], body


@pytest.mark.parametrize(
    ("text", "ms"), [("500ms", 500), ("10s", 10_000), ("5m", 300_000), ("1h", 3_600_000), (None, 10_000)]
)
def test_interval_forms(text, ms):
    assert analytics.parse_interval(text) == ms


@pytest.mark.parametrize("agg", ["median", "AVG", "mean", "avg,min"])
def test_a_bad_aggregate_is_a_400(client, agg):
    run = start_run(client)
    status, body = get_series(client, run["id"], sensorId="s", agg=agg)
    assert status == 400 and "avg, min, max, sum, count" in body["message"], body


def test_unknown_run_is_a_404_and_malformed_input_a_400(client):
    unknown = "00000000-0000-4000-8000-000000000000"
    status, body = get_series(client, unknown, sensorId="s")
    assert (status, body["error"]) == (404, "NotFound")
    run = start_run(client)
    for query in (
        {"runId": "not-a-uuid", "sensorId": "s"},
        {"sensorId": "s"},
        {"runId": run["id"]},
        {"runId": run["id"], "sensorId": "bad sensor"},
        {"runId": run["id"], "sensorId": "s", "type": "no/slash"},
        {"runId": run["id"], "sensorId": "s", "from": "2026-13-45"},
        {"runId": run["id"], "sensorId": "s", "from": T0 + 1, "to": T0},
    ):
        text = "&".join(f"{k}={quote(str(v))}" for k, v in query.items())
        status, body = call(client, "GET", f"/api/sensors/series?{text}")
        assert status == 400 and body["message"], (query, body)


# ---- the read bound ---------------------------------------------------------------------


@pytest.fixture
def small_bound(monkeypatch):
    """2 pages of 5 readings per request; counts the pages each request reads."""
    import app

    monkeypatch.setattr(analytics, "SERIES_CALLS", 2)
    monkeypatch.setattr(readings, "PAGE_READINGS", 5)
    pages: list[int] = []

    def counted(**_):
        pages[-1] += 1

    app.parts().dynamodb.meta.events.register("before-call.dynamodb.Query", counted)
    yield pages
    app.parts().dynamodb.meta.events.unregister("before-call.dynamodb.Query", counted)


def test_a_range_over_the_read_bound_is_answered_in_parts(client, small_bound):
    run = start_run(client)
    posted = [{"sensorId": "s", "reading": float(i), "timestamp": T0 + 100 * i} for i in range(30)]
    post_ok(client, run["id"], posted)
    want = reference(posted, "s", "temperature", T0, T0 + 3000, 300, "sum")
    got: list[tuple[str, float | None]] = []
    start = T0
    for _ in range(10):
        small_bound.append(0)
        status, body = get_series(
            client, run["id"], sensorId="s", interval="300ms", agg="sum", **{"from": start}, to=T0 + 3000
        )
        assert status == 200 and small_bound[-1] <= 2
        got += values_of(body)
        if body["complete"]:
            assert body["nextFrom"] is None
            break
        # 10 readings read (T0 .. T0 + 900): the buckets before the one holding the last are whole.
        assert body["nextFrom"] == iso(schemas.parse_iso_ms(body["buckets"][-1]["t"]) + 300)
        assert len(body["buckets"]) == 3
        start = schemas.parse_iso_ms(body["nextFrom"])
    assert body["complete"] and got == want
    assert len(small_bound) == 4  # 10 buckets: 3 + 3 + 3 + 1


def test_a_first_bucket_over_the_read_bound_is_a_400(client, small_bound):
    run = start_run(client)
    post_ok(
        client, run["id"], [{"sensorId": "s", "reading": 1.0, "timestamp": T0 + 10 * i} for i in range(30)]
    )
    small_bound.append(0)
    status, body = get_series(client, run["id"], sensorId="s", interval="1s", **{"from": T0}, to=T0 + 1000)
    assert (
        status == 400 and "use a shorter interval" in body["message"] and "10 readings" in body["message"]
    ), body
    assert small_bound[-1] == 2


def test_no_reading_within_the_read_bound_is_a_400():
    """Pages that show nothing yet but go on (a sparse sensor among many): never an empty 200."""
    from chalicelib.runs import Run

    class Endless:
        complete = False

        def stream(self, *args, **kwargs):
            return self

        def __iter__(self):
            return iter(())

    run = Run("run", "u", "SUCCESS", T0, 10, 1, ("s",), T0 + 10_000)
    with pytest.raises(BadRequest, match="narrow from/to") as raised:
        analytics.read_series(Endless(), run, "s", "temperature", T0, T0 + 1000, "1s", "avg")  # type: ignore[arg-type]
    assert raised.value.status == 400


def test_sums_beyond_the_float_range_are_null():
    assert analytics.aggregate([1e308, 1e308], "sum") is None
    assert analytics.aggregate([1e308, 1e308], "avg") == pytest.approx(1e308)
    assert analytics.aggregate([], "count") is None
    assert analytics.aggregate([0.1] * 10, "sum") == 1.0  # exact sum, whatever the order


# ---- over HTTP -----------------------------------------------------------------------------


@pytest.mark.e2e
def test_series_over_http(local_stack):
    api = local_stack.base_url
    status, run, _ = http(
        "POST", f"{api}/api/runs/start", {"sensorIds": ["s", "s1"], "duration": 60, "interval": 1}
    )
    assert status == 201, run
    posted = mixed_readings(seed=11)
    for start in range(0, len(posted), 500):
        assert (
            http("POST", f"{api}/api/sensors/data", posted[start : start + 500], **{"X-Run-Id": run["id"]})[0]
            == 201
        )
    status, body, _ = http(
        "GET",
        f"{api}/api/sensors/series?runId={run['id']}&sensorId=s&type=temperature&interval=700ms&agg=avg"
        f"&from={quote(iso(T0))}&to={T0 + 5000}",
    )
    assert status == 200 and body["complete"] is True, body
    assert same(values_of(body), reference(posted, "s", "temperature", T0, T0 + 5000, 700, "avg"))
    status, body, _ = http("GET", f"{api}/api/sensors/series?runId={run['id']}&sensorId=s&interval=10x")
    assert status == 400 and FORMS in body["message"]
    http("POST", f"{api}/api/runs/{run['id']}/finish")
