"""Re-sends over HTTP against the real local stack store nothing twice, including when
the client re-sends concurrently, as a browser retrying on a slow answer would."""

from __future__ import annotations

import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.helpers import http

pytestmark = pytest.mark.e2e


def test_resent_batches_and_keyed_requests_are_stored_once(local_stack):
    api = local_stack.base_url
    key = {"Idempotency-Key": str(uuid.uuid4()), "X-User": "resender"}
    start = {"sensorIds": ["s0", "s1"], "duration": 60, "interval": 1}
    with ThreadPoolExecutor(4) as pool:
        answers = list(pool.map(lambda _: http("POST", f"{api}/api/runs/start", start, **key), range(4)))
    started = [body for status, body, _ in answers if status == 201]
    # Concurrent re-sends: one run; the others replay it or are told to retry (409 RequestInProgress).
    assert started and {run["id"] for run in started} == {started[0]["id"]}
    assert all(status in (201, 409) for status, _, _ in answers)
    run_id = started[0]["id"]
    try:
        timestamped = [
            {"sensorId": f"s{i % 2}", "reading": i / 10, "timestamp": 1_800_000_000_000 + i}
            for i in range(50)
        ]
        keyed = [{"sensorId": "s0", "reading": 99.0 + i} for i in range(10)]
        headers = {"X-User": "resender", "X-Run-Id": run_id}
        batch_key = {**headers, "Idempotency-Key": str(uuid.uuid4())}
        for _ in range(3):
            assert http("POST", f"{api}/api/sensors/data", timestamped, **headers)[0] == 201
            assert http("POST", f"{api}/api/sensors/data", keyed, **batch_key)[:2] == (201, {"ingested": 10})
        status, page, _ = http("GET", f"{api}/api/sensors/data?runId={run_id}&limit=1000")
        assert status == 200 and page["count"] == 60 and page["nextKey"] is None
    finally:
        assert http("POST", f"{api}/api/runs/{run_id}/finish", {"status": "SUCCESS"})[0] == 200
