"""The one place for the API's paths and headers, and one helper per action the tests take."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent

JSON = {"Content-Type": "application/json"}
READINGS = "/api/sensors/data"
UNKNOWN_RUN = "00000000-0000-4000-8000-000000000000"
T0 = 1_800_000_000_000  # 2027-01-15T08:00:00Z
# A run accepts readings only from the sensors it declared: the ids the tests post readings with.
TEST_SENSORS = ("s", *(f"s{i}" for i in range(10)), "s-1", "s-2", "s-9", "a", "b")


def call(client: Any, method: str, path: str, body: Any = None, **headers: str) -> tuple[int, Any]:
    """One request through chalice.test.Client; returns (status, decoded JSON body)."""
    kwargs: dict[str, Any] = {"headers": {**JSON, **headers}}
    if body is not None:
        kwargs["body"] = body if isinstance(body, (str, bytes)) else json.dumps(body)
    response = getattr(client.http, method.lower())(path, **kwargs)
    return response.status_code, json.loads(response.body) if response.body else None


def start_run(
    client: Any, user: str = "alice", sensors: int = 2, duration: int = 60, interval: int = 1
) -> Any:
    """A run of sensor-1..sensor-N plus TEST_SENSORS; fails the test unless it started."""
    sensor_ids = [*(f"sensor-{i}" for i in range(1, sensors + 1)), *TEST_SENSORS]
    body = {"sensorIds": sensor_ids, "duration": duration, "interval": interval}
    status, run = call(client, "POST", "/api/runs/start", body, **{"X-User": user})
    assert status == 201, run
    return run


def post_readings(
    client: Any, run_id: str | None, body: Any, user: str = "u", **headers: str
) -> tuple[int, Any]:
    """POST /api/sensors/data (or `path=`) as `user` for the run."""
    path = headers.pop("path", READINGS)
    if run_id:
        headers["X-Run-Id"] = run_id
    return call(client, "POST", path, body, **{"X-User": user, **headers})


def post_ok(client: Any, run_id: str | None, body: Any, user: str = "u") -> Any:
    """Post readings for the run, a list in batches of 500; fails the test unless each is stored."""
    parts = [body[i : i + 500] for i in range(0, len(body), 500)] if isinstance(body, list) else [body]
    for part in parts:
        status, answer = post_readings(client, run_id, part, user=user)
        assert status == 201, answer
    return answer


def walk(client: Any, path: str) -> tuple[list[Any], int]:
    """Every item of a list, following `nextKey`; (items, pages)."""
    items: list[Any] = []
    pages, token = 0, None
    while True:
        status, page = call(client, "GET", path + (f"&nextKey={token}" if token else ""))
        assert status == 200, page
        items, pages, token = items + page["items"], pages + 1, page["nextKey"]
        if token is None:
            return items, pages


def finish(client: Any, run_id: str, status: str = "SUCCESS", message: str | None = None) -> Any:
    code, run = call(client, "POST", f"/api/runs/{run_id}/finish", {"status": status, "message": message})
    assert code == 200, run
    return run


def stored_readings(client: Any, run_id: str, order: str = "asc") -> list[Any]:
    """Every reading of the run the API serves, walking its pages."""
    return walk(client, f"{READINGS}?runId={run_id}&limit=1000&order={order}")[0]


def http(method: str, url: str, body: Any = None, **headers: str) -> tuple[int, Any, dict[str, str]]:
    """One real HTTP request; returns (status, decoded JSON body or the raw bytes, headers)."""
    import urllib.error
    import urllib.request

    data = body if isinstance(body, bytes) else body.encode() if isinstance(body, str) else None
    if body is not None and data is None:
        data = json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method, headers={**JSON, **headers})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            status, raw, answer_headers = response.status, response.read(), dict(response.headers)
    except urllib.error.HTTPError as error:
        status, raw, answer_headers = error.code, error.read(), dict(error.headers)
    try:
        return status, json.loads(raw) if raw else None, answer_headers
    except ValueError:
        return status, raw, answer_headers
