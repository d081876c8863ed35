"""Every request does bounded work whatever the history, on DynamoDB's terms: Limit
is applied before a filter, and a full page always comes with a LastEvaluatedKey
(tests/dynamodb_faults.py makes moto answer so)."""

from __future__ import annotations

from collections import Counter

import pytest

from chalicelib import readings, runs
from tests.helpers import call, post_ok, start_run, walk


@pytest.fixture
def queries(dynamodb_faults):
    """DynamoDB calls made through the app's client, by operation."""
    import app

    seen: Counter[str] = Counter()
    app.parts().dynamodb.meta.events.register(
        "before-call.dynamodb", lambda model, **_: seen.update([model.name])
    )
    return seen


@pytest.mark.slow
def test_a_filter_that_matches_nothing_reads_a_bounded_amount_per_request(
    faulty_client, queries, monkeypatch
):
    # Small reads per call, so that 1000 readings outlast one request.
    monkeypatch.setattr(readings, "FILTERED_READ_LIMIT", 5)
    monkeypatch.setattr(readings, "PAGE_READINGS", 10)
    run = start_run(faulty_client, sensors=50)
    for start in (0, 500):
        post_ok(
            faulty_client,
            run["id"],
            [
                {"sensorId": f"sensor-{i % 50 + 1}", "reading": i, "timestamp": 1_800_000_000_000 + i}
                for i in range(start, start + 500)
            ],
        )
    queries.clear()
    status, page = call(faulty_client, "GET", f"/api/sensors/data?runId={run['id']}&type=humidity&limit=1")
    # Bounded: a fixed number of Query calls, not one per stored reading; the page says where to go on.
    assert status == 200 and page["items"] == [] and page["nextKey"] is not None
    assert queries["Query"] <= readings.MAX_QUERY_CALLS
    queries.clear()
    items, pages = walk(faulty_client, f"/api/sensors/data?runId={run['id']}&type=humidity&limit=1")
    assert items == []
    assert queries["Query"] <= pages * readings.MAX_QUERY_CALLS
    assert pages <= 1000 // (5 + 10 + 10) + 1


@pytest.mark.slow
def test_a_filter_finds_sparse_matches_across_pages_without_loss(faulty_client):
    run = start_run(faulty_client)
    readings = [
        {
            "sensorId": "s",
            "reading": i,
            "type": "humidity" if i % 97 == 0 else "temperature",
            "timestamp": i + 10**12,
        }
        for i in range(1000)
    ]
    post_ok(faulty_client, run["id"], readings[:500])
    post_ok(faulty_client, run["id"], readings[500:])
    items, _ = walk(faulty_client, f"/api/sensors/data?runId={run['id']}&type=humidity&limit=3&order=asc")
    assert [item["reading"] for item in items] == [float(i) for i in range(0, 1000, 97)]


@pytest.mark.parametrize("path", ["/api/sensors/data?runId={run}&limit={limit}", "/api/runs?limit={limit}"])
def test_a_full_last_page_has_no_next_key(faulty_client, path):
    run = start_run(faulty_client)
    post_ok(
        faulty_client, run["id"], [{"sensorId": "s", "reading": i, "timestamp": 10**12 + i} for i in range(3)]
    )
    for user in ("b", "c"):
        start_run(faulty_client, user=user)
    # 3 readings, 3 runs: one full page, then pages of 1.
    status, page = call(faulty_client, "GET", path.format(run=run["id"], limit=3))
    assert status == 200 and page["count"] == 3 and page["nextKey"] is None
    items, pages = walk(faulty_client, path.format(run=run["id"], limit=1))
    assert (len(items), pages) == (3, 3)


def test_reversed_time_range_is_a_400_not_a_dynamodb_error(faulty_client):
    run = start_run(faulty_client)
    status, body = call(faulty_client, "GET", f"/api/sensors/data?runId={run['id']}&from=2000&to=1000")
    assert status == 400 and body["error"] in ("BadRequest", "ValidationError"), body


def test_the_list_of_all_runs_is_capped_at_the_newest(faulty_client, monkeypatch):
    monkeypatch.setattr(runs, "MAX_LISTED_RUNS", 3)
    started = []
    for user in ("a", "b", "c", "d", "e"):
        run = start_run(faulty_client, user=user)
        call(faulty_client, "POST", f"/api/runs/{run['id']}/finish")
        started.append(run["id"])
    status, listed = call(faulty_client, "GET", "/api/runs/all")
    assert status == 200 and [r["id"] for r in listed] == started[:-4:-1]


GET_ROUTES = {
    # route: the most DynamoDB calls it may make (docs/storage.md, "Bounded work per request")
    "/api/runs/can-start": 1,
    "/api/runs/running": readings.MAX_QUERY_CALLS,
    "/api/runs?limit=100": readings.MAX_QUERY_CALLS,
    "/api/runs?status=SUCCESS&user=u0&limit=100": readings.MAX_QUERY_CALLS,
    "/api/runs/all": readings.MAX_QUERY_CALLS,
    "/api/runs/{run}": 1,
    "/api/sensors/data?runId={run}&limit=1000": readings.MAX_QUERY_CALLS,
    "/api/sensors/data?sensorId=s0&type=humidity&limit=1000": readings.MAX_QUERY_CALLS,
    # A page of runs, then a page of readings per file: 2 finished runs (MAX_REPORT_RUNS below) and `runId`.
    "/api/reports/download?runId={run}": 1 + 3 * readings.MAX_QUERY_CALLS,
    "/api/runs/{run}/readings.csv": 1 + readings.MAX_QUERY_CALLS,
}


@pytest.mark.slow
def test_read_routes_make_the_same_calls_whatever_the_history(faulty_client, queries, monkeypatch):
    from chalicelib import reports

    monkeypatch.setattr(reports, "MAX_REPORT_RUNS", 2)

    def history(runs):
        for i in range(runs):
            run = start_run(faulty_client, user=f"u{i % 3}")
            post_ok(faulty_client, run["id"], [{"sensorId": f"s{j % 2}", "reading": j} for j in range(20)])
            call(faulty_client, "POST", f"/api/runs/{run['id']}/finish")
        return run["id"]

    def costs(run_id):
        result = {}
        for route in GET_ROUTES:
            queries.clear()
            response = faulty_client.http.get(route.format(run=run_id), headers={"Accept": "*/*"})
            assert response.status_code == 200, route
            result[route] = sum(queries.values())
        return result

    small = costs(history(4))
    large = costs(history(12))
    assert small == large
    for route, bound in GET_ROUTES.items():
        if bound is not None:
            assert large[route] <= bound, (route, large[route])
