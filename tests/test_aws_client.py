"""The DynamoDB client: built at import from botocore, with a loader that skips botocore's
service listing and reads its models without OrderedDicts, and the same models either way."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from botocore.loaders import Loader

from chalicelib import aws
from tests.conftest import ROOT


@pytest.mark.parametrize("type_name", ["service-2", "endpoint-rule-set-1", "paginators-1", "waiters-2"])
def test_service_loader_reads_the_models_botocore_reads(type_name):
    ours = aws.ServiceLoader().load_service_model("dynamodb", type_name)
    assert ours == Loader().load_service_model("dynamodb", type_name)


def test_service_loader_reads_the_endpoint_data_botocore_reads():
    for data in ("endpoints", "partitions", "_retry", "sdk-default-configuration"):
        assert aws.ServiceLoader().load_data(data) == Loader().load_data(data), data


def test_client_talks_to_the_configured_endpoint(monkeypatch):
    from chalicelib import deps

    monkeypatch.setenv("DYNAMODB_ENDPOINT", "http://127.0.0.1:4566")
    deps.reset()
    try:
        client = aws.dynamodb_client()
        assert client.meta.endpoint_url == "http://127.0.0.1:4566"
        assert client.meta.service_model.service_name == "dynamodb"
        assert client.meta.config.retries["mode"] == "standard"
        assert client.meta.config.connect_timeout == aws.CONFIG.connect_timeout
    finally:
        deps.reset()


def test_importing_the_app_builds_the_client_and_leaves_route_only_modules_out():
    code = (
        "import json, sys, app\n"
        "from chalicelib import aws\n"
        "print(json.dumps({'clients': aws.dynamodb_client.cache_info().currsize,"
        " 'loaded': [m for m in ('boto3', 'chalicelib.viewer', 'chalicelib.reports',"
        " 'chalicelib.report_store', 'chalicelib.openapi')"
        " if m in sys.modules]}))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert json.loads(result.stdout.splitlines()[-1]) == {"clients": 1, "loaded": []}
