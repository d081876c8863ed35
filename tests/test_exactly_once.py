"""Writes stay exactly-once and answers stay 2xx/4xx/503 when DynamoDB behaves as it
does in production: answers lost after the write was applied (so the SDK retries
it), clients re-sending after an error, unprocessed batch items, throttling that
outlasts the SDK's retries, and transactions conflicting under concurrency.

Every test drives the app through `tests/dynamodb_faults.py` and states the
invariant it checks."""

from __future__ import annotations

import threading
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.helpers import TEST_SENSORS, call, post_readings, start_run

RUN_LIMIT = 5


def stored_readings(client, run_id):
    status, page = call(client, "GET", f"/api/sensors/data?runId={run_id}&limit=1000&order=asc")
    assert status == 200 and page["nextKey"] is None, page
    return page["items"]


def slots_and_running():
    import app

    runs = app.parts().runs.repository
    return runs.count_running(), len(runs.newest(status="RUNNING"))


def timestamped(count, *, start_ms=1_800_000_000_000):
    return [{"sensorId": f"s{i % 4}", "reading": float(i), "timestamp": start_ms + i} for i in range(count)]


# ---- the SDK retries a write whose answer was lost ------------------------------------


@pytest.fixture(params=["500", "disconnect"])
def lost_answer(request, dynamodb_faults):
    """Lose the answer of the next write of an operation, by a 500 or a dropped connection."""
    dynamodb_faults.honour_request_tokens = False  # as moto, unlike DynamoDB: the code must not need it
    return lambda operation: dynamodb_faults.lose_answer(operation, how=request.param)


def test_single_reading_applied_then_retried_is_stored_once(faulty_client, dynamodb_faults, lost_answer):
    run = start_run(faulty_client)
    stamped_on_arrival = {"sensorId": "s", "reading": 1.5}
    own_timestamp = {"sensorId": "s", "reading": 2.5, "timestamp": 1_800_000_000_000}
    for body in (stamped_on_arrival, own_timestamp):
        lost_answer("PutItem")
        before = dynamodb_faults.applied["PutItem"]
        assert post_readings(faulty_client, run["id"], body)[0] == 201
        assert dynamodb_faults.applied["PutItem"] - before == 2  # applied, then applied again
    # Invariant: readings stored exactly once.
    assert sorted(r["reading"] for r in stored_readings(faulty_client, run["id"])) == [1.5, 2.5]


def test_start_applied_then_retried_answers_201_with_one_run_and_one_slot(
    faulty_client, dynamodb_faults, lost_answer
):
    lost_answer("TransactWriteItems")
    status, run = call(
        faulty_client, "POST", "/api/runs/start", {"sensorIds": ["a"], "duration": 60, "interval": 1}
    )
    assert status == 201, run
    assert dynamodb_faults.counts["lost_answers"] == 1
    # Invariant: the slot counter equals the RUNNING runs, and the answer names the one run.
    assert slots_and_running() == (1, 1)
    assert call(faulty_client, "GET", f"/api/runs/{run['id']}")[1]["status"] == "RUNNING"


def test_finish_applied_then_retried_answers_200_and_a_second_finish_is_409(
    faulty_client, dynamodb_faults, lost_answer
):
    run = start_run(faulty_client)
    lost_answer("TransactWriteItems")
    status, ended = call(faulty_client, "POST", f"/api/runs/{run['id']}/finish", {"status": "SUCCESS"})
    assert (status, ended["status"]) == (200, "SUCCESS")
    assert dynamodb_faults.counts["lost_answers"] == 1
    assert slots_and_running() == (0, 0)  # invariant: the slot came back exactly once
    status, refused = call(faulty_client, "POST", f"/api/runs/{run['id']}/finish", {"status": "FAILED"})
    assert (status, refused["error"]) == (409, "RunNotRunning")


def test_interrupt_all_applied_then_retried_interrupts_each_run_once(faulty_client, lost_answer):
    for user in ("a", "b"):
        start_run(faulty_client, user=user)
    lost_answer("TransactWriteItems")
    status, body = call(faulty_client, "POST", "/api/runs/interrupt-all")
    assert (status, body["interrupted"]) == (200, 2)
    assert slots_and_running() == (0, 0)


def test_timeout_applied_then_retried_gives_the_slot_back_once(faulty_client, lost_answer, monkeypatch):
    from chalicelib import schemas

    run = start_run(faulty_client, duration=1)
    later = schemas.now_ms() + 3_600_000
    monkeypatch.setattr(schemas, "now_ms", lambda: later)
    lost_answer("TransactWriteItems")
    assert [r["id"] for r in call(faulty_client, "GET", "/api/runs/running")[1]] == []
    assert call(faulty_client, "GET", f"/api/runs/{run['id']}")[1]["status"] == "TIMEOUT"
    assert slots_and_running() == (0, 0)


# ---- the client re-sends after an error ----------------------------------------------


def test_batch_resent_after_a_partial_503_stores_every_timestamped_reading_once(
    faulty_client, dynamodb_faults
):
    run = start_run(faulty_client)
    # DynamoDB takes 1 item per BatchWriteItem: the batch runs out of attempts.
    batch = [{**reading, "sensorId": TEST_SENSORS[i % 16]} for i, reading in enumerate(timestamped(60))]
    dynamodb_faults.unprocess_batch_writes(times=1000, keep=1)
    status, body = post_readings(faulty_client, run["id"], batch)
    assert status == 503 and body["error"] == "ServiceUnavailable", body
    assert (
        0 < body["details"]["stored"] < 60 and body["details"]["notStored"] == 60 - body["details"]["stored"]
    )
    partial = len(stored_readings(faulty_client, run["id"]))
    assert partial == body["details"]["stored"]
    dynamodb_faults.clear()
    assert post_readings(faulty_client, run["id"], batch) == (201, {"ingested": 60})
    # Invariant: after the re-send every reading is stored exactly once.
    stored = stored_readings(faulty_client, run["id"])
    assert sorted(r["reading"] for r in stored) == [float(i) for i in range(60)]


def test_batch_without_timestamps_resent_with_its_idempotency_key_is_stored_once(
    faulty_client, dynamodb_faults
):
    run = start_run(faulty_client)
    batch = [{"sensorId": TEST_SENSORS[i % 16], "reading": float(i)} for i in range(40)]
    key = {"Idempotency-Key": str(uuid.uuid4())}
    dynamodb_faults.unprocess_batch_writes(times=1000, keep=1)  # 1 stored per call
    assert post_readings(faulty_client, run["id"], batch, **key)[0] == 503
    dynamodb_faults.clear()
    assert post_readings(faulty_client, run["id"], batch, **key) == (201, {"ingested": 40})
    stored = stored_readings(faulty_client, run["id"])
    assert sorted(r["reading"] for r in stored) == [float(i) for i in range(40)]
    # Stamped once, on the first attempt: the re-send's readings are the same readings.
    assert len({r["timestamp"] for r in stored}) == 1


def test_idempotency_key_replays_the_answer_and_binds_the_key_to_its_request(faulty_client):
    body = {"sensorIds": ["a"], "duration": 60, "interval": 1}
    headers = {"X-User": "alice", "Idempotency-Key": "start-1"}
    first = faulty_client.http.post("/api/runs/start", headers=_json(headers), body=_encode(body))
    again = faulty_client.http.post("/api/runs/start", headers=_json(headers), body=_encode(body))
    assert (first.status_code, again.status_code) == (201, 201)
    assert again.body == first.body and again.headers["Idempotent-Replayed"] == "true"
    assert slots_and_running() == (1, 1)  # one run, one slot
    other = {**body, "duration": 61}
    status, error = call(faulty_client, "POST", "/api/runs/start", other, **headers)
    assert (status, error["error"]) == (422, "IdempotencyKeyReused")
    status, error = call(
        faulty_client, "POST", "/api/runs/start", body, **{**headers, "Idempotency-Key": "a b"}
    )
    assert (status, error["error"]) == (400, "BadRequest")


START = {"sensorIds": ["a"], "duration": 60, "interval": 1}


def keyed_start(client, key):
    headers = {"Content-Type": "application/json", "X-User": "alice", "Idempotency-Key": key}
    return client.http.post("/api/runs/start", headers=headers, body=_encode(START))


def rewrite_records(update, values, which=".answer#"):
    """Change the records keyed requests left (Powertools Idempotency's, the answers by
    default), as another attempt's state, or time, would leave them."""
    import app

    settings, client = app.parts().settings, app.parts().dynamodb
    names = {"ExpressionAttributeNames": {"#status": "status"}} if "#status" in update else {}
    for item in client.scan(TableName=settings.idempotency_table)["Items"]:
        if which in item["id"]["S"]:
            client.update_item(
                TableName=settings.idempotency_table,
                Key={"id": item["id"]},
                UpdateExpression=update,
                ExpressionAttributeValues=values,
                **names,
            )


def test_a_keyed_request_in_progress_is_409_with_retry_after(faulty_client):
    assert keyed_start(faulty_client, "busy").status_code == 201
    rewrite_records(
        "SET #status = :p, in_progress_expiration = :far",
        {":p": {"S": "INPROGRESS"}, ":far": {"N": "9" * 15}},
    )
    response = keyed_start(faulty_client, "busy")
    assert response.status_code == 409 and response.headers["Retry-After"] == "1"
    assert _decode(response.body)["error"] == "RequestInProgress"


def test_a_keyed_start_whose_first_attempt_died_is_recognised_on_re_send(faulty_client):
    """The first attempt started the run and died before recording its answer; once its
    time has run out, the re-send answers with that run instead of starting another."""
    first = _decode(keyed_start(faulty_client, "died").body)
    rewrite_records(
        "SET #status = :p, in_progress_expiration = :past", {":p": {"S": "INPROGRESS"}, ":past": {"N": "0"}}
    )
    again = keyed_start(faulty_client, "died")
    assert again.status_code == 201 and "Idempotent-Replayed" not in again.headers
    assert _decode(again.body)["id"] == first["id"]
    assert slots_and_running() == (1, 1)


def test_a_key_is_the_callers_and_one_routes(faulty_client):
    run = start_run(faulty_client, user="first")
    reading = {"sensorId": "s", "reading": 1.5}
    key = {"Idempotency-Key": "reading-1", "X-User": "u", "X-Run-Id": run["id"]}
    assert call(faulty_client, "POST", "/api/sensors/data", reading, **key)[0] == 201
    # The alias is the same route: the answer is replayed, the reading stored once.
    again = faulty_client.http.post("/sensors/data", headers=_json(key), body=_encode(reading))
    assert again.status_code == 201 and again.headers["Idempotent-Replayed"] == "true"
    assert len(stored_readings(faulty_client, run["id"])) == 1
    # Another route with the same key is another request: refused, nothing done.
    status, error = call(faulty_client, "POST", "/api/runs/start", START, **key)
    assert (status, error["error"]) == (422, "IdempotencyKeyReused")
    assert slots_and_running() == (1, 1)
    # Another caller's key is theirs alone.
    other = {**key, "X-User": "v"}
    assert call(faulty_client, "POST", "/api/sensors/data", {**reading, "reading": 2.5}, **other)[0] == 201
    assert len(stored_readings(faulty_client, run["id"])) == 2


def test_an_expired_key_starts_afresh_and_never_answers_with_another_callers_run(faulty_client):
    first = _decode(keyed_start(faulty_client, "shared").body)
    rewrite_records("SET expiration = :past", {":past": {"N": "1"}}, which="#")  # 24 h later
    headers = {"Content-Type": "application/json", "X-User": "mallory", "Idempotency-Key": "shared"}
    theirs = faulty_client.http.post("/api/runs/start", headers=headers, body=_encode(START))
    assert theirs.status_code == 201 and "Idempotent-Replayed" not in theirs.headers
    assert _decode(theirs.body)["id"] != first["id"] and _decode(theirs.body)["username"] == "mallory"
    again = keyed_start(faulty_client, "shared")  # the first caller, after expiry: a new run
    assert again.status_code == 201 and _decode(again.body)["id"] not in (
        first["id"],
        _decode(theirs.body)["id"],
    )
    assert slots_and_running() == (3, 3)


# ---- DynamoDB keeps refusing: 503 + Retry-After, never 500, nothing half-written ----


@pytest.mark.parametrize(
    ("operation", "method", "path", "body"),
    [
        ("TransactWriteItems", "POST", "/api/runs/start", {"sensorIds": ["a"], "duration": 9, "interval": 1}),
        ("PutItem", "POST", "/api/sensors/data", {"sensorId": "s", "reading": 1}),
        # Two sensors: two chunks, one BatchWriteItem (one chunk would be one PutItem).
        (
            "BatchWriteItem",
            "POST",
            "/api/sensors/data",
            [{"sensorId": "s1", "reading": 1}, {"sensorId": "s2", "reading": 1}],
        ),
        ("Query", "GET", "/api/runs/running", None),
        ("GetItem", "GET", "/api/runs/can-start", None),
    ],
)
def test_throttling_that_outlasts_the_sdk_retries_is_503_with_retry_after(
    faulty_client, dynamodb_faults, monkeypatch, operation, method, path, body
):
    from botocore.retries.standard import ExponentialBackoff

    run = start_run(faulty_client)
    # As many attempts as in production, without the seconds of backoff between them.
    monkeypatch.setattr(ExponentialBackoff, "delay_amount", lambda self, context: 0.0)
    dynamodb_faults.throttle(operation)
    response = getattr(faulty_client.http, method.lower())(
        path,
        headers=_json({"X-User": "u", "X-Run-Id": run["id"]}),
        **({"body": _encode(body)} if body is not None else {}),
    )
    assert response.status_code == 503 and response.headers["Retry-After"] == "1"
    assert _decode(response.body)["error"] == "ServiceUnavailable"
    dynamodb_faults.clear()
    assert slots_and_running() == (1, 1)
    assert stored_readings(faulty_client, run["id"]) == []


# ---- concurrency: transactions conflict as on DynamoDB --------------------------------


@pytest.mark.slow
def test_fifty_concurrent_starts_under_transaction_conflicts_give_exactly_the_limit(dynamodb_faults):
    import app
    from chalicelib.schemas import ApiError, RunParams

    runs = app.parts().runs
    assert runs.repository.max_running == RUN_LIMIT
    barrier = threading.Barrier(50)

    def start(i):
        barrier.wait()
        try:
            runs.start(f"u{i}", RunParams(sensorIds=["s"], duration=60, interval=1))
            return 201
        except ApiError as error:
            return error.status

    with ThreadPoolExecutor(50) as pool:
        answers = Counter(pool.map(start, range(50)))
    assert answers == Counter({201: RUN_LIMIT, 409: 50 - RUN_LIMIT})
    assert dynamodb_faults.counts["transaction_conflicts"] > 0  # the conflicts did happen
    assert slots_and_running() == (RUN_LIMIT, RUN_LIMIT)


# ---- helpers ---------------------------------------------------------------------------


def _json(headers):
    return {"Content-Type": "application/json", **headers}


def _encode(body):
    import json

    return json.dumps(body)


def _decode(raw):
    import json

    return json.loads(raw)


@pytest.mark.parametrize(
    ("operation", "path", "body"),
    [
        ("TransactWriteItems", "/api/runs/start", {"sensorIds": ["a"], "duration": 9, "interval": 1}),
        ("PutItem", "/api/sensors/data", {"sensorId": "s", "reading": 1}),
    ],
)
def test_throttling_within_the_sdk_retries_is_absorbed(
    faulty_client, dynamodb_faults, monkeypatch, operation, path, body
):
    from botocore.retries.standard import ExponentialBackoff

    run = start_run(faulty_client, user="first")
    monkeypatch.setattr(ExponentialBackoff, "delay_amount", lambda self, context: 0.0)
    dynamodb_faults.throttle(operation, times=2)
    status, answer = call(faulty_client, "POST", path, body, **{"X-User": "u", "X-Run-Id": run["id"]})
    # Invariant: a 503 only once the retries are spent.
    assert status == 201, answer
    assert dynamodb_faults.counts["throttled"] == 2
