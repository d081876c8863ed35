"""The admin key of `POST /api/runs/interrupt-all`: declared for API Gateway, which checks it on
AWS; under `make run` the local gateway (iot_playground/local/gateway.py) checks it as API
Gateway does; the CLI sends it."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest
from click.testing import CliRunner

from iot_playground.local.gateway import ADMIN_KEY_MESSAGE
from tests.helpers import call, http

INTERRUPT_ALL = "/api/runs/interrupt-all"


def refused(status: int, body: Any) -> bool:
    return status == 403 and body == {"error": "Forbidden", "message": ADMIN_KEY_MESSAGE}


def test_only_interrupt_all_requires_an_api_key():
    from app import app

    required = {
        (path, m) for path, methods in app.routes.items() for m, e in methods.items() if e.api_key_required
    }
    assert required == {(INTERRUPT_ALL, "POST")}


def test_the_app_leaves_the_key_to_the_gateway(client):
    assert call(client, "POST", INTERRUPT_ALL)[0] == 200


def test_api_client_sends_the_key():
    seen: list[httpx.Request] = []

    def api(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={"interrupted": 0, "message": "0 running run(s) interrupted"})

    from iot_playground.clients import interrupt_all

    answer = asyncio.run(interrupt_all("http://api.test", "k", transport=httpx.MockTransport(api)))
    assert answer == "0 running run(s) interrupted"
    (request,) = seen
    assert (request.method, request.url.path, request.headers["x-api-key"]) == ("POST", INTERRUPT_ALL, "k")


@pytest.mark.e2e
def test_make_run_checks_the_key_as_api_gateway_does(local_stack):
    from iot_playground.cli import main

    api = local_stack.base_url
    assert f"admin API key (x-api-key of POST {INTERRUPT_ALL}): {local_stack.admin_key}" in local_stack.log()
    for headers in (
        {},
        {"x-api-key": ""},
        {"x-api-key": "wrong"},
        {"x-api-key": local_stack.admin_key + "x"},
    ):
        assert refused(*http("POST", f"{api}{INTERRUPT_ALL}", **headers)[:2])
    assert http("POST", f"{api}{INTERRUPT_ALL}", **{"X-Api-Key": local_stack.admin_key})[0] == 200
    refused_cli = CliRunner().invoke(main, ["interrupt-all", "--api", api, "--admin-key", "wrong"])
    assert refused_cli.exit_code == 1 and "HTTP 403" in refused_cli.output, refused_cli.output
    accepted = CliRunner().invoke(
        main, ["interrupt-all", "--api", api], env={"ADMIN_API_KEY": local_stack.admin_key}
    )
    assert accepted.exit_code == 0 and "interrupted" in accepted.output, accepted.output
    # The routes the frontend uses need no key.
    assert http("GET", f"{api}/api/runs/can-start")[0] == 200
