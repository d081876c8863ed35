"""The AWS clients: built when the app is imported (Lambda's init phase), with the app's timeouts
and retries, at the configured endpoint; nothing that only some routes need is loaded then."""

from __future__ import annotations

import json
import subprocess
import sys

from tests.conftest import reset_app
from tests.helpers import ROOT


def test_the_client_talks_to_the_configured_endpoint(monkeypatch):
    import app
    from chalicelib import schemas as errors

    monkeypatch.setenv("DYNAMODB_ENDPOINT", "http://127.0.0.1:4566")
    reset_app()
    try:
        client = app.parts().dynamodb
        assert client.meta.endpoint_url == "http://127.0.0.1:4566"
        assert client.meta.service_model.service_name == "dynamodb"
        assert client.meta.config.retries == {
            "mode": "standard",
            "total_max_attempts": errors.SDK_RETRIES["max_attempts"] + 1,
        }
        assert client.meta.config.connect_timeout == 2
    finally:
        reset_app()


def test_importing_the_app_builds_the_client_and_leaves_route_only_modules_out():
    code = (
        "import json, sys, app\n"
        "print(json.dumps({'built': app.parts.cache_info().currsize,"
        " 'loaded': [m for m in ('boto3', 'aws_lambda_powertools.utilities.idempotency', 'chalicelib.viewer',"
        " 'chalicelib.reports', 'chalicelib.analytics') if m in sys.modules]}))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert json.loads(result.stdout.splitlines()[-1]) == {"built": 1, "loaded": []}
