"""The admin key of `POST /api/runs/interrupt-all`: declared for API Gateway, checked by
the app itself under the local stage (`chalice local` checks no API key), sent by the CLI."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from click.testing import CliRunner

from chalicelib import admin_key
from tests.helpers import call, http, start_run

KEY = "local-admin-key-for-tests"
INTERRUPT_ALL = "/api/runs/interrupt-all"


@pytest.fixture
def local_client(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """The app as `make run` serves it: STAGE=local with an ADMIN_API_KEY."""
    from chalice.test import Client
    from moto import mock_aws

    from app import app
    from chalicelib import deps
    from chalicelib.aws import dynamodb_client
    from chalicelib.settings import get_settings
    from iot_playground.common.stages import stage_environment
    from iot_playground.deploy.tables_admin import ensure_tables

    # The local stage's variables, which chalice.test.Client also sets around each request.
    for name, value in stage_environment("local").items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("ADMIN_API_KEY", KEY)
    deps.reset()
    with mock_aws():
        ensure_tables(dynamodb_client(), get_settings())
        with Client(app, stage_name="local") as client:
            yield client
    deps.reset()


def _refused(status: int, body: Any) -> bool:
    return status == 403 and body == {"error": "Forbidden", "message": admin_key.MESSAGE}


@pytest.mark.parametrize("headers", [{}, {"x-api-key": ""}, {"x-api-key": "wrong"}, {"x-api-key": KEY + "x"}])
def test_local_stage_refuses_interrupt_all_without_the_key(local_client, headers):
    run = start_run(local_client)
    assert _refused(*call(local_client, "POST", INTERRUPT_ALL, **headers))
    assert call(local_client, "GET", f"/api/runs/{run['id']}")[1]["status"] == "RUNNING"


def test_local_stage_accepts_the_key_in_any_header_case(local_client):
    start_run(local_client)
    status, body = call(local_client, "POST", INTERRUPT_ALL, **{"X-Api-Key": KEY})
    assert (status, body["interrupted"]) == (200, 1)


def test_local_stage_without_a_configured_key_refuses_everyone(local_client, monkeypatch):
    from chalicelib import deps

    monkeypatch.setenv("ADMIN_API_KEY", "")
    deps.reset()
    assert _refused(*call(local_client, "POST", INTERRUPT_ALL, **{"x-api-key": ""}))


def test_routes_the_frontend_uses_stay_open_under_the_local_stage(local_client):
    assert call(local_client, "GET", "/api/runs/can-start")[0] == 200
    run = start_run(local_client)
    reading = {"sensorId": "sensor-1", "reading": 21.5, "type": "temperature"}
    assert call(local_client, "POST", "/api/sensors/data", reading, **{"X-Run-Id": run["id"]})[0] == 201
    assert call(local_client, "GET", "/api/runs/running")[0] == 200
    assert call(local_client, "POST", f"/api/runs/{run['id']}/finish", {"status": "SUCCESS"})[0] == 200


def test_elsewhere_api_gateway_checks_the_key_not_the_app(client):
    # STAGE=test stands for a deployed stage: API Gateway refused key-less requests already.
    assert call(client, "POST", INTERRUPT_ALL)[0] == 200


def test_only_interrupt_all_requires_an_api_key():
    from app import app

    required = {
        (path, method)
        for path, methods in app.routes.items()
        for method, entry in methods.items()
        if entry.api_key_required
    }
    assert required == {(INTERRUPT_ALL, "POST")}


def test_make_run_generates_a_key_unless_given():
    from iot_playground.local.local_stack import admin_api_key

    generated = {admin_api_key({}) for _ in range(3)}
    assert len(generated) == 3 and all(len(key) >= 32 for key in generated)
    assert admin_api_key({"ADMIN_API_KEY": " given "}) == "given"


# ---- the CLI ---------------------------------------------------------------------------


def test_api_client_sends_the_key():
    seen: list[httpx.Request] = []

    def api(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={"interrupted": 0, "message": "0 running run(s) interrupted"})

    async def send() -> dict[str, Any]:
        from iot_playground.clients.api_client import PlaygroundApi

        async with PlaygroundApi("http://api.test", transport=httpx.MockTransport(api)) as client:
            return await client.interrupt_all(admin_key=KEY)

    assert asyncio.run(send())["interrupted"] == 0
    (request,) = seen
    assert (request.method, request.url.path, request.headers["x-api-key"]) == ("POST", INTERRUPT_ALL, KEY)


@pytest.mark.e2e
def test_cli_interrupt_all_against_make_run(local_stack):
    from iot_playground.cli import main

    api = local_stack.base_url
    assert f"admin API key (x-api-key of POST {INTERRUPT_ALL}): {local_stack.admin_key}" in local_stack.log()
    assert _refused(*http("POST", f"{api}{INTERRUPT_ALL}")[:2])
    refused = CliRunner().invoke(main, ["interrupt-all", "--api", api, "--admin-key", "wrong"])
    assert refused.exit_code == 1 and "HTTP 403" in refused.output, refused.output
    accepted = CliRunner().invoke(
        main, ["interrupt-all", "--api", api], env={"ADMIN_API_KEY": local_stack.admin_key}
    )
    assert accepted.exit_code == 0 and "interrupted" in accepted.output, accepted.output
    missing = CliRunner().invoke(main, ["interrupt-all", "--api", api], env={"ADMIN_API_KEY": ""})
    assert missing.exit_code == 2 and "--admin-key" in missing.output
