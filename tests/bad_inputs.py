"""A sweep of malformed requests over every route: each must get a 4xx JSON error (or a 2xx)."""

from __future__ import annotations

import itertools
from collections.abc import Iterator

UNKNOWN_RUN = "00000000-0000-4000-8000-000000000000"

BAD_BODIES: list[str] = [
    "",
    "{",
    "null",
    "[]",
    "123",
    '"text"',
    "{}",
    "[{}]",
    '{"sensorIds": "x"}',
    '{"sensorIds": [], "duration": 1, "interval": 1}',
    '{"sensorIds": ["a"], "duration": 0, "interval": 1}',
    '{"sensorIds": ["a"], "duration": 86401, "interval": 1}',
    '{"sensorIds": ["a"], "duration": "10", "interval": 1}',
    '{"sensorIds": ["a", "a"], "duration": 10, "interval": 1}',
    '{"sensorIds": [' + ",".join(f'"s{i}"' for i in range(101)) + '], "duration": 10, "interval": 1}',
    '{"params": "x"}',
    '{"params": {"sensorIds": [null]}}',
    '{"status": "BOGUS"}',
    '{"status": 5}',
    '{"sensorId": "s", "reading": "27.4"}',
    '{"sensorId": "s", "reading": true}',
    '{"sensorId": "s", "reading": NaN}',
    '{"sensorId": "s", "reading": Infinity}',
    '{"sensorId": "s", "reading": 1e999}',
    '{"sensorId": "s", "reading": 1e-300}',
    '{"sensorId": "s"}',
    '{"sensorId": "s", "type": "temperature"}',
    '{"sensorId": "s", "reading": 1, "temperature": 2}',
    '{"sensorId": "s", "reading": 1, "timestamp": "yesterday"}',
    '{"sensorId": "s", "reading": 1, "timestamp": 12}',
    '{"sensorId": "s", "reading": 1, "timestamp": true}',
    '{"sensorId": "s", "reading": 1, "runId": "nope"}',
    '{"sensorId": "", "reading": 1}',
    '{"sensorId": "a/b", "reading": 1}',
    '{"sensorId": "' + "x" * 100 + '", "reading": 1}',
    '{"sensorId": ["s"], "reading": 1}',
    '{"sensorId": "s", "reading": 1, "type": "<script>"}',
    "[" + ",".join(['{"sensorId": "s", "reading": 1}'] * 501) + "]",
    '[{"sensorId": "s", "reading": 1}, {"sensorId": "s", "reading": "x"}]',
    '{"sensorId": "s", "reading": 1}' + "x",
    "\u00e9\u00e8" * 10,
    "[" * 5000,
]

BAD_HEADERS: list[dict[str, str]] = [
    {},
    {"X-User": "a b"},
    {"X-User": "x" * 65},
    {"X-User": "\u00e9l\u00e8ve"},
    {"X-Run-Id": "not-a-uuid"},
    {"X-Run-Id": UNKNOWN_RUN},
]

ROUTES: list[tuple[str, str]] = [
    ("POST", "/api/runs/start"),
    ("POST", f"/api/runs/{UNKNOWN_RUN}/finish"),
    ("POST", "/api/runs/x%27%3B--/finish"),
    ("POST", "/api/sensors/data"),
    ("POST", "/sensors/data"),
]

BAD_QUERIES: list[str] = [
    "/api/runs?limit=-1",
    "/api/runs?limit=1e3",
    "/api/runs?nextKey=%00%01",
    "/api/runs?lastKey=eyJ9.eyJ9",
    "/api/runs?status=running",
    "/api/runs?user=%00",
    f"/api/runs/{UNKNOWN_RUN}",
    "/api/runs/..%2F..%2Fetc",
    "/api/sensors/data",
    "/api/sensors/data?runId=1&sensorId=2",
    "/api/sensors/data?sensorId=s&from=2026-13-45",
    "/api/sensors/data?sensorId=s&from=-5",
    "/api/sensors/data?sensorId=s&limit=%F0%9F%98%80",
    "/sensors/data?sensorId=s&nextKey=a.b",
    "/infra/latest-deployment",
]


def write_cases() -> Iterator[tuple[str, str, str, dict[str, str]]]:
    """(method, path, body, headers) for every route x body x header set."""
    for (method, path), body, headers in itertools.product(ROUTES, BAD_BODIES, BAD_HEADERS):
        yield method, path, body, {"Content-Type": "application/json", **headers}
