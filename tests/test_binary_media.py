"""The report ZIP reaches the Angular client as bytes through API Gateway; JSON stays JSON.

API Gateway (REST API, Lambda proxy integration) is played by `Gateway` below, with the
binary media types read from the packaged templates (CloudFormation and Terraform): a
request body whose Content-Type matches one of them reaches Lambda base64-encoded; a
base64 response body (`isBase64Encoded`) reaches the client as bytes only when the FIRST
media type of the request's Accept header matches one, as base64 text otherwise. The
app in between is the real handler, invoked with API Gateway's proxy events.

`chalice deploy` and `chalice local` are run as the CLI runs them, up to the point where
they would call AWS or serve: what matters is the list the app gives each of them.
See app.py for the two lists and why.
"""

from __future__ import annotations

import base64
import csv
import io
import json
import os
import subprocess
import sys
import zipfile
from typing import Any

import pytest
from chalice.app import APIGateway

from benchmarks.lambda_event import Context, api_event
from tests.deploy_support import ROOT, STAGE, Packaged, package_dev

# The app keeps Chalice's default list; the deployed API adds */* (see app.py).
RUNTIME_BINARY_TYPES = APIGateway().default_binary_types
GATEWAY_BINARY_TYPES = [*RUNTIME_BINARY_TYPES, "*/*"]
# What Angular's HttpClient sends for `responseType: 'blob'`, then curl's default, then exact.
ANGULAR_ACCEPT = "application/json, text/plain, */*"
ACCEPTS = [ANGULAR_ACCEPT, "*/*", "application/zip"]
JSON_ROUTES = {
    "/api/health": {"status", "stage", "version"},
    "/api/runs/can-start": {"canStart", "available"},
}


@pytest.fixture(scope="module")
def packaged() -> Packaged:
    return package_dev()  # once per session, shared with tests/test_package.py


def packaged_binary_types(packaged: Packaged, pkg_format: str) -> list[str]:
    if pkg_format == "cloudformation":
        swagger = packaged.template()["Resources"]["RestAPI"]["Properties"]["DefinitionBody"]
        types: list[str] = swagger["x-amazon-apigateway-binary-media-types"]
        return types
    chalice_tf = packaged.tf("chalice.tf.json")
    rest_api = chalice_tf["resource"]["aws_api_gateway_rest_api"]["rest_api"]
    swagger = json.loads(chalice_tf["locals"]["chalice_api_swagger"])
    # Terraform sets both the swagger body and the attribute: they must agree.
    assert rest_api["binary_media_types"] == swagger["x-amazon-apigateway-binary-media-types"]
    attribute: list[str] = rest_api["binary_media_types"]
    return attribute


def _first_media_type(header: str | None) -> str | None:
    if not header:
        return None
    return header.split(",")[0].split(";")[0].strip().lower() or None


def _matches(media_type: str, binary_types: list[str]) -> bool:
    kind, _, subtype = media_type.lower().partition("/")
    for binary in binary_types:
        binary_kind, _, binary_subtype = binary.lower().partition("/")
        if binary_kind in ("*", kind) and binary_subtype in ("*", subtype):
            return True
    return False


class Gateway:
    """API Gateway in front of the app, as far as binary media types go."""

    def __init__(self, binary_types: list[str]):
        self.binary_types = binary_types

    def event(
        self,
        method: str,
        resource: str,
        *,
        body: Any = None,
        accept: str | None = None,
        headers: dict[str, str] | None = None,
        query: dict[str, str] | None = None,
        path_parameters: dict[str, str] | None = None,
    ) -> dict[str, Any]:
        event = api_event(method, resource, body, headers, path_parameters)
        if accept is not None:
            event["headers"]["Accept"] = accept
            event["multiValueHeaders"]["Accept"] = [accept]
        if query:
            event["queryStringParameters"] = query
            event["multiValueQueryStringParameters"] = {k: [v] for k, v in query.items()}
        content_type = event["headers"].get("Content-Type", "")
        if event["body"] is not None and _matches(content_type, self.binary_types):
            event["body"] = base64.b64encode(event["body"].encode()).decode("ascii")
            event["isBase64Encoded"] = True
        return event

    def deliver(self, event: dict[str, Any], response: dict[str, Any]) -> bytes:
        """The body the client receives for the Lambda response."""
        body = response.get("body") or ""
        if response.get("isBase64Encoded"):
            first = _first_media_type(event["headers"].get("Accept"))
            if first is not None and _matches(first, self.binary_types):
                return base64.b64decode(body)
            return body.encode("ascii")  # the base64 text itself
        return body if isinstance(body, bytes) else body.encode("utf-8")

    def call(self, method: str, resource: str, **kwargs: Any) -> tuple[dict[str, Any], dict[str, Any], bytes]:
        """(the Lambda event, the Lambda response, what the client receives)."""
        from app import app

        event = self.event(method, resource, **kwargs)
        response: dict[str, Any] = app(event, Context())
        return event, response, self.deliver(event, response)


@pytest.fixture(params=["cloudformation", "terraform"])
def gateway(request: pytest.FixtureRequest, packaged: Packaged) -> Gateway:
    return Gateway(packaged_binary_types(packaged, request.param))


@pytest.mark.slow
def test_the_api_definition_lists_chalices_defaults_and_any_type_the_app_only_the_defaults(packaged):
    from app import app

    for pkg_format in ("cloudformation", "terraform"):
        assert packaged_binary_types(packaged, pkg_format) == list(GATEWAY_BINARY_TYPES)
    assert "*/*" in GATEWAY_BINARY_TYPES and "application/zip" in GATEWAY_BINARY_TYPES
    assert app.api.binary_types == list(RUNTIME_BINARY_TYPES) == app.api.default_binary_types


def _start_run_with_a_reading(gateway: Gateway) -> str:
    user = {"X-User": "alice"}
    start = {"sensorIds": ["s-1"], "duration": 60, "interval": 1}
    _, response, body = gateway.call("POST", "/api/runs/start", body=start, headers=user)
    assert response["statusCode"] == 201, body
    run_id: str = json.loads(body)["runId"]
    reading = {"sensorId": "s-1", "type": "temperature", "reading": 21.5}
    _, response, body = gateway.call(
        "POST", "/api/sensors/data", body=reading, headers={**user, "X-Run-Id": run_id}
    )
    assert response["statusCode"] == 201, body
    # Finished, so the report holds it (the newest finished runs).
    _, response, body = gateway.call("POST", "/api/runs/{run_id}/finish", path_parameters={"run_id": run_id})
    assert response["statusCode"] == 200, body
    return run_id


@pytest.mark.parametrize("accept", ACCEPTS)
def test_the_report_reaches_the_client_as_a_zip(aws, gateway, accept):
    run_id = _start_run_with_a_reading(gateway)
    _, response, received = gateway.call(
        "GET", "/api/reports/download", accept=accept, query={"runId": run_id}
    )
    assert response["statusCode"] == 200, received[:200]
    assert response["headers"]["Content-Type"] == "application/zip"
    assert response["isBase64Encoded"] is True  # API Gateway decodes it, per the Accept header
    with zipfile.ZipFile(io.BytesIO(received)) as archive:
        (run_file,) = [name for name in archive.namelist() if name.startswith("runs/")]
        assert set(archive.namelist()) == {"summary.csv", f"readings-{run_id}.csv", run_file}
        summary = list(csv.DictReader(io.StringIO(archive.read("summary.csv").decode())))
        readings = list(csv.DictReader(io.StringIO(archive.read(run_file).decode())))
    assert [(run["id"], run["file"]) for run in summary] == [(run_id, run_file)]
    assert [(r["sensorId"], float(r["reading"])) for r in readings] == [("s-1", 21.5)]


@pytest.mark.parametrize("accept", [*ACCEPTS, None])
@pytest.mark.parametrize("route", sorted(JSON_ROUTES))
def test_json_routes_stay_json_whatever_the_accept_header(aws, gateway, route, accept):
    _, response, received = gateway.call("GET", route, accept=accept)
    assert response["statusCode"] == 200, received
    assert not response.get("isBase64Encoded")  # never base64 text, even where the gateway would not decode
    assert response["headers"]["Content-Type"] == "application/json"
    assert JSON_ROUTES[route] <= json.loads(received).keys()


def test_json_bodies_that_api_gateway_sends_base64_encoded_are_parsed(aws, gateway):
    start = {"sensorIds": ["s-1", "s-2"], "duration": 90, "interval": 3}
    event, response, received = gateway.call("POST", "/api/runs/start", body=start, headers={"X-User": "bob"})
    # `*/*` among the binary types: API Gateway hands every request body to Lambda as base64.
    assert event["isBase64Encoded"] is True
    assert json.loads(base64.b64decode(event["body"])) == start
    assert response["statusCode"] == 201, received
    run = json.loads(received)
    assert (run["username"], run["duration"], run["interval"]) == ("bob", 90, 3)
    assert run["params"]["sensorIds"] == ["s-1", "s-2"]

    finish = {"status": "FAILED", "errorMessage": "sensor fell off"}
    event, response, received = gateway.call(
        "POST", "/api/runs/{run_id}/finish", body=finish, path_parameters={"run_id": run["id"]}
    )
    assert event["isBase64Encoded"] is True
    assert response["statusCode"] == 200, received
    finished = json.loads(received)
    assert (finished["status"], finished["errorMessage"]) == ("FAILED", "sensor fell off")


# ---- the list each Chalice command gets ---------------------------------------

# Runs the Chalice CLI as `chalice` does, stopping where it would call AWS (deploy: the
# plan stage, after the API definition is built) or serve (local), to print the list.
_PROBE = """
import json, os, sys
from chalice.cli import cli
from chalice.deploy import deployer
from chalice.local import LocalDevServer

def report(types):
    print("BINARY_TYPES " + json.dumps(types), flush=True)
    os._exit(0)

def plan(self, resources):
    (api,) = [r for r in resources if type(r).__name__ == "RestAPI"]
    report(api.swagger_doc["x-amazon-apigateway-binary-media-types"])

def serve(self):
    report(sys.modules["app"].app.api.binary_types)

deployer.PlanStage.execute = plan
LocalDevServer.serve_forever = serve
cli.main(args=sys.argv[1:], obj={}, prog_name="chalice")
"""


def _chalice_binary_types(*args: str, **env: str) -> list[str]:
    result = subprocess.run(
        [sys.executable, "-c", _PROBE, "--project-dir", str(ROOT), *args],
        env={**os.environ, "AWS_DEFAULT_REGION": "us-east-1", "AWS_EC2_METADATA_DISABLED": "true", **env},
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    lines = [line for line in result.stdout.splitlines() if line.startswith("BINARY_TYPES ")]
    assert result.returncode == 0 and len(lines) == 1, result.stdout + result.stderr
    types: list[str] = json.loads(lines[0].removeprefix("BINARY_TYPES "))
    return types


@pytest.mark.slow
def test_chalice_deploy_gives_api_gateway_the_gateway_list():
    # The Deploy workflow puts the stage's secret in the config before `chalice deploy`.
    secret = {"PAGINATION_TOKEN_SECRET": "a-secret-of-at-least-thirty-two-characters"}
    assert _chalice_binary_types("deploy", "--stage", STAGE, **secret) == list(GATEWAY_BINARY_TYPES)


@pytest.mark.slow
@pytest.mark.parametrize(
    "worker_env",
    [{}, {"CHALICE_WORKER": "true"}],
    ids=["no-autoreload", "autoreload-worker"],  # the worker imports the app in a server thread
)
def test_chalice_local_keeps_the_runtime_list(worker_env):
    args = ["local", "--stage", "local", "--port", "0"]
    if not worker_env:
        args.append("--no-autoreload")
    assert _chalice_binary_types(*args, **worker_env) == list(RUNTIME_BINARY_TYPES)
