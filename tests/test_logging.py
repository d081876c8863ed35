"""Log lines: JSON with level, message, request id and stage; runId and user where the
request names them; run lifecycle at INFO, refused requests at WARNING without their
body, unexpected errors at ERROR with the stack."""

from __future__ import annotations

import io
import json
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from chalicelib import clock, logs
from chalicelib.runs import RunRepository
from tests.helpers import ADMIN

JSON = {"Content-Type": "application/json"}
Lines = Callable[[], list[dict[str, Any]]]


@pytest.fixture
def log_lines() -> Iterator[Lines]:
    """Every line the app's logger writes during the test, parsed (a line that is not JSON fails)."""
    buffer = io.StringIO()
    previous = logs.logger.logger_handler.setStream(buffer)  # type: ignore[attr-defined]
    try:
        yield lambda: [json.loads(line) for line in buffer.getvalue().splitlines()]
    finally:
        logs.logger.logger_handler.setStream(previous)  # type: ignore[attr-defined]


def start_run(client: Any, user: str = "alice", duration: int = 60) -> str:
    response = client.http.post(
        "/api/runs/start",
        headers={**JSON, "X-User": user},
        body=json.dumps({"sensorIds": ["s-1"], "duration": duration, "interval": 1}),
    )
    assert response.status_code == 201, response.body
    run_id: str = json.loads(response.body)["runId"]
    return run_id


def only(lines: list[dict[str, Any]], message: str) -> dict[str, Any]:
    matching = [line for line in lines if line["message"] == message]
    assert len(matching) == 1, lines
    return matching[0]


def test_every_line_is_json_with_the_common_fields(client, log_lines):
    run_id = start_run(client)
    client.http.post(f"/api/runs/{run_id}/finish", headers=JSON, body="{}")
    lines = log_lines()
    assert len(lines) >= 2
    for line in lines:
        assert {"level", "message", "timestamp", "service", "stage", "requestId"} <= line.keys()
        assert line["service"] == logs.SERVICE and line["stage"] == "test"
    # Each request has its own id.
    assert len({line["requestId"] for line in lines}) == len(lines)


def test_run_lifecycle_is_logged_at_info_with_the_runs_fields(client, log_lines):
    run_id = start_run(client, user="alice", duration=60)
    finished = client.http.post(
        f"/api/runs/{run_id}/finish", headers=JSON, body=json.dumps({"status": "FAILED", "message": "x"})
    )
    assert finished.status_code == 200
    second = start_run(client, user="bob")
    assert client.http.post("/api/runs/interrupt-all", headers={**JSON, **ADMIN}, body="").status_code == 200

    lines = log_lines()
    started = [line for line in lines if line["message"] == "run started"]
    assert [(line["runId"], line["user"]) for line in started] == [(run_id, "alice"), (second, "bob")]
    assert started[0]["level"] == "INFO" and started[0]["status"] == "RUNNING"
    assert started[0]["duration"] == 60 and started[0]["interval"] == 1 and started[0]["sensors"] == 1
    finish = only(lines, "run finished")
    assert (finish["level"], finish["runId"], finish["user"], finish["status"]) == (
        "INFO",
        run_id,
        "alice",
        "FAILED",
    )
    interrupted = only(lines, "run interrupted")
    assert (interrupted["level"], interrupted["runId"], interrupted["user"], interrupted["status"]) == (
        "INFO",
        second,
        "bob",
        "INTERRUPTED",
    )


def test_timeouts_from_the_scheduled_sweep_are_logged(client, log_lines, monkeypatch):
    run_id = start_run(client, user="carol", duration=1)
    later = clock.now_ms() + 3_600_000
    monkeypatch.setattr(clock, "now_ms", lambda: later)
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
    run_id = start_run(client, user="alice")
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
    assert error["message"] == "unhandled error"
    assert "Traceback" in error["exception"] and "RuntimeError: repository exploded" in error["exception"]
    assert error["requestId"] and error["user"] == "frank"


def test_binding_the_context_costs_microseconds():
    context = {"requestId": "r", "resourcePath": "/api/sensors/data", "httpMethod": "POST"}
    headers = {"x-user": "alice", "x-run-id": "8c5d9163-28a8-4a1e-99e9-5cc2a4355da2"}
    rounds = 2000
    started = time.perf_counter()
    for _ in range(rounds):
        logs.bind_request(context=context, headers=headers, path_params=None, query=None, lambda_context=None)
        logs.clear()
    per_request = (time.perf_counter() - started) / rounds
    assert per_request < 200e-6  # about 10 µs here; the bound leaves room for slow CI machines


# ---- one context per request, under `chalice local`'s threads ---------------


def _request_context(index: int) -> dict[str, Any]:
    return {
        "context": {
            "requestId": f"request-{index}",
            "resourcePath": f"/api/route-{index}",
            "httpMethod": "GET",
        },
        "headers": {"x-user": f"user-{index}", "x-run-id": str(uuid.UUID(int=index, version=4))},
        "path_params": None,
        "query": None,
        "lambda_context": None,
    }


def _expected_keys(index: int) -> dict[str, str]:
    return {
        "requestId": f"request-{index}",
        "route": f"GET /api/route-{index}",
        "user": f"user-{index}",
        "runId": str(uuid.UUID(int=index, version=4)),
    }


CONTEXT_KEYS = ("requestId", "lambdaRequestId", "route", "user", "runId")


def test_concurrent_requests_each_log_their_own_context(log_lines):
    """Threads bind different requests, then log in lock-step rounds, so every line is
    written while every other request is bound; then one request ends while the
    others go on. Each line carries its own request's keys, and only those."""
    threads, rounds = 4, 5
    step = threading.Barrier(threads, timeout=10)
    first_done = threading.Event()

    def request(index: int) -> None:
        logs.bind_request(**_request_context(index))
        step.wait()  # every request is bound before anyone logs
        for round_ in range(rounds):
            logs.logger.info("working", extra={"worker": index, "round": round_})
            step.wait()
        if index == 0:
            logs.clear()  # this request ends: the others' contexts must survive it
            logs.logger.info("after clear", extra={"worker": index})
            first_done.set()
        else:
            assert first_done.wait(timeout=10)
            logs.logger.info("still working", extra={"worker": index})
            logs.clear()

    with ThreadPoolExecutor(max_workers=threads) as pool:
        for future in [pool.submit(request, index) for index in range(threads)]:
            future.result()

    lines = log_lines()
    assert len(lines) == threads * (rounds + 1)
    for line in lines:
        if line["message"] == "after clear":
            assert not set(CONTEXT_KEYS) & line.keys(), line
        else:
            assert {key: line.get(key) for key in _expected_keys(0)} == _expected_keys(line["worker"]), line
            assert "lambdaRequestId" not in line
            assert line["stage"] == "test"


def test_clear_forgets_the_request_context(log_lines):
    logs.bind_request(**_request_context(7))
    logs.logger.info("bound")
    logs.clear()
    logs.logger.info("cleared")
    bound, cleared = log_lines()
    assert {key: bound.get(key) for key in _expected_keys(7)} == _expected_keys(7)
    assert not set(CONTEXT_KEYS) & cleared.keys(), cleared
    assert cleared["service"] == logs.SERVICE and cleared["stage"] == "test"  # the logger's own keys stay
    assert logs.logger.thread_safe_get_current_keys() == {}


def test_binding_replaces_the_previous_context_of_the_thread(log_lines):
    """Lambda reuses its thread: a request naming no run and no user carries neither."""
    logs.bind_request(**_request_context(8))
    logs.bind_request(
        context={"requestId": "next"}, headers={}, path_params=None, query=None, lambda_context=None
    )
    logs.logger.info("next")
    logs.clear()
    (line,) = log_lines()
    assert line["requestId"] == "next"
    assert not {"route", "user", "runId", "lambdaRequestId"} & line.keys(), line
