"""Log lines: JSON with level, message, request id and stage; runId and user where the
request names them; run lifecycle at INFO, refused requests at WARNING without their
body, unexpected errors at ERROR with the stack."""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from chalicelib import schemas
from chalicelib.http import bind_log_context
from chalicelib.runs import RunRepository
from chalicelib.settings import logger
from tests.helpers import JSON, start_run

Lines = Callable[[], list[dict[str, Any]]]


def only(lines: list[dict[str, Any]], message: str) -> dict[str, Any]:
    matching = [line for line in lines if line["message"] == message]
    assert len(matching) == 1, lines
    return matching[0]


def test_every_line_is_json_with_the_common_fields(client, log_lines):
    run_id = start_run(client)["runId"]
    client.http.post(f"/api/runs/{run_id}/finish", headers=JSON, body="{}")
    lines = log_lines()
    assert len(lines) >= 2
    for line in lines:
        assert {"level", "message", "timestamp", "service", "stage", "requestId"} <= line.keys()
        assert line["service"] == "iot-playground" and line["stage"] == "test"
    # Each request has its own id.
    assert len({line["requestId"] for line in lines}) == len(lines)


def test_run_lifecycle_is_logged_at_info_with_the_runs_fields(client, log_lines):
    run = start_run(client, user="alice", duration=60)
    run_id = run["runId"]
    finished = client.http.post(
        f"/api/runs/{run_id}/finish", headers=JSON, body=json.dumps({"status": "FAILED", "message": "x"})
    )
    assert finished.status_code == 200
    second = start_run(client, user="bob")["runId"]
    assert client.http.post("/api/runs/interrupt-all", headers=JSON, body="").status_code == 200

    lines = log_lines()
    started = [line for line in lines if line["message"] == "run started"]
    assert [(line["runId"], line["user"]) for line in started] == [(run_id, "alice"), (second, "bob")]
    assert started[0]["level"] == "INFO" and started[0]["status"] == "RUNNING"
    assert (
        started[0]["duration"] == 60
        and started[0]["interval"] == 1
        and started[0]["sensors"] == len(run["params"]["sensorIds"])
    )
    for message, run, user, status in [
        ("run finished", run_id, "alice", "FAILED"),
        ("run interrupted", second, "bob", "INTERRUPTED"),
    ]:
        line = only(lines, message)
        assert (line["level"], line["runId"], line["user"], line["status"]) == ("INFO", run, user, status)


def test_timeouts_from_the_scheduled_sweep_are_logged(client, log_lines, monkeypatch):
    run_id = start_run(client, user="carol", duration=1)["runId"]
    later = schemas.now_ms() + 3_600_000
    monkeypatch.setattr(schemas, "now_ms", lambda: later)
    event = client.events.generate_cw_event(
        source="aws.events", detail_type="Scheduled Event", detail={}, resources=[]
    )
    result = client.lambda_.invoke("time_out_orphaned_runs", event)
    assert result.payload == {"timedOut": 1}
    timed_out = only(log_lines(), "run timed out")
    assert (timed_out["level"], timed_out["runId"], timed_out["user"], timed_out["status"]) == (
        "INFO",
        run_id,
        "carol",
        "TIMEOUT",
    )
    assert timed_out["requestId"]  # the sweep's Lambda invocation id


def test_request_context_comes_from_headers_and_path_and_does_not_leak(client, log_lines):
    run_id = start_run(client, user="alice")["runId"]
    client.http.post(f"/api/runs/{run_id}/finish", headers=JSON, body="{}")
    # A reading for the finished run is refused: logged with the run and user of the request.
    refused = client.http.post(
        "/api/sensors/data",
        headers={**JSON, "X-User": "dave", "X-Run-Id": run_id.upper()},
        body=json.dumps({"sensorId": "s-1", "reading": 20.5}),
    )
    assert refused.status_code == 409
    # A request naming no run and no user carries neither.
    assert client.http.get("/api/runs/not-a-run").status_code == 404
    lines = log_lines()
    refusal = next(line for line in lines if line.get("error") == "RunNotRunning")
    assert refusal["level"] == "WARNING"
    assert (refusal["runId"], refusal["user"]) == (run_id, "dave")
    assert refusal["route"] == "POST /api/sensors/data"
    not_found = lines[-1]
    assert not_found["level"] == "WARNING" and not_found["route"] == "GET /api/runs/{run_id}"
    assert "runId" not in not_found and "user" not in not_found


def test_validation_failures_are_warnings_without_the_body(client, log_lines):
    secret = "do-not-log-this-4711"
    response = client.http.post(
        "/api/runs/start",
        headers={**JSON, "X-User": "erin"},
        body=json.dumps({"sensorIds": ["s-1"], "duration": secret, "interval": 1, "note": secret}),
    )
    assert response.status_code == 400
    lines = log_lines()
    (warning,) = lines
    assert warning["level"] == "WARNING"
    assert warning["status"] == 400 and warning["user"] == "erin" and warning["requestId"]
    assert "duration" in warning["message"]
    assert secret not in json.dumps(lines)


def test_unexpected_errors_are_logged_at_error_with_the_stack(client, log_lines, monkeypatch):
    def broken(*args: Any) -> Any:
        raise RuntimeError("repository exploded")

    monkeypatch.setattr(RunRepository, "count_running", broken)
    response = client.http.get("/api/runs/can-start", headers={"X-User": "frank"})
    assert response.status_code == 500
    assert "exploded" not in response.body.decode()
    (error,) = [line for line in log_lines() if line["level"] == "ERROR"]
    assert error["message"] == "Caught exception for path /api/runs/can-start"  # Chalice's own
    assert "Traceback" in error["exception"] and "RuntimeError: repository exploded" in error["exception"]
    assert error["requestId"] and error["user"] == "frank"


# ---- one context per request, under `chalice local`'s threads ---------------------------

CONTEXT_KEYS = ("requestId", "lambdaRequestId", "route", "user", "runId")


def request_of(index: int) -> Any:
    from chalice.app import Request

    headers = {"x-user": f"user-{index}", "x-run-id": str(uuid.UUID(int=index, version=4))}
    context = {"requestId": f"request-{index}", "resourcePath": f"/api/route-{index}", "httpMethod": "GET"}
    event = {
        "headers": headers,
        "requestContext": context,
        "httpMethod": "GET",
        "multiValueQueryStringParameters": None,
    }
    return Request(
        {**event, "pathParameters": None, "stageVariables": None, "body": None, "isBase64Encoded": False}
    )


def expected_keys(index: int) -> dict[str, str]:
    return {
        "requestId": f"request-{index}",
        "route": f"GET /api/route-{index}",
        "user": f"user-{index}",
        "runId": str(uuid.UUID(int=index, version=4)),
    }


def test_concurrent_requests_each_log_their_own_context(log_lines):
    """Threads bind different requests, then log in lock-step rounds, so every line is written
    while every other request is bound; then one request ends while the others go on."""
    threads, rounds = 4, 5
    step = threading.Barrier(threads, timeout=10)
    first_done = threading.Event()

    def serve(index: int) -> None:
        bind_log_context(request_of(index), "test")
        step.wait()  # every request is bound before anyone logs
        for round_ in range(rounds):
            logger.info("working", extra={"worker": index, "round": round_})
            step.wait()
        if index == 0:
            logger.thread_safe_clear_keys()  # this request ends: the others' contexts survive it
            logger.info("after clear", extra={"worker": index})
            first_done.set()
        else:
            assert first_done.wait(timeout=10)
            logger.info("still working", extra={"worker": index})
            logger.thread_safe_clear_keys()

    with ThreadPoolExecutor(max_workers=threads) as pool:
        for future in [pool.submit(serve, index) for index in range(threads)]:
            future.result()
    lines = log_lines()
    assert len(lines) == threads * (rounds + 1)
    for line in lines:
        if line["message"] == "after clear":
            assert not set(CONTEXT_KEYS) & line.keys(), line
        else:
            assert {key: line.get(key) for key in expected_keys(0)} == expected_keys(line["worker"]), line


def test_binding_replaces_the_previous_context_of_the_thread(log_lines):
    """Lambda reuses its thread: a request naming no run and no user carries neither."""
    bind_log_context(request_of(8), "test")
    bare = request_of(9)
    bare.headers = {}
    bind_log_context(bare, "test")
    logger.info("next")
    logger.thread_safe_clear_keys()
    (line,) = log_lines()
    assert line["requestId"] == "request-9" and not {"user", "runId", "lambdaRequestId"} & line.keys(), line
