"""The HTTP surface every route shares (chalicelib/http.py, iot_playground/local/gateway.py):
JSON-only POSTs, bounded bodies, one error format for what Chalice and `chalice local` answer
themselves, CORS for a list of origins, and `/infra/latest-deployment` as a 200."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from http.client import HTTPConnection
from typing import Any
from urllib.parse import urlsplit

import pytest

from tests.conftest import LocalStack
from tests.helpers import JSON, ROOT, call, http, start_run

UNKNOWN_RUN = "00000000-0000-4000-8000-000000000000"
MiB = 1024 * 1024
GOOD_START = {"sensorIds": ["surface-probe"], "duration": 10, "interval": 1}
# What a page on any site may POST without a preflight (a "simple" request), and other non-JSON types.
NOT_JSON = [
    "text/plain",
    "text/plain;charset=UTF-8",
    "application/x-www-form-urlencoded",
    "multipart/form-data; boundary=x",
    "application/jsonp",
    "text/json",
    "application/json-seq",
]
SIMPLE_AND_JSON = ["application/json", "application/json; charset=utf-8", "Application/JSON;charset=UTF-8"]
ALLOWED = "http://127.0.0.1:4200"
OTHER_ALLOWED = "https://frontend.example.com"
NOT_ALLOWED = "http://127.0.0.2:4200"


def post_routes() -> list[str]:
    from app import app

    return [
        path.replace("{run_id}", UNKNOWN_RUN) for path, methods in app.routes.items() if "POST" in methods
    ]


def assert_error(response: Any, status: int, code: str, says: str = "") -> dict[str, Any]:
    assert response.status_code == status, (response.status_code, response.body[:300])
    assert response.headers["Content-Type"] == "application/json"
    body: dict[str, Any] = json.loads(response.body)
    assert set(body) == {"error", "message"} and body["error"] == code, body
    assert says in body["message"], body
    return body


# ---- JSON only on POST ---------------------------------------------------------------------


def test_every_post_route_refuses_bodies_that_are_not_json(client):
    run = start_run(client)
    routes = post_routes()
    assert {"/api/runs/start", "/api/sensors/data", "/sensors/data", "/api/runs/interrupt-all"} <= set(routes)
    for path in [*routes, f"/api/runs/{run['id']}/finish"]:
        for content_type in NOT_JSON:
            response = client.http.post(
                path, headers={"Content-Type": content_type}, body=json.dumps(GOOD_START)
            )
            assert_error(response, 415, "UnsupportedMediaType", f"got {content_type!r}")
        response = client.http.post(path, headers={}, body="{}")
        assert_error(response, 415, "UnsupportedMediaType", "no Content-Type was sent")
        response = client.http.post(path, headers={"Content-Type": ""}, body="{}")
        assert_error(response, 415, "UnsupportedMediaType", "no Content-Type was sent")
    # Nothing was changed: the run still runs, and it is the only one.
    assert call(client, "GET", f"/api/runs/{run['id']}")[1]["status"] == "RUNNING"
    assert [r["id"] for r in call(client, "GET", "/api/runs/all")[1]] == [run["id"]]
    assert call(client, "GET", f"/api/sensors/data?runId={run['id']}")[1]["count"] == 0


def test_json_with_parameters_is_accepted(client):
    for content_type in SIMPLE_AND_JSON:
        status, run = call(client, "POST", "/api/runs/start", GOOD_START, **{"Content-Type": content_type})
        assert status == 201, run
        status, _ = call(
            client,
            "POST",
            f"/api/runs/{run['id']}/finish",
            {"status": "SUCCESS"},
            **{"Content-Type": content_type},
        )
        assert status == 200


def test_get_routes_do_not_ask_for_a_content_type(client):
    for headers in ({}, {"Content-Type": "application/json"}):
        assert client.http.get("/api/runs/can-start", headers=headers).status_code == 200


# ---- bounded bodies ------------------------------------------------------------------------


def test_a_body_over_one_mib_is_413_before_it_is_parsed(client, monkeypatch):
    import msgspec

    def must_not_run(*_: Any, **__: Any) -> Any:
        raise AssertionError("the body was parsed")

    run = start_run(client)
    # Valid JSON past the limit: a parser would accept it, and the answer would be a 400 or a 201.
    padding = " " * (MiB - len(json.dumps(GOOD_START)) + 1)
    big = json.dumps(GOOD_START) + padding
    assert len(big) == MiB + 1
    monkeypatch.setattr(msgspec.json, "decode", must_not_run)
    for path in ("/api/runs/start", "/api/sensors/data", "/sensors/data", f"/api/runs/{run['id']}/finish"):
        response = client.http.post(path, headers=JSON, body=big)
        assert_error(response, 413, "PayloadTooLarge", f"{MiB + 1} bytes; the limit is {MiB} bytes")
        # Announced by Content-Length: refused without looking at the body.
        response = client.http.post(path, headers={**JSON, "Content-Length": str(50 * MiB)}, body="{}")
        assert_error(response, 413, "PayloadTooLarge", f"{50 * MiB} bytes")
    monkeypatch.undo()
    # Exactly the limit is not refused for its size (this one is not valid JSON: a 400).
    response = client.http.post("/api/runs/start", headers=JSON, body="[" * MiB)
    assert_error(response, 400, "ValidationError")
    assert len(call(client, "GET", "/api/runs/all")[1]) == 1


def test_body_size_counts_bytes_without_decoding():
    from chalicelib.http import body_size

    assert body_size({"body": None}) == 0
    assert body_size({"body": "é" * 10}) == 20
    assert body_size({"body": b"abc"}) == 3
    for raw in (b"", b"a", b"ab", b"abc", b"abcd" * 1000):
        import base64

        encoded = base64.b64encode(raw).decode()
        assert body_size({"body": encoded, "isBase64Encoded": True}) == len(raw)


# ---- one error format ----------------------------------------------------------------------


def test_a_method_the_route_does_not_serve_is_405_json_with_allow(client):
    response = client.http.request("DELETE", "/api/runs/start", headers={})
    assert_error(response, 405, "MethodNotAllowed", "DELETE is not allowed on /api/runs/start")
    assert response.headers["Allow"] == "POST"
    response = client.http.put(f"/api/runs/{UNKNOWN_RUN}", headers=JSON, body="{}")
    assert_error(response, 405, "MethodNotAllowed")
    response = client.http.get("/api/runs/interrupt-all")
    assert_error(response, 405, "MethodNotAllowed")
    assert response.headers["Allow"] == "POST"
    response = client.http.post("/api/runs/can-start", headers=JSON, body="{}")
    assert_error(response, 405, "MethodNotAllowed", "allowed: GET")
    response = client.http.request("PATCH", "/api/sensors/data", headers=JSON, body="{}")
    assert response.headers["Allow"] == "GET, POST"


def test_what_chalice_answers_itself_is_in_the_api_format(client):
    # Chalice's own content-type check on GET routes, and its Accept check for binary answers.
    response = client.http.get("/api/health", headers={"Content-Type": "text/html"})
    assert_error(response, 415, "UnsupportedMediaType", "text/html")
    response = client.http.get("/api/reports/download", headers={})
    assert_error(response, 400, "BadRequest", "Accept")


def test_chalice_error_bodies_are_rewritten():
    from chalice.app import Response

    from chalicelib.http import in_api_format

    response = in_api_format(
        Response(
            body={"Code": "MethodNotAllowedError", "Message": "Unsupported method: PUT"}, status_code=405
        )
    )
    assert json.loads(response.body) == {"error": "MethodNotAllowed", "message": "Unsupported method: PUT"}
    response = in_api_format(Response(body={"Code": "InternalServerError", "Message": "x"}, status_code=500))
    assert json.loads(response.body)["error"] == "InternalError"
    untouched = {"Code": "x", "Message": "y", "other": 1}
    assert in_api_format(Response(body=untouched)).body == untouched


def test_latest_deployment_is_a_200_saying_there_is_none(client):
    response = client.http.get("/infra/latest-deployment", headers={"Origin": ALLOWED})
    assert response.status_code == 200
    body = json.loads(response.body)
    assert body["success"] is False and isinstance(body["message"], str) and body["message"]
    assert response.headers["Access-Control-Allow-Origin"] == "*"


# ---- CORS ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("setting", "origins"),
    [
        ("", ("*",)),
        ("*", ("*",)),
        (" https://a.example ", ("https://a.example",)),
        (
            "https://a.example/, http://127.0.0.1:4200,https://a.example",
            ("https://a.example", "http://127.0.0.1:4200"),
        ),
    ],
)
def test_cors_origin_takes_a_list(monkeypatch, setting, origins):
    from chalicelib.settings import load_settings

    monkeypatch.setenv("CORS_ORIGIN", setting)
    assert load_settings().cors_origins == origins


@pytest.mark.parametrize(
    "setting", ["*,https://a.example", "a.example", "https://a.example/app", ",", "https://a b"]
)
def test_cors_origin_refuses_what_never_matches_an_origin(monkeypatch, setting):
    from chalicelib.settings import ConfigurationError, load_settings

    monkeypatch.setenv("CORS_ORIGIN", setting)
    with pytest.raises(ConfigurationError, match="CORS_ORIGIN"):
        load_settings()


def test_cors_answers_the_matching_origin():
    from chalicelib.http import apply_cors, preflight

    listed = (ALLOWED, OTHER_ALLOWED)
    for origin, expected in (
        (ALLOWED, ALLOWED),
        (OTHER_ALLOWED, OTHER_ALLOWED),
        (NOT_ALLOWED, None),
        (None, None),
    ):
        headers: dict[str, Any] = {"Access-Control-Allow-Origin": "fixed", "Vary": "Accept"}
        apply_cors(headers, listed, origin)
        assert headers.get("Access-Control-Allow-Origin") == expected
        assert headers["Vary"] == "Accept, Origin"
    answer = preflight(listed, ALLOWED, ["GET", "POST", "OPTIONS"])
    assert answer.status_code == 200
    assert answer.headers["Access-Control-Allow-Origin"] == ALLOWED
    assert answer.headers["Access-Control-Allow-Methods"] == "GET,POST,OPTIONS"
    assert answer.headers["Access-Control-Max-Age"] == "600"
    assert "Access-Control-Allow-Origin" not in preflight(listed, NOT_ALLOWED, ["GET"]).headers
    headers = {}
    apply_cors(headers, ("*",), NOT_ALLOWED)
    assert headers["Access-Control-Allow-Origin"] == "*" and "Vary" not in headers


APP_PROBE = """
import json, os, sys
from chalice.deploy.swagger import CFNSwaggerGenerator
from chalice.test import Client
import app

routes = app.app.routes
swagger = CFNSwaggerGenerator().generate_swagger(app.app)
options = {path: ops.get("options", {}).get("x-amazon-apigateway-integration", {}).get("type")
           for path, ops in swagger["paths"].items()}
answers = {}
exposed = {}
with Client(app.app) as client:
    for origin in sys.argv[1:]:
        r = client.http.get("/api/health", headers={"Origin": origin})
        answers[origin] = [r.headers.get("Access-Control-Allow-Origin"), r.headers.get("Vary")]
        exposed[origin] = r.headers.get("Access-Control-Expose-Headers")
print(json.dumps({
    "options": options,
    "cors": sorted({str(e.cors is not None) for methods in routes.values() for e in methods.values()}),
    "answers": answers,
    "exposed": exposed,
}))
"""


def probe_app(cors_origin: str, *origins: str) -> dict[str, Any]:
    """The app as `chalice package` and Lambda load it under this CORS_ORIGIN (a fresh process)."""
    env = {**os.environ, "CORS_ORIGIN": cors_origin}
    result = subprocess.run(
        [sys.executable, "-c", APP_PROBE, *origins],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    probed: dict[str, Any] = json.loads(result.stdout.strip().splitlines()[-1])
    return probed


@pytest.mark.slow
def test_one_origin_keeps_api_gateways_preflight_several_get_the_lambdas():
    single = probe_app(ALLOWED, ALLOWED, NOT_ALLOWED)
    # One origin: API Gateway's mock integration answers preflights with it (as Chalice generates).
    assert set(single["options"].values()) == {"mock"}
    assert single["cors"] == ["True"]
    assert single["answers"] == {ALLOWED: [ALLOWED, "Origin"], NOT_ALLOWED: [None, "Origin"]}
    several = probe_app(f"{ALLOWED},{OTHER_ALLOWED}", ALLOWED, OTHER_ALLOWED, NOT_ALLOWED)
    # Several: every path's OPTIONS goes to the Lambda (aws_proxy), which answers per Origin.
    assert set(several["options"].values()) == {"aws_proxy"}
    assert set(several["options"]) == set(single["options"])
    assert several["cors"] == ["False"]
    assert several["answers"] == {
        ALLOWED: [ALLOWED, "Origin"],
        OTHER_ALLOWED: [OTHER_ALLOWED, "Origin"],
        NOT_ALLOWED: [None, "Origin"],
    }
    # A page on an allowed origin may read a download's file name, an export's continuation
    # and Retry-After, in both modes.
    wanted = {"Content-Disposition", "Retry-After", "X-Export-Complete", "X-Next-Key"}
    for probed, origins in ((single, [ALLOWED]), (several, [ALLOWED, OTHER_ALLOWED])):
        for origin in origins:
            assert set((probed["exposed"][origin] or "").split(",")) == wanted, probed["exposed"]
    assert several["exposed"][NOT_ALLOWED] is None


# ---- over HTTP: `make run` -----------------------------------------------------------------


def raw_exchange(base_url: str, request: bytes, wait: float = 10) -> tuple[bytes, float]:
    """Send raw bytes; the answer as far as the server sent it before closing, and how long that took."""
    parts = urlsplit(base_url)
    started = time.monotonic()
    with socket.create_connection((parts.hostname, parts.port), timeout=wait) as sock:
        sock.sendall(request)
        answer = b""
        while b"\r\n\r\n" not in answer or not answer.endswith(b"}"):
            piece = sock.recv(65536)
            if not piece:
                break
            answer += piece
    return answer, time.monotonic() - started


def status_and_json(answer: bytes) -> tuple[int, dict[str, Any]]:
    head, _, body = answer.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    return status, json.loads(body)


@pytest.mark.e2e
def test_over_http_refusals_are_json(local_stack):
    api = local_stack.base_url
    for content_type in ("text/plain", "application/x-www-form-urlencoded", ""):
        status, body, _ = http("POST", f"{api}/api/runs/start", GOOD_START, **{"Content-Type": content_type})
        assert status == 415 and body["error"] == "UnsupportedMediaType", body
    # No Content-Type header at all.
    parts = urlsplit(api)
    connection = HTTPConnection(parts.hostname, parts.port, timeout=10)
    connection.request("POST", "/api/runs/start", body=json.dumps(GOOD_START).encode())
    answer = connection.getresponse()
    assert answer.status == 415 and json.loads(answer.read())["message"].endswith("no Content-Type was sent")
    connection.close()
    status, body, headers = http("DELETE", f"{api}/api/runs/start")
    assert (status, body["error"], headers["Allow"]) == (405, "MethodNotAllowed", "POST")
    for method in ("TRACE", "QUERY"):  # methods the local server itself has no handler for
        status, body, headers = http(method, f"{api}/api/health")
        assert (status, body["error"], headers["Content-Type"]) == (
            405,
            "MethodNotAllowed",
            "application/json",
        )
    for path in ("/nope", "/api/runs/x/y/z", "/api"):
        status, body, headers = http("GET", f"{api}{path}")
        assert status == 404 and body == {"error": "NotFound", "message": f"no route GET {path}"}
        assert headers["Content-Type"] == "application/json"
    status, body, _ = http("GET", f"{api}/infra/latest-deployment")
    assert status == 200 and body["success"] is False
    assert all(
        r["params"]["sensorIds"] != GOOD_START["sensorIds"] for r in http("GET", f"{api}/api/runs/all")[1]
    )


@pytest.mark.e2e
def test_over_http_a_big_body_is_refused_without_being_read(local_stack):
    api = local_stack.base_url
    # Sent in full: the server reads and drops it, so that the client, still sending, is not cut
    # off (a broken pipe) before it reads the answer.
    big = b'{"sensorId": "s", "reading": 1, "x": "' + b"x" * (8 * MiB) + b'"}'
    status, body, _ = http("POST", f"{api}/api/sensors/data", big)
    assert status == 413 and body["error"] == "PayloadTooLarge", body
    assert str(len(big)) in body["message"]
    # Announced and never sent: 10 GiB would exhaust memory and time if it were read.
    request = (
        b"POST /api/sensors/data HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Content-Length: 10737418240\r\n\r\n"
    )
    answer, took = raw_exchange(api, request)
    assert status_and_json(answer) == (
        413,
        {
            "error": "PayloadTooLarge",
            "message": f"request body is 10737418240 bytes; the limit is {MiB} bytes (1 MiB)",
        },
    )
    assert took < 5
    # A client that waits for 100-continue is refused before it sends the body.
    answer, _ = raw_exchange(api, request.replace(b"\r\n\r\n", b"\r\nExpect: 100-continue\r\n\r\n"))
    assert answer.startswith(b"HTTP/1.1 413")
    # A chunked body is read up to the limit, and no further.
    chunk = b"x" * 65536
    chunked = (b"%x\r\n" % len(chunk) + chunk + b"\r\n") * 17 + b"0\r\n\r\n"
    answer, _ = raw_exchange(
        api,
        b"POST /api/sensors/data HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n" + chunked,
    )
    assert status_and_json(answer) == (
        413,
        {
            "error": "PayloadTooLarge",
            "message": f"request body is {17 * 65536} bytes; the limit is {MiB} bytes (1 MiB)",
        },
    )
    # ... and a small chunked body is read whole.
    reading = b'{"sensorId": "s", "reading": 1}'
    answer, _ = raw_exchange(
        api,
        b"POST /api/sensors/data HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Connection: close\r\nTransfer-Encoding: chunked\r\n\r\n"
        + b"%x\r\n" % len(reading)
        + reading
        + b"\r\n0\r\n\r\n",
    )
    assert status_and_json(answer)[0] == 201
    # The server still answers.
    assert http("GET", f"{api}/api/health")[0] == 200


@pytest.fixture(scope="module")
def listed_origins_stack() -> Iterator[LocalStack]:
    with LocalStack(CORS_ORIGIN=f"{ALLOWED},{OTHER_ALLOWED}") as stack:
        yield stack


def preflight(base_url: str, path: str, origin: str, requested: str) -> tuple[int, dict[str, str]]:
    status, _, headers = http(
        "OPTIONS",
        f"{base_url}{path}",
        None,
        Origin=origin,
        **{"Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": requested},
    )
    return status, headers


@pytest.mark.e2e
def test_over_http_each_listed_origin_gets_itself_back(listed_origins_stack):
    api = listed_origins_stack.base_url
    requested = "content-type,x-user,x-run-id,idempotency-key"
    for origin in (ALLOWED, OTHER_ALLOWED):
        for path in (
            "/api/runs/start",
            "/api/sensors/data",
            "/sensors/data",
            f"/api/runs/{UNKNOWN_RUN}/finish",
        ):
            status, headers = preflight(api, path, origin, requested)
            assert status == 200 and headers["Access-Control-Allow-Origin"] == origin, (path, headers)
            assert "Origin" in headers["Vary"]
            allowed = {h.strip().lower() for h in headers["Access-Control-Allow-Headers"].split(",")}
            assert set(requested.split(",")) <= allowed
            assert "POST" in headers["Access-Control-Allow-Methods"].split(",")
        status, body, headers = http("GET", f"{api}/api/runs/can-start", Origin=origin)
        assert (
            status == 200 and headers["Access-Control-Allow-Origin"] == origin and headers["Vary"] == "Origin"
        )
        # Errors too, whoever answers them: the app, or the local gateway for an unknown route.
        for path, expected in ((f"/api/runs/{UNKNOWN_RUN}", 404), ("/no/such/route", 404)):
            status, body, headers = http("GET", f"{api}{path}", Origin=origin)
            assert (status, headers["Access-Control-Allow-Origin"]) == (expected, origin)
    status, headers = preflight(api, "/api/runs/start", NOT_ALLOWED, requested)
    assert "Access-Control-Allow-Origin" not in headers and headers["Vary"] == "Origin"
    status, body, headers = http("POST", f"{api}/api/runs/start", GOOD_START, Origin=NOT_ALLOWED)
    # Not a browser: the request is served, and the answer does not let a page on that origin read it.
    assert status == 201 and "Access-Control-Allow-Origin" not in headers
    http("POST", f"{api}/api/runs/{body['id']}/finish", {"status": "SUCCESS"})
    status, _, headers = http("GET", f"{api}/api/health")
    assert "Access-Control-Allow-Origin" not in headers
