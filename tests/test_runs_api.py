"""Run lifecycle through the Chalice app on moto."""

from __future__ import annotations

import re
import time

import pytest

from tests.helpers import TEST_SENSORS, call, start_run

ISO_MS_Z = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


@pytest.fixture(autouse=True)
def one_user_may_take_every_slot(monkeypatch):
    """These tests start several runs as one user; the per-user limit has tests of its own
    (tests/test_fair_slots.py)."""
    monkeypatch.setenv("MAX_RUNS_PER_USER", "5")


def test_can_start_on_an_empty_table(client):
    assert call(client, "GET", "/api/runs/can-start") == (
        200,
        {"canStart": True, "currentRunning": 0, "maxAllowed": 5, "available": 5},
    )


def test_start_returns_the_run_object(client):
    run = start_run(client, user="alice", sensors=3, duration=30, interval=2)
    assert run["id"] == run["runId"]
    assert run["username"] == "alice"
    assert run["status"] == "RUNNING"
    assert ISO_MS_Z.match(run["startedAt"])
    assert run["finishedAt"] is None and run["errorMessage"] is None
    assert (run["duration"], run["interval"]) == (30, 2)
    assert run["params"] == {
        "runId": run["id"],
        "sensorIds": ["sensor-1", "sensor-2", "sensor-3", *TEST_SENSORS],
        "duration": 30,
        "interval": 2,
    }
    assert run["runId"] in run["grafanaUrl"]
    assert call(client, "GET", f"/api/runs/{run['id']}") == (200, run)


def test_start_accepts_fields_wrapped_in_params(client):
    status, run = call(
        client, "POST", "/api/runs/start", {"params": {"sensorIds": ["a"], "duration": 5, "interval": 1}}
    )
    assert status == 201
    assert run["username"] == "anonymous"
    assert run["params"]["sensorIds"] == ["a"]


def test_limit_gives_409_with_counts_and_finishing_frees_a_slot(client):
    runs = [start_run(client, user=f"u{i}") for i in range(5)]
    status, body = call(client, "POST", "/api/runs/start", {"sensorIds": ["s"], "duration": 5, "interval": 1})
    assert status == 409
    assert body["error"] == "RunLimitReached"
    assert (body["currentRunning"], body["maxAllowed"]) == (5, 5)
    assert call(client, "GET", "/api/runs/can-start")[1] == {
        "canStart": False,
        "currentRunning": 5,
        "maxAllowed": 5,
        "available": 0,
    }
    assert call(client, "POST", f"/api/runs/{runs[0]['id']}/finish")[0] == 200
    assert call(client, "GET", "/api/runs/can-start")[1]["available"] == 1
    start_run(client)


@pytest.mark.parametrize(
    ("body", "status", "message"),
    [
        (None, "SUCCESS", None),
        ({"status": "COMPLETED"}, "SUCCESS", None),
        ({"status": "SUCCESS", "message": "Simulation completed successfully"}, "SUCCESS", None),
        ({"status": "FAILED", "message": "Abandonnée par l'utilisateur, désolé"}, "FAILED", None),
        ({"status": "FAILED", "errorMessage": "sensor broke"}, "FAILED", "sensor broke"),
    ],
)
def test_finish(client, body, status, message):
    run = start_run(client)
    code, finished = call(client, "POST", f"/api/runs/{run['id']}/finish", body)
    assert code == 200
    assert finished["status"] == status
    assert ISO_MS_Z.match(finished["finishedAt"])
    expected_message = message or (body or {}).get("message") if status == "FAILED" else None
    assert finished["errorMessage"] == expected_message


def test_finish_twice_is_409_and_gives_the_slot_back_once(client):
    run = start_run(client)
    assert call(client, "POST", f"/api/runs/{run['id']}/finish")[0] == 200
    code, body = call(client, "POST", f"/api/runs/{run['id']}/finish", {"status": "FAILED"})
    assert code == 409 and body["status"] == "SUCCESS"
    assert call(client, "GET", "/api/runs/can-start")[1]["currentRunning"] == 0


def test_finish_unknown_and_bad_status(client):
    assert call(client, "POST", "/api/runs/00000000-0000-4000-8000-000000000000/finish")[0] == 404
    assert call(client, "POST", "/api/runs/not-a-run/finish")[0] == 404
    run = start_run(client)
    code, body = call(client, "POST", f"/api/runs/{run['id']}/finish", {"status": "TIMEOUT"})
    assert code == 400 and "status" in body["message"]
    assert call(client, "GET", f"/api/runs/{run['id']}")[1]["status"] == "RUNNING"


def test_get_unknown_run_is_404_json(client):
    code, body = call(client, "GET", "/api/runs/00000000-0000-4000-8000-000000000000")
    assert code == 404 and body["error"] == "NotFound"
    # The slot counter shares the table; it is never reachable as a run.
    assert call(client, "GET", "/api/runs/%23running-slots")[0] == 404


def test_interrupt_all(client):
    runs = [start_run(client) for _ in range(3)]
    call(client, "POST", f"/api/runs/{runs[0]['id']}/finish")
    code, body = call(client, "POST", "/api/runs/interrupt-all")
    assert code == 200
    assert body["interrupted"] == 2
    assert ISO_MS_Z.match(body["timestamp"]) and body["message"]
    statuses = {r["id"]: r["status"] for r in call(client, "GET", "/api/runs/all")[1]}
    assert statuses == {runs[0]["id"]: "SUCCESS", runs[1]["id"]: "INTERRUPTED", runs[2]["id"]: "INTERRUPTED"}
    assert call(client, "GET", "/api/runs/can-start")[1]["currentRunning"] == 0
    assert call(client, "POST", "/api/runs/interrupt-all")[1]["interrupted"] == 0


def test_lists_are_newest_first(client):
    ids = []
    for _ in range(4):
        ids.append(start_run(client)["id"])
        time.sleep(0.002)
    call(client, "POST", f"/api/runs/{ids[1]}/finish")
    newest_first = list(reversed(ids))
    assert [r["id"] for r in call(client, "GET", "/api/runs/all")[1]] == newest_first
    assert [r["id"] for r in call(client, "GET", "/api/runs/running")[1]] == [
        i for i in newest_first if i != ids[1]
    ]


def test_pagination_walks_every_run_once_newest_first(client):
    ids = []
    for i in range(7):
        ids.append(start_run(client, user="pager")["id"])
        time.sleep(0.002)
        if i < 6:
            call(client, "POST", f"/api/runs/{ids[-1]}/finish")
    seen: list[str] = []
    token = None
    pages = 0
    while True:
        path = "/api/runs?limit=3" + (f"&nextKey={token}" if token else "")
        code, page = call(client, "GET", path)
        assert code == 200 and page["count"] == len(page["items"])
        seen += [r["id"] for r in page["items"]]
        pages += 1
        token = page["nextKey"]
        if token is None:
            break
    assert seen == list(reversed(ids))
    assert pages == 3
    # `lastKey` is an alias.
    first = call(client, "GET", "/api/runs?limit=3")[1]
    aliased = call(client, "GET", f"/api/runs?limit=3&lastKey={first['nextKey']}")[1]
    assert [r["id"] for r in aliased["items"]] == seen[3:6]


def test_list_filters(client):
    a = start_run(client, user="ann")
    b = start_run(client, user="bob")
    call(client, "POST", f"/api/runs/{a['id']}/finish")
    c = start_run(client, user="ann")
    by_user = call(client, "GET", "/api/runs?user=ann")[1]["items"]
    assert [r["id"] for r in by_user] == [c["id"], a["id"]]
    running = call(client, "GET", "/api/runs?status=RUNNING")[1]["items"]
    assert [r["id"] for r in running] == [c["id"], b["id"]]
    both = call(client, "GET", "/api/runs?status=SUCCESS&user=ann")[1]["items"]
    assert [r["id"] for r in both] == [a["id"]]


@pytest.mark.parametrize(
    "query",
    ["limit=0", "limit=101", "limit=abc", "status=DONE", "user=a%20b", "nextKey=garbage", "nextKey=a.b.c"],
)
def test_bad_list_queries_are_400(client, query):
    code, body = call(client, "GET", f"/api/runs?{query}")
    assert code == 400, body
    assert body["error"] in ("BadRequest", "ValidationError") and body["message"]


def test_tampered_or_foreign_token_is_400(client):
    for _ in range(3):
        start_run(client, user="tok")
    token = call(client, "GET", "/api/runs?limit=1")[1]["nextKey"]
    payload, signature = token.split(".")
    tampered = payload[:-2] + ("A" if payload[-2] != "A" else "B") + payload[-1] + "." + signature
    assert call(client, "GET", f"/api/runs?limit=1&nextKey={tampered}")[0] == 400
    # A valid token of another query (another filter) is refused too.
    assert call(client, "GET", f"/api/runs?limit=1&user=tok&nextKey={token}")[0] == 400


def test_overdue_runs_time_out_on_read_and_free_their_slot(client, monkeypatch):
    from chalicelib import schemas

    run = start_run(client, duration=1)
    real_now = schemas.now_ms
    monkeypatch.setattr(schemas, "now_ms", lambda: real_now() + (1 + 120 + 1) * 1000)
    assert call(client, "GET", "/api/runs/running")[1] == []
    timed_out = call(client, "GET", f"/api/runs/{run['id']}")[1]
    assert timed_out["status"] == "TIMEOUT" and timed_out["errorMessage"]
    assert call(client, "GET", "/api/runs/can-start")[1]["currentRunning"] == 0


def test_can_start_times_out_abandoned_runs_when_full(client, monkeypatch):
    from chalicelib import schemas

    for _ in range(5):
        start_run(client, duration=1)
    real_now = schemas.now_ms
    monkeypatch.setattr(schemas, "now_ms", lambda: real_now() + 200_000)
    assert call(client, "GET", "/api/runs/can-start")[1]["available"] == 5


def test_scheduled_sweep_times_out_overdue_runs(client, monkeypatch):
    from chalicelib import schemas

    fresh = start_run(client, duration=3600)
    stale = start_run(client, duration=1)
    real_now = schemas.now_ms
    monkeypatch.setattr(schemas, "now_ms", lambda: real_now() + 200_000)
    event = client.events.generate_cw_event(
        source="aws.events", detail_type="Scheduled Event", detail={}, resources=[]
    )
    assert client.lambda_.invoke("time_out_orphaned_runs", event).payload == {"timedOut": 1}
    assert call(client, "GET", f"/api/runs/{stale['id']}")[1]["status"] == "TIMEOUT"
    assert call(client, "GET", f"/api/runs/{fresh['id']}")[1]["status"] == "RUNNING"
    assert call(client, "GET", "/api/runs/can-start")[1]["currentRunning"] == 1


def test_report_download_is_a_zip_of_csv(client):
    import csv
    import io
    import zipfile

    run = start_run(client, user="reporter")
    call(
        client,
        "POST",
        "/api/sensors/data",
        {"sensorId": "sensor-1", "reading": 21.5},
        **{"X-Run-Id": run["id"]},
    )
    response = client.http.get(
        f"/api/reports/download?runId={run['id']}", headers={"Accept": "application/json, text/plain, */*"}
    )
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "application/zip"
    archive = zipfile.ZipFile(io.BytesIO(response.body))
    # The run is still RUNNING: not in the summary of finished runs, but its readings are there.
    assert set(archive.namelist()) == {"summary.csv", f"readings-{run['id']}.csv"}
    assert list(csv.DictReader(io.StringIO(archive.read("summary.csv").decode()))) == []
    readings = list(csv.DictReader(io.StringIO(archive.read(f"readings-{run['id']}.csv").decode())))
    assert [(r["sensorId"], float(r["reading"])) for r in readings] == [("sensor-1", 21.5)]
