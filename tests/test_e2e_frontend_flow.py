"""The frontend's own sequence of calls, over HTTP against the real local stack."""

from __future__ import annotations

import math
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.helpers import http

pytestmark = pytest.mark.e2e

ORIGIN = "http://localhost:4200"


def test_simulation_flow_like_the_frontend(local_stack):
    api = local_stack.base_url
    status, can, _ = http("GET", f"{api}/api/runs/can-start")
    assert status == 200 and can["canStart"] is True
    interval_ms, count, sensors = 200, 5, ["sensor-1", "sensor-2", "sensor-3"]
    status, run, headers = http(
        "POST",
        f"{api}/api/runs/start",
        {"sensorIds": sensors, "duration": math.ceil(count * interval_ms / 1000), "interval": 1},
        **{"X-User": "frontend-user", "Origin": ORIGIN},
    )
    assert status == 201, run
    assert headers["Access-Control-Allow-Origin"] in ("*", ORIGIN)
    run_id = run["runId"]
    try:
        running = http("GET", f"{api}/api/runs/running")[1]
        assert run_id in [r["id"] for r in running]

        def send(sensor: str, value: float) -> int:
            return http(
                "POST",
                f"{api}/api/sensors/data",
                {"sensorId": sensor, "reading": value, "type": "temperature"},
                **{"X-User": "frontend-user", "X-Run-Id": run_id, "Origin": ORIGIN},
            )[0]

        with ThreadPoolExecutor(len(sensors)) as pool:
            for round_number in range(count):
                statuses = list(pool.map(send, sensors, [20.0 + round_number / 10] * len(sensors)))
                assert statuses == [201] * len(sensors)
    finally:
        status, finished, _ = http(
            "POST",
            f"{api}/api/runs/{run_id}/finish",
            {"status": "SUCCESS", "message": "Simulation completed successfully"},
        )
    assert status == 200 and finished["status"] == "SUCCESS" and finished["finishedAt"]

    listed = http("GET", f"{api}/api/runs?user=frontend-user&limit=5")[1]
    assert listed["items"][0]["id"] == run_id and listed["items"][0]["status"] == "SUCCESS"
    stored = http("GET", f"{api}/api/sensors/data?runId={run_id}&limit=1000")[1]
    assert stored["count"] == 15 and stored["nextKey"] is None
    per_sensor = {
        s: http("GET", f"{api}/api/sensors/data?runId={run_id}&sensorId={s}")[1]["count"] for s in sensors
    }
    assert per_sensor == {s: 5 for s in sensors}
    # The run has ended: readings are refused, and so is a second finish.
    late = http(
        "POST", f"{api}/api/sensors/data", {"sensorId": "sensor-1", "reading": 1.0}, **{"X-Run-Id": run_id}
    )
    assert late[0] == 409
    assert http("POST", f"{api}/api/runs/{run_id}/finish", {"status": "FAILED", "message": "é"})[0] == 409


def test_preflights_pass_for_the_frontend_headers(local_stack):
    for path, requested in (
        ("/api/runs/start", "content-type,x-user"),
        ("/api/sensors/data", "content-type,x-user,x-run-id"),
        ("/sensors/data", "content-type,x-user,x-run-id"),
        ("/api/runs/00000000-0000-4000-8000-000000000000/finish", "content-type"),
    ):
        status, _, headers = http(
            "OPTIONS",
            f"{local_stack.base_url}{path}",
            None,
            Origin=ORIGIN,
            **{"Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": requested},
        )
        assert status == 200, path
        allowed = {h.strip().lower() for h in headers["Access-Control-Allow-Headers"].split(",")}
        assert set(requested.split(",")) <= allowed, path
        assert "POST" in headers["Access-Control-Allow-Methods"]


def test_errors_carry_cors_headers_and_json(local_stack):
    # A 404 from a route, and one for a path no route serves (answered before the app).
    for path in ("/api/runs/00000000-0000-4000-8000-000000000000", "/api/no-such-route"):
        status, body, headers = http("GET", f"{local_stack.base_url}{path}", None, Origin=ORIGIN)
        assert status == 404 and body["error"] == "NotFound" and body["message"], path
        assert headers["Access-Control-Allow-Origin"] in ("*", ORIGIN)


def test_latest_deployment_is_the_200_form_of_no_deployment(local_stack):
    # The frontend polls it every 5 s; a 404 would be a console error each time.
    status, body, headers = http(
        "GET", f"{local_stack.base_url}/infra/latest-deployment", None, Origin=ORIGIN
    )
    assert status == 200 and body["success"] is False and body["message"]
    assert headers["Access-Control-Allow-Origin"] in ("*", ORIGIN)


def test_every_remaining_route_over_http(local_stack):
    api = local_stack.base_url
    assert http("GET", f"{api}/api/health")[1]["status"] == "ok"
    run = http(
        "POST", f"{api}/api/runs/start", {"params": {"sensorIds": ["s-1"], "duration": 30, "interval": 1}}
    )[1]
    try:
        assert http("GET", f"{api}/api/runs/{run['id']}")[1] == run
        assert run["id"] in [r["id"] for r in http("GET", f"{api}/api/runs/all")[1]]
        batch = [
            {"sensorId": "s-1", "temperature": 20.5, "humidity": 41.0},
            {"sensorId": "s-1", "reading": 3.5},
        ]
        assert http("POST", f"{api}/sensors/data", batch, **{"X-Run-Id": run["id"]})[:2] == (
            201,
            {"ingested": 3},
        )
        alias = http("GET", f"{api}/sensors/data?runId={run['id']}&type=humidity")[1]
        assert [(i["type"], i["reading"]) for i in alias["items"]] == [("humidity", 41.0)]
        status, report, headers = http("GET", f"{api}/api/reports/download?runId={run['id']}", Accept="*/*")
        assert status == 200 and headers["Content-Type"] == "application/zip" and report[:2] == b"PK"
    finally:
        http("POST", f"{api}/api/runs/{run['id']}/finish", {"status": "COMPLETED"})
    assert http("GET", f"{api}/api/runs/{run['id']}")[1]["status"] == "SUCCESS"
