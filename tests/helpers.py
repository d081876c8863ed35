"""Small helpers shared by the API tests."""

from __future__ import annotations

import json
from typing import Any

JSON = {"Content-Type": "application/json"}
# POST /api/runs/interrupt-all needs the stage's admin key: API Gateway checks it on AWS, the
# app under STAGE=local (see chalicelib/admin_key.py); the unit tests' stage trusts the gateway.
ADMIN = {"x-api-key": "test-admin-key"}


def call(client: Any, method: str, path: str, body: Any = None, **headers: str) -> tuple[int, Any]:
    """One request through chalice.test.Client; returns (status, decoded JSON body)."""
    kwargs: dict[str, Any] = {"headers": {**JSON, **headers}}
    if body is not None:
        kwargs["body"] = body if isinstance(body, (str, bytes)) else json.dumps(body)
    response = getattr(client.http, method.lower())(path, **kwargs)
    return response.status_code, json.loads(response.body) if response.body else None


# A run accepts readings only from the sensors it declared: the ids the tests post readings with.
TEST_SENSORS = ("s", *(f"s{i}" for i in range(10)), "s-1", "s-2", "s-9", "a", "b")


def start_run(
    client: Any, user: str = "alice", sensors: int = 2, duration: int = 60, interval: int = 1
) -> Any:
    """A run of `sensors` sensors named sensor-1..sensor-N, plus TEST_SENSORS."""
    status, run = call(
        client,
        "POST",
        "/api/runs/start",
        {
            "sensorIds": [*(f"sensor-{i}" for i in range(1, sensors + 1)), *TEST_SENSORS],
            "duration": duration,
            "interval": interval,
        },
        **{"X-User": user},
    )
    assert status == 201, run
    return run


def http(method: str, url: str, body: Any = None, **headers: str) -> tuple[int, Any, dict[str, str]]:
    """One real HTTP request; returns (status, decoded JSON body or None, headers)."""
    import urllib.error
    import urllib.request

    data: bytes | None = None
    if isinstance(body, bytes):
        data = body
    elif isinstance(body, str):
        data = body.encode()
    elif body is not None:
        data = json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method, headers={**JSON, **headers})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            status, raw, response_headers = response.status, response.read(), dict(response.headers)
    except urllib.error.HTTPError as error:
        status, raw, response_headers = error.code, error.read(), dict(error.headers)
    try:
        decoded = json.loads(raw) if raw else None
    except ValueError:
        decoded = raw
    return status, decoded, response_headers
