"""The run viewer's routes, without a browser: content types, assets, the base URL
behind an API Gateway stage, and the absolute run links built from the request."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from app import app
from benchmarks.lambda_event import api_event
from chalicelib import http, viewer

JSON = {"Content-Type": "application/json"}


def header(response: Any, name: str) -> str:
    value: str = {k.lower(): v for k, v in response.headers.items()}[name.lower()]
    return value


def test_page_is_html_referencing_only_its_own_assets(client):
    response = client.http.get("/")
    assert response.status_code == 200
    assert header(response, "Content-Type") == "text/html; charset=utf-8"
    assert "script-src 'self'" in header(response, "Content-Security-Policy")
    page = response.body.decode()
    assert '<base href="/">' in page
    sources = re.findall(r'(?:src|href)="([^"]+)"', page)
    assert not [s for s in sources if "://" in s or s.startswith("//")], "no CDN or other origin"
    for name in viewer.CONTENT_TYPES:
        assert re.search(rf'"viewer/{re.escape(name)}\?v=[0-9a-f]{{12}}"', page), name


@pytest.mark.parametrize(
    ("name", "content_type"),
    [("viewer.js", "text/javascript; charset=utf-8"), ("viewer.css", "text/css; charset=utf-8")],
)
def test_assets_are_served_with_their_content_type(client, name, content_type):
    response = client.http.get(f"/viewer/{name}")
    assert response.status_code == 200
    assert header(response, "Content-Type") == content_type
    assert "max-age" in header(response, "Cache-Control")
    assert len(response.body) > 500


def test_unknown_assets_are_not_found(client):
    for name in ("index.html", "..%2F__init__.py", "nope.js"):
        response = client.http.get(f"/viewer/{name}")
        assert response.status_code == 404
        assert json.loads(response.body)["error"] == "NotFound"


def test_assets_are_read_on_first_use_not_at_import():
    import subprocess
    import sys

    code = "import app, chalicelib.viewer as v; print(v._read.cache_info().currsize)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "0"


@pytest.mark.parametrize(
    ("path", "resource", "prefix"),
    [
        ("/", "/", ""),
        ("/api/", "/", "/api"),
        ("/api", "/", "/api"),
        ("/api/api/runs/start", "/api/runs/start", "/api"),
        ("/v1/api/runs/3f2a/finish", "/api/runs/{run_id}/finish", "/v1"),
        ("/api/runs/3f2a", "/api/runs/{run_id}", ""),
    ],
)
def test_stage_prefix_is_what_precedes_the_route(path, resource, prefix):
    assert http.stage_prefix({"path": path, "resourcePath": resource}) == prefix


def test_page_behind_an_api_gateway_stage_points_its_base_at_the_stage(aws):
    class Context:
        aws_request_id = "lambda-request-1"

    # Requested as /api/ on the gateway: resource "/" under the stage "api".
    event = api_event("GET", "/", headers={"Host": "abc.execute-api.eu-central-1.amazonaws.com"})
    response = app(event, Context())
    assert response["statusCode"] == 200
    assert '<base href="/api/">' in response["body"]


def test_run_links_are_absolute_when_the_request_says_where_the_api_is(client):
    response = client.http.post(
        "/api/runs/start",
        headers={**JSON, "X-User": "alice", "Host": "api.example.com", "X-Forwarded-Proto": "https"},
        body=json.dumps({"sensorIds": ["s-1"], "duration": 30, "interval": 1}),
    )
    run = json.loads(response.body)
    assert run["grafanaUrl"] == f"https://api.example.com/?runId={run['runId']}"
    client.http.post(f"/api/runs/{run['runId']}/finish", headers=JSON, body="{}")


@pytest.mark.parametrize(
    ("headers", "context", "expected"),
    [
        ({"host": "h.example"}, {"path": "/x", "resourcePath": "/x"}, "http://h.example"),
        (
            {"host": "id.execute-api.eu-central-1.amazonaws.com", "x-forwarded-proto": "https"},
            {"path": "/api/api/runs", "resourcePath": "/api/runs"},
            "https://id.execute-api.eu-central-1.amazonaws.com/api",
        ),
        ({"host": "evil.example/path"}, {"path": "/", "resourcePath": "/"}, ""),
        (
            {"host": "h.example", "x-forwarded-proto": "javascript"},
            {"path": "/", "resourcePath": "/"},
            "http://h.example",
        ),
        ({}, {"path": "/", "resourcePath": "/"}, ""),
    ],
)
def test_public_base_url(headers, context, expected):
    assert http.public_base_url(headers, context) == expected
