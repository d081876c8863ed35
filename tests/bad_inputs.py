"""A sweep of malformed requests over every route: each must get a 4xx JSON error (or a 2xx).

`write_cases` and `BAD_QUERIES` only ask for no 5xx; `rule_cases` also says which 4xx and
what its message must name.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from urllib.parse import quote

UNKNOWN_RUN = "00000000-0000-4000-8000-000000000000"
# JSON nested far past any limit (and past Python's recursion limit).
DEEP = "[" * 1000 + "]" * 1000
DEEP_OBJECTS = '{"a": ' * 1000 + "1" + "}" * 1000


def _digits_of(zero: int, text: str) -> str:
    return text.translate({ord(d): zero + int(d) for d in "0123456789"})


def _fullwidth(text: str) -> str:
    """The same text in full-width digits (U+FF10-FF19), which int() and str.isdigit() take."""
    return _digits_of(0xFF10, text)


def _arabic_indic(text: str) -> str:
    return _digits_of(0x0660, text)


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
    '{"sensorIds": ' + DEEP + ', "duration": 10, "interval": 1}',
    '{"params": {"sensorIds": ["a"], "duration": 10, "interval": 1, "x": ' + DEEP_OBJECTS + "}}",
    '{"sensorId": "s", "reading": 1, "x": ' + DEEP + "}",
    '[{"sensorId": "s", "reading": 1, "x": ' + DEEP_OBJECTS + "}]",
    '{"status": "FAILED", "x": ' + DEEP + "}",
    '{"sensorId": "s1\\n", "reading": 1}',
    '{"sensorId": "s1", "type": "temperature\\n", "reading": 1}',
    '{"sensorIds": ["s1\\n"], "duration": 10, "interval": 1}',
    '{"sensorId": "s", "reading": 1, "timestamp": "' + _fullwidth("1700000000000") + '"}',
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
]


def write_cases() -> Iterator[tuple[str, str, str, dict[str, str]]]:
    """(method, path, body, headers) for every route x body x header set."""
    for (method, path), body, headers in itertools.product(ROUTES, BAD_BODIES, BAD_HEADERS):
        yield method, path, body, {"Content-Type": "application/json", **headers}


# ---- requests refused with a given status and a message naming the problem ----------


@dataclass(frozen=True)
class Rule:
    """One request, the status it must get, and text its `message` must contain."""

    method: str
    path: str
    status: int
    says: str
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)

    @property
    def over_http(self) -> bool:
        """HTTP cannot carry a header value with a line break or outside Latin-1, and
        servers drop the spaces around one."""
        return all(v.isascii() and v.isprintable() and v == v.strip() for v in self.headers.values())


def run_id_lookalikes(run_id: str) -> list[str]:
    """Not a run id, though each looks like `run_id`: refused the same way wherever a run id goes."""
    return [
        run_id + "\n",
        "{" + run_id + "}",
        _fullwidth(run_id),
        _arabic_indic(run_id),
        run_id.replace("-", ""),
        "urn:uuid:" + run_id,
        " " + run_id,
    ]


RUN_ID_LOOKALIKES = run_id_lookalikes(UNKNOWN_RUN)
# Each must be refused as an integer (limits) or as epoch milliseconds (timestamps).
NOT_INTEGERS: list[str] = [
    "1_0",
    _fullwidth("10"),
    _arabic_indic("10"),
    "+5",
    " 5",
    "5 ",
    "5\n",
    "0x10",
    "1e1",
]
NOT_EPOCH_MS: list[str] = [
    _fullwidth("1700000000000"),
    _arabic_indic("1700000000000"),
    "1_700_000_000_000",
    "+1700000000000",
    " 1700000000000",
    "1700000000000\n",
    "2024-01-01T00:00:0" + _fullwidth("0"),
    _fullwidth("2024") + "-01-01",
    "2024-01-01\u00e910:00",  # fromisoformat takes any character between date and time
    "2024-01-01110:00",  # ... a digit too: this would be 10:00
    " 2024-01-01T00:00:00Z",
]

BODY_ROUTES: list[tuple[str, str]] = [
    ("POST", "/api/runs/start"),
    ("POST", f"/api/runs/{UNKNOWN_RUN}/finish"),
    ("POST", "/api/sensors/data"),
    ("POST", "/sensors/data"),
]
READING_ROUTES: list[str] = ["/api/sensors/data", "/sensors/data"]

# Refused by any route that takes a body, whatever shape that route expects: nested past what
# the parser takes (a body of the route's own shape says so; another shape is refused for that).
ANY_BODY_RULES: list[tuple[bytes, str]] = [
    *(
        (body.encode(), "")
        for body in (
            '{"sensorIds": ' + DEEP + ', "duration": 10, "interval": 1}',
            '{"params": {"sensorIds": ["a"], "duration": 10, "interval": 1, "x": ' + DEEP + "}}",
            '{"params": ' + DEEP_OBJECTS + "}",
            '{"sensorId": "s", "reading": 1, "x": ' + DEEP + "}",
            '[{"sensorId": "s", "reading": 1, "x": ' + DEEP_OBJECTS + "}]",
            '{"status": "FAILED", "x": ' + DEEP + "}",
        )
    ),
    (b'{"sensorId": "s\xff1", "reading": 1}', "not valid UTF-8: byte 0xff at position 15"),
    (b'{"sensorIds": ["s\xff1"], "duration": 10, "interval": 1}', "not valid UTF-8"),
    (b'{"status": "FAILED", "errorMessage": "caf\xe9"}', "not valid UTF-8"),
    (b'{"sensorId": "s", "reading": 1, "note": "\xed\xa0\x80"}', "not valid UTF-8"),  # a UTF-16 half
    (b'{"sensorId": "s", "reading": 1, "x": "\xe2\x82"}', "not valid UTF-8"),  # cut short
]

# Refused by the reading routes: (body, what the message names).
READING_RULES: list[tuple[dict[str, object], str]] = [
    ({"sensorId": "s1\n", "reading": 1}, "$.sensorId"),
    ({"sensorId": "s1", "type": "temperature\n", "reading": 1}, "$.type"),
    *(({"sensorId": "s", "reading": 1, "runId": v}, "$.runId must be a run id") for v in RUN_ID_LOOKALIKES),
    *(
        ({"sensorId": "s", "reading": 1, "timestamp": v}, "$.timestamp must be ISO-8601 or epoch")
        for v in NOT_EPOCH_MS
    ),
]
START_RULES: list[tuple[dict[str, object], str]] = [
    ({"sensorIds": ["s1\n"], "duration": 10, "interval": 1}, "$.sensorIds[0]"),
    ({"params": {"sensorIds": ["s1", "s1\n"], "duration": 10, "interval": 1}}, "$.sensorIds[1]"),
]
# What a page on any site may POST without a CORS preflight, and other types that are not JSON.
NOT_JSON_TYPES: list[str] = [
    "text/plain",
    "text/plain;charset=UTF-8",
    "application/x-www-form-urlencoded",
    "multipart/form-data; boundary=x",
    "text/json",
]
MAX_BODY = 1024 * 1024
GOOD_READING = b'{"sensorId": "s", "reading": 1}'
GOOD_START = b'{"sensorIds": ["s"], "duration": 10, "interval": 1}'


def _q(value: str) -> str:
    return quote(value, safe="")


def rule_cases() -> Iterator[Rule]:
    for (method, path), (body, says) in itertools.product(BODY_ROUTES, ANY_BODY_RULES):
        yield Rule(method, path, 400, says, body, {"Content-Type": "application/json"})
    json_headers = {"Content-Type": "application/json"}
    for path in READING_ROUTES:
        for reading, says in READING_RULES:
            yield Rule("POST", path, 400, says, json.dumps(reading).encode(), json_headers)
            in_batch = says.replace("$.", "$[1].")
            yield Rule(
                "POST",
                path,
                400,
                in_batch,
                json.dumps([{"sensorId": "s", "reading": 1}, reading]).encode(),
                json_headers,
            )
        for value in RUN_ID_LOOKALIKES:
            yield Rule(
                "POST",
                path,
                400,
                "X-Run-Id must be a run id",
                GOOD_READING,
                {**json_headers, "X-Run-Id": value},
            )
        yield Rule("POST", path, 400, "X-User must be", GOOD_READING, {**json_headers, "X-User": "bob\n"})
    for start, says in START_RULES:
        yield Rule("POST", "/api/runs/start", 400, says, json.dumps(start).encode(), json_headers)
    yield Rule(
        "POST", "/api/runs/start", 400, "X-User must be", GOOD_START, {**json_headers, "X-User": "bob\n"}
    )
    for value in RUN_ID_LOOKALIKES:
        yield Rule("GET", f"/api/runs/{_q(value)}", 404, "not found")
        yield Rule("POST", f"/api/runs/{_q(value)}/finish", 404, "not found", b"{}", json_headers)
        yield Rule("GET", f"/api/sensors/data?runId={_q(value)}", 400, "runId must be a run id")
        yield Rule("GET", f"/api/reports/download?runId={_q(value)}", 400, "runId must be a run id")
        yield Rule("GET", f"/api/runs/{_q(value)}/readings.csv", 404, "not found")
        yield Rule("GET", f"/api/runs/{_q(value)}/stats", 404, "not found")
    for value in NOT_INTEGERS:
        yield Rule("GET", f"/api/runs?limit={_q(value)}", 400, "limit must be an integer between 1 and 100")
        yield Rule("GET", f"/api/sensors/data?sensorId=s&limit={_q(value)}", 400, "limit must be an integer")
    for value, name in itertools.product(NOT_EPOCH_MS, ("from", "to", "startDate", "endDate")):
        said = "from" if name in ("from", "startDate") else "to"
        yield Rule(
            "GET", f"/sensors/data?sensorId=s&{name}={_q(value)}", 400, f"{said} must be ISO-8601 or epoch"
        )
    for query in (
        "sensorId=s&from=1700000000001&to=1700000000000",
        "sensorId=s&startDate=2024-01-02&endDate=2024-01-01",
        f"runId={UNKNOWN_RUN}&from=2024-01-01T00:00:00.001Z&to=2024-01-01T00:00:00Z",
    ):
        yield Rule("GET", f"/api/sensors/data?{query}", 400, "is later than to")
    yield Rule("GET", "/api/sensors/data?sensorId=s1%0A", 400, "sensorId must be")
    yield Rule("GET", "/api/sensors/data?sensorId=s&type=temperature%0A", 400, "type must be")
    yield Rule("GET", "/api/runs?user=bob%0A", 400, "user must be")
    # The HTTP surface every route shares (chalicelib/http.py).
    for (method, path), content_type in itertools.product(BODY_ROUTES, NOT_JSON_TYPES):
        says = f"must be Content-Type: application/json; got {content_type!r}"
        yield Rule(method, path, 415, says, GOOD_START, {"Content-Type": content_type})
    for method, path in BODY_ROUTES:
        yield Rule(method, path, 415, "no Content-Type was sent", GOOD_START, {"Content-Type": ""})
        yield Rule(method, path, 413, f"the limit is {MAX_BODY} bytes", b" " * (MAX_BODY + 1), json_headers)
        yield Rule("DELETE", path, 405, f"DELETE is not allowed on {path.replace(UNKNOWN_RUN, '{run_id}')}")
    yield Rule("GET", "/api/runs/start", 405, "allowed: POST")
    yield Rule("POST", "/api/runs/can-start", 405, "allowed: GET", b"{}", json_headers)
