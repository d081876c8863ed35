"""What counts as an id, an integer, a timestamp and a JSON body: each rule, on its own."""

from __future__ import annotations

import inspect
import re
import sys
from urllib.parse import quote

import pytest

from chalicelib import schemas
from chalicelib.schemas import BadRequest, NotFound, ValidationFailed
from tests.bad_inputs import NOT_EPOCH_MS, NOT_INTEGERS, UNKNOWN_RUN, run_id_lookalikes
from tests.helpers import call, post_readings, start_run

T0 = 1_700_000_000_000  # 2023-11-14T22:13:20Z


def nested(levels: int) -> str:
    """A reading whose extra field makes the body `levels` deep (the reading itself is 1)."""
    return '{"sensorId": "s", "reading": 1, "x": ' + "[" * (levels - 1) + "]" * (levels - 1) + "}"


# ---- ids, types and users match their pattern in full ---------------------------


@pytest.mark.parametrize(
    ("pattern", "good"),
    [
        (schemas.SENSOR_ID_PATTERN, "s1"),
        (schemas.TYPE_PATTERN, "temperature"),
        (schemas.USER_PATTERN, "alice"),
        (schemas.RUN_ID_PATTERN, UNKNOWN_RUN),
    ],
)
def test_patterns_end_at_the_end_of_the_string(pattern, good):
    assert re.search(pattern, good)
    assert not re.search(pattern, good + "\n")  # a bare `$` would allow this
    assert not re.search(pattern, good + "\n\n")
    assert not re.search(pattern, "\n" + good)


def test_s1_and_s1_newline_are_not_two_sensors(client):
    assert post_readings(client, None, {"sensorId": "s1", "reading": 1})[0] == 201
    code, body = post_readings(client, None, {"sensorId": "s1\n", "reading": 2})
    assert code == 400 and "$.sensorId" in body["message"], body
    code, body = call(client, "GET", "/api/sensors/data?sensorId=s1%0A")
    assert code == 400 and body["message"].startswith("sensorId must be"), body
    readings = call(client, "GET", "/api/sensors/data?sensorId=s1")[1]["items"]
    assert [(r["sensorId"], r["reading"]) for r in readings] == [("s1", 1.0)]


def test_types_and_users_with_a_trailing_newline_are_refused(client):
    code, body = post_readings(client, None, {"sensorId": "s", "type": "temperature\n", "reading": 1})
    assert code == 400 and "$.type" in body["message"], body
    code, body = post_readings(client, None, {"sensorId": "s", "reading": 1}, **{"X-User": "bob\n"})
    assert code == 400 and body["message"].startswith("X-User must be"), body
    code, body = call(client, "GET", "/api/sensors/data?sensorId=s&type=temperature%0A")
    assert code == 400 and body["message"].startswith("type must be"), body
    code, body = call(client, "GET", "/api/runs?user=bob%0A")
    assert code == 400 and body["message"].startswith("user must be"), body
    code, body = call(
        client,
        "POST",
        "/api/runs/start",
        {"sensorIds": ["s1\n"], "duration": 10, "interval": 1},
        **{"X-User": "alice"},
    )
    assert code == 400 and "$.sensorIds[0]" in body["message"], body


# ---- run ids: any letter case, nothing else --------------------------------------


def test_an_upper_case_run_id_is_the_same_run_on_every_route(client):
    run_id = start_run(client)["id"]
    upper = run_id.upper()
    code, run = call(client, "GET", f"/api/runs/{upper}")
    assert code == 200 and run["id"] == run_id, run
    assert post_readings(client, None, {"sensorId": "s", "reading": 1}, **{"X-Run-Id": upper})[0] == 201
    assert post_readings(client, None, {"sensorId": "s", "reading": 2, "runId": upper})[0] == 201
    readings = call(client, "GET", f"/api/sensors/data?runId={upper}&order=asc")[1]["items"]
    assert [(r["runId"], r["reading"]) for r in readings] == [(run_id, 1.0), (run_id, 2.0)]
    code, finished = call(client, "POST", f"/api/runs/{upper}/finish", {"status": "SUCCESS"})
    assert code == 200 and finished["id"] == run_id and finished["status"] == "SUCCESS", finished
    assert call(client, "GET", f"/api/runs/{run_id}")[1]["status"] == "SUCCESS"


def test_run_id_lookalikes_are_refused_the_same_way_everywhere(client):
    run_id = start_run(client)["id"]
    # Each looks like a run that exists, so that only the rule can refuse it.
    for lookalike in run_id_lookalikes(run_id):
        with pytest.raises(NotFound):
            schemas.path_run_id(lookalike)  # chalice.test.Client would drop a "\n" from a path
        path = quote(lookalike, safe="")
        assert call(client, "GET", f"/api/runs/{path}")[0] == 404, lookalike
        assert call(client, "POST", f"/api/runs/{path}/finish", {"status": "FAILED"})[0] == 404, lookalike
        code, body = post_readings(client, None, {"sensorId": "s", "reading": 1}, **{"X-Run-Id": lookalike})
        assert (code, body["message"]) == (400, "X-Run-Id must be a run id (UUID)"), lookalike
        code, body = post_readings(client, None, {"sensorId": "s", "reading": 1, "runId": lookalike})
        assert (code, body["message"]) == (400, "$.runId must be a run id (UUID)"), lookalike
        code, body = call(client, "GET", f"/api/sensors/data?runId={path}")
        assert (code, body["message"]) == (400, "runId must be a run id (UUID)"), lookalike
    assert call(client, "GET", f"/api/runs/{run_id}")[1]["status"] == "RUNNING"


def test_run_ids_are_lower_cased_wherever_they_enter():
    upper = UNKNOWN_RUN.upper().replace("0", "A")
    assert schemas.path_run_id(upper) == upper.lower()
    assert schemas.run_id_value(upper, source="runId") == upper.lower()


# ---- integers and epoch milliseconds are ASCII digits ----------------------------


def test_a_limit_is_ascii_digits_only(client):
    for value in NOT_INTEGERS:
        code, body = call(client, "GET", f"/api/runs?limit={quote(value, safe='')}")
        assert code == 400, (value, body)
        assert body["message"] == f"limit must be an integer between 1 and 100, got {value!r}"


def test_limit_1_0_is_400_and_10_is_fine(client):
    assert call(client, "GET", "/api/runs?limit=1_0")[0] == 400
    assert call(client, "GET", "/api/sensors/data?sensorId=s&limit=1_0")[0] == 400
    assert call(client, "GET", "/api/runs?limit=10")[0] == 200
    assert call(client, "GET", "/api/runs?limit=010")[0] == 200
    with pytest.raises(BadRequest):  # more digits than int() converts is no integer either
        schemas.int_param({"limit": "1" * 5000}, "limit", (1, 10, 1))


def test_a_timestamp_is_ascii_digits_or_strict_iso():
    for value in NOT_EPOCH_MS:
        with pytest.raises(BadRequest, match="must be ISO-8601 or epoch milliseconds"):
            schemas.timestamp_value(value, name="from")


def test_iso_parsing_takes_ascii_and_a_real_separator_only():
    for text in (
        "2023-11-14T22:13:2\uff10Z",
        "2023-11-14\u00e922:13:20",  # fromisoformat's "any character" between date and time
        "20231114122:13:20",  # ... a digit too: 12:13:20 in fromisoformat's reading
        " 2023-11-14",
        "2023-11-14 ",
        "2023-W46-2",
    ):
        with pytest.raises(ValueError):
            schemas.parse_iso_ms(text)
    for text, epoch_ms in (
        (str(T0), T0),
        ("2023-11-14T22:13:20Z", T0),
        ("2023-11-14T22:13:20.000Z", T0),
        ("2023-11-14t22:13:20+00:00", T0),
        ("2023-11-14T23:13:20+01:00", T0),
        ("2023-11-14 22:13:20", T0),
        ("20231114T221320Z", T0),
        ("2023-11-14", T0 - (22 * 3600 + 13 * 60 + 20) * 1000),
    ):
        assert schemas.timestamp_value(text, name="from") == epoch_ms, text


def test_a_reading_timestamp_in_full_width_digits_is_refused(client):
    full_width = str(T0).translate({ord(d): 0xFF10 + int(d) for d in "0123456789"})
    code, body = post_readings(client, None, {"sensorId": "s", "reading": 1, "timestamp": full_width})
    assert code == 400 and body["message"].startswith("$.timestamp must be ISO-8601 or epoch"), body


# ---- time ranges -----------------------------------------------------------------


def test_from_later_than_to_is_400_while_from_equal_to_is_fine(client):
    assert post_readings(client, None, {"sensorId": "s", "reading": 1, "timestamp": T0})[0] == 201
    code, body = call(client, "GET", f"/api/sensors/data?sensorId=s&from={T0 + 1}&to={T0}")
    assert code == 400, body
    assert body == {
        "error": "BadRequest",
        "message": "from (2023-11-14T22:13:20.001Z) is later than to (2023-11-14T22:13:20.000Z)",
    }
    code, body = call(client, "GET", "/api/sensors/data?sensorId=s&startDate=2023-11-15&endDate=2023-11-14")
    assert code == 400 and "is later than to" in body["message"], body
    code, body = call(client, "GET", f"/api/sensors/data?sensorId=s&from={T0}&to={T0}")
    assert code == 200 and body["count"] == 1, body


# ---- the body: UTF-8, and not nested without end ---------------------------------


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", "/api/runs/start"),
        ("POST", f"/api/runs/{UNKNOWN_RUN}/finish"),
        ("POST", "/api/sensors/data"),
        ("POST", "/sensors/data"),
    ],
)
def test_json_nested_a_thousand_deep_is_400_on_every_body_route(client, method, path):
    deep = "[" * 1000 + "]" * 1000
    for body in (
        '{"sensorIds": ' + deep + ', "duration": 10, "interval": 1}',
        '{"params": {"x": ' + deep + "}}",
        '{"sensorId": "s", "reading": 1, "x": ' + deep + "}",
        '{"status": "FAILED", "x": ' + deep + "}",
    ):
        code, answer = call(client, method, path, body)
        assert code == 400, (body[:40], answer)
        assert answer == {"error": "ValidationError", "message": "body is nested too deeply"}


def test_ordinary_nesting_and_brackets_in_strings_are_fine(client):
    assert post_readings(client, None, nested(32))[0] == 201
    in_strings = {"sensorId": "s", "reading": 1, "note": "[{" * 40, "more": ['"]]', "\\[[[" * 20]}
    assert post_readings(client, None, in_strings)[0] == 201


def test_a_stack_already_deep_still_gives_a_400(monkeypatch):
    """However deep the stack already is, JSON nested past what it can take is a 400."""
    depth = len(inspect.stack(0))
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(depth + 40)
    try:
        with pytest.raises(ValidationFailed, match="nested too deeply"):
            schemas.decode(nested(200).encode(), schemas.ReadingIn)
    finally:
        sys.setrecursionlimit(limit)


def test_a_body_that_is_not_utf8_is_400_naming_the_byte(client):
    for body, message in (
        (b'{"sensorId": "s\xff1", "reading": 1}', "body is not valid UTF-8: byte 0xff at position 15"),
        (
            b'{"sensorId": "s", "reading": 1, "x": "caf\xe9"}',
            "body is not valid UTF-8: byte 0xe9 at position 41",
        ),
        (
            b'{"sensorId": "s", "reading": 1, "x": "\xe2\x82"}',
            "body is not valid UTF-8: byte 0xe2 at position 38",
        ),
    ):
        code, answer = post_readings(client, None, body)
        assert (code, answer) == (400, {"error": "ValidationError", "message": message})
    # Valid UTF-8 beyond ASCII is welcome, in a known field and in an unknown one.
    assert (
        post_readings(client, None, '{"sensorId": "s", "reading": 1, "x": "caf\u00e9 \U0001f600"}'.encode())[
            0
        ]
        == 201
    )
    run_id = start_run(client)["id"]
    body = '{"status": "FAILED", "errorMessage": "d\u00e9j\u00e0 vu"}'.encode()
    code, run = call(client, "POST", f"/api/runs/{run_id}/finish", body)
    assert code == 200 and run["errorMessage"] == "d\u00e9j\u00e0 vu", run


def test_a_finish_status_is_ascii(client):
    run = start_run(client, user="ascii")
    status, body = call(client, "POST", f"/api/runs/{run['id']}/finish", {"status": "\u017fuccess"})
    assert status == 400 and "status must be" in body["message"]
    assert call(client, "POST", f"/api/runs/{run['id']}/finish", {"status": "success"})[0] == 200
