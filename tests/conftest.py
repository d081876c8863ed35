"""Shared fixtures.

Unit tests: `aws` gives a moto-backed DynamoDB with the app's tables and fresh
lazily-built repositories; `client` is a `chalice.test.Client` over the app.
End-to-end tests: `local_stack` is the real `make run` stack (embedded DynamoDB
plus `chalice local`) started as a subprocess; `LocalStack` starts one with
other settings.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from iot_playground.local.local_stack import free_port, wait_for_http

if TYPE_CHECKING:
    from tests.dynamodb_faults import DynamoDBFaults, MotoServer

ROOT = Path(__file__).resolve().parent.parent

# No test may reach a real AWS account.
os.environ.update(
    {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "STAGE": "test",
        "RUNS_TABLE": "runs-test",
        "READINGS_TABLE": "readings-test",
    }
)
os.environ.pop("DYNAMODB_ENDPOINT", None)


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    from moto import mock_aws

    from chalicelib import deps
    from chalicelib.settings import get_settings
    from iot_playground.deploy.tables_admin import ensure_tables

    deps.reset()
    with mock_aws():
        from chalicelib.aws import dynamodb_client

        ensure_tables(dynamodb_client(), get_settings())
        yield
    deps.reset()


@pytest.fixture
def client(aws: None) -> Iterator[object]:
    from chalice.test import Client

    from app import app

    with Client(app) as chalice_client:
        yield chalice_client


class LocalStack:
    """`iot-playground serve` on a free port, as `make run` starts it."""

    def __init__(self, **env: str):
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self._env = {**os.environ, **env}
        # The key the app asks for on interrupt-all under the local stage (as `make run` prints it).
        self.admin_key = self._env.setdefault("ADMIN_API_KEY", "e2e-admin-key")
        self.admin = {"x-api-key": self.admin_key}
        for name in ("STAGE", "RUNS_TABLE", "READINGS_TABLE", "AWS_SESSION_TOKEN"):
            self._env.pop(name, None)  # the local stage's own settings apply
        self.log_path = Path(os.environ.get("PYTEST_TMPDIR", "/tmp")) / f"local-stack-{self.port}.log"
        self._process: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> LocalStack:
        self._log = self.log_path.open("wb")
        self._process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "iot_playground",
                "serve",
                "--port",
                str(self.port),
                "--no-autoreload",
            ],
            cwd=ROOT,
            env=self._env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            wait_for_http(f"{self.base_url}/api/health", 90, self._process)
        except Exception:
            self.__exit__()
            raise RuntimeError(f"local stack did not start:\n{self.log()}") from None
        return self

    def log(self) -> str:
        self._log.flush()
        return self.log_path.read_text(errors="replace")

    def __exit__(self, *exc: object) -> None:
        if self._process and self._process.poll() is None:
            os.killpg(self._process.pid, signal.SIGINT)
            try:
                self._process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(self._process.pid, signal.SIGKILL)
                self._process.wait()
        self._log.close()


@pytest.fixture(scope="session")
def local_stack() -> Iterator[LocalStack]:
    with LocalStack() as stack:
        yield stack


# Fault injection over moto's server (tests/dynamodb_faults.py): `dynamodb_faults`
# gives the app's tables with the layer on the app's client, `faulty_client` the app on it.


@pytest.fixture(scope="session")
def moto_server() -> Iterator[MotoServer]:
    """moto's server on loopback, shared by the session; `dynamodb_faults` resets it per test."""
    from tests.dynamodb_faults import MotoServer

    with MotoServer() as server:
        yield server


@pytest.fixture
def dynamodb_faults(moto_server: MotoServer, monkeypatch: pytest.MonkeyPatch) -> Iterator[DynamoDBFaults]:
    """The app's tables on the moto server, with `DynamoDBFaults` on the app's client.

    Not `mock_aws`: in-process moto would answer each request again after the layer."""
    from chalicelib import deps
    from chalicelib.aws import dynamodb_client
    from chalicelib.settings import get_settings
    from iot_playground.deploy.tables_admin import ensure_tables
    from tests.dynamodb_faults import DynamoDBFaults

    moto_server.reset()
    monkeypatch.setenv("DYNAMODB_ENDPOINT", moto_server.endpoint)
    deps.reset()
    ensure_tables(dynamodb_client(), get_settings())
    layer = DynamoDBFaults().install(dynamodb_client())
    yield layer
    layer.uninstall()
    deps.reset()


@pytest.fixture
def faulty_client(dynamodb_faults: DynamoDBFaults) -> Iterator[object]:
    """A `chalice.test.Client` over the app, whose DynamoDB calls go through `dynamodb_faults`."""
    from chalice.test import Client

    from app import app

    with Client(app) as chalice_client:
        yield chalice_client


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[object]:
    """Headless Chromium through WebDriver (tests/browser.py)."""
    from tests.browser import chromium

    with chromium(tmp_path / "chromium-profile") as driver:
        yield driver


@pytest.fixture
def calls(aws):
    """Counts DynamoDB operations made through the app's client."""
    from chalicelib.aws import dynamodb_client

    seen: Counter[str] = Counter()

    def record(model, **_):
        seen[model.name] += 1

    dynamodb_client().meta.events.register("before-call.dynamodb", record)
    return seen
