"""The packaged deployment.zip serves API Gateway events from an interpreter that
has only what the Lambda Python runtime has (the standard library and boto3), plus
the Powertools layer's content where Lambda puts a layer (/opt/python, on the path
after the function's code).

The DynamoDB it talks to is moto's server on loopback, running in this test
process, so moto never enters the runtime interpreter."""

from __future__ import annotations

import importlib.metadata
import json
import os
import re
import subprocess
import sys
import venv
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from iot_playground.common.endpoints import endpoint_client
from iot_playground.common.stages import Stage
from iot_playground.deploy.guards import ensure_tables
from iot_playground.local.local_stack import start_dynamodb
from tests.deploy_support import STAGE, package_dev

DRIVER = Path(__file__).with_name("lambda_runtime_driver.py")


def _distribution_closure(name: str) -> set[str]:
    """`name` and everything it requires (unconditionally), as installed here."""
    seen: set[str] = set()
    pending = [name]
    while pending:
        current = pending.pop()
        key = current.lower().replace("_", "-")
        if key in seen:
            continue
        seen.add(key)
        for requirement in importlib.metadata.requires(current) or []:
            if ";" in requirement and "extra ==" in requirement:
                continue
            match = re.match(r"[A-Za-z0-9_.\-]+", requirement)
            assert match is not None
            pending.append(match.group(0))
    return seen


def _link_distributions(names: set[str], target: Path) -> None:
    """Make these installed distributions importable from `target` (symlinks, no copy)."""
    for distribution_name in names:
        distribution = importlib.metadata.distribution(distribution_name)
        tops = {Path(str(f)).parts[0] for f in distribution.files or [] if not str(f).startswith("..")}
        for top in tops:
            source = Path(str(distribution.locate_file(top)))
            if (top.endswith(".py") or source.is_dir()) and not (target / top).exists():
                (target / top).symlink_to(source)


def _runtime_interpreter(root: Path) -> Path:
    """A venv with no pip and nothing installed but boto3 and its dependencies,
    linked from this environment's site-packages (same versions, no download)."""
    venv.EnvBuilder(with_pip=False, symlinks=True).create(root)
    python = root / "bin" / "python"
    site = Path(
        subprocess.run(
            [str(python), "-I", "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip()
    )
    _link_distributions(_distribution_closure("boto3"), site)
    return python


def _powertools_layer(root: Path) -> Path:
    """What the Powertools layer puts in /opt/python: the version the tests use (the one the
    stage's layer ARN names, see tests/test_package.py) and what it needs beyond the runtime."""
    layer = root / "opt" / "python"
    layer.mkdir(parents=True)
    in_runtime = _distribution_closure("boto3")
    _link_distributions(_distribution_closure("aws-lambda-powertools") - in_runtime, layer)
    return layer


@pytest.fixture(scope="module")
def dynamodb_endpoint() -> Iterator[str]:
    endpoint, stop = start_dynamodb()
    client = endpoint_client(endpoint)
    ensure_tables(client, Stage.load(STAGE).app_settings)
    yield endpoint
    stop()


@pytest.mark.slow
def test_packaged_zip_serves_api_events_with_only_the_runtime(tmp_path, dynamodb_endpoint):
    packaged = package_dev()
    archive = packaged.cloudformation / "deployment.zip"
    code = tmp_path / "task"  # where Lambda unpacks a function's code
    with zipfile.ZipFile(archive) as bundle:
        bundle.extractall(code)
    python = _runtime_interpreter(tmp_path / "runtime")
    layer = _powertools_layer(tmp_path / "layer")

    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        **Stage.load(STAGE).environment,
        "PAGINATION_TOKEN_SECRET": "a-secret-of-at-least-thirty-two-characters",
        "DYNAMODB_ENDPOINT": dynamodb_endpoint,
        "AWS_ACCESS_KEY_ID": "x",
        "AWS_SECRET_ACCESS_KEY": "x",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_LAMBDA_FUNCTION_NAME": "iot-playground-dev",
    }
    result = subprocess.run(
        [str(python), "-I", str(DRIVER), str(code), str(layer)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    lines = [json.loads(line) for line in result.stdout.splitlines() if line.startswith('{"path"')]
    calls = [line for line in lines if line["path"] != "schedule"]
    assert [c["path"] for c in calls] == [
        "/api/health",
        "/api/runs/can-start",
        "/api/runs/start",
        "/api/sensors/data",
        f"/api/runs/{calls[2]['body']['id']}/finish",
    ]
    for call in calls:
        assert call["status"] == call["expected"], call
    assert calls[0]["body"]["stage"] == STAGE
    assert calls[1]["body"]["canStart"] is True
    assert calls[3]["body"]["sensorId"] == "s1"
    (schedule,) = [line for line in lines if line["path"] == "schedule"]
    assert schedule["result"] == {"timedOut": 0}
    assert schedule["chalice"].startswith(str(code))  # Chalice's runtime came from the zip
    assert schedule["powertools"].startswith(str(layer))  # and Powertools from the layer

    size = archive.stat().st_size
    print(
        f"\ndeployment.zip: {size} bytes ({size / 1024 / 1024:.2f} MiB), packaged in {packaged.seconds:.1f}s"
    )
    assert size <= 700 * 1024  # Powertools in its layer, boto3 in the runtime: the app and msgspec

    # The reading really is in the table, through the same fake DynamoDB.
    client = endpoint_client(dynamodb_endpoint)
    readings = client.scan(TableName=Stage.load(STAGE).app_settings.readings_table)["Items"]
    assert [item["sensorId"]["S"] for item in readings] == ["s1"]
    assert sys.executable != str(python)
