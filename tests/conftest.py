"""Shared fixtures.

Unit tests: `aws` gives a moto-backed DynamoDB with the app's tables and fresh
lazily-built repositories; `client` is a `chalice.test.Client` over the app.
End-to-end tests: `local_stack` is the real `make run` stack (embedded DynamoDB
plus `chalice local`) started as a subprocess; `LocalStack` starts one with
other settings.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

# Before the app's botocore session is made (chalicelib/parts.py, at import): moto's handler joins
# the sessions made after it.
import moto  # noqa: F401
import pytest

from iot_playground.local.local_stack import free_port, wait_for_http
from tests.helpers import ROOT

if TYPE_CHECKING:
    from tests.dynamodb_faults import DynamoDBFaults, MotoServer


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
        "IDEMPOTENCY_TABLE": "idempotency-test",
    }
)
os.environ.pop("DYNAMODB_ENDPOINT", None)

# Ctrl-C must reach the processes the tests start (the local stack stops on SIGINT, `simulate`
# finishes its runs as FAILED), also when `make test` runs as a background job, which a shell
# starts with SIGINT ignored: a process inherits that, and Python then never raises
# KeyboardInterrupt. A handled signal is reset to its default by exec, an ignored one is not.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)


# A test that starts a process of its own (the local stack, a browser, PostgreSQL, mosquitto, the
# template checkers) is `e2e`: `make check` leaves it to `make test`.
PROCESS_FIXTURES = {"local_stack", "browser", "old_database", "mosquitto", "checkov_reports"}
# A test of the packaged app (`chalice package`, seconds) is `slow`: also left to `make test`.
SLOW_FIXTURES = {"packaged"}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        fixtures = set(getattr(item, "fixturenames", ()))
        if PROCESS_FIXTURES & fixtures:
            item.add_marker(pytest.mark.e2e)
        if SLOW_FIXTURES & fixtures:
            item.add_marker(pytest.mark.slow)


def reset_app() -> None:
    """Build the app's parts again, from the environment as it is now."""
    import app

    app.parts.cache_clear()


def create_tables() -> None:
    """The app's tables as `make tables` describes them, without its waits and settings (TTL):
    moto's tables are ACTIVE at once, and these live for one test."""
    import app
    from iot_playground.deploy.resources import create_table_request, tables

    settings = app.parts().settings
    for table in tables(settings.stage, settings):
        app.parts().dynamodb.create_table(**create_table_request(table))


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    from moto import mock_aws

    reset_app()
    with mock_aws():
        create_tables()
        yield
    reset_app()


def thread_local_requests() -> None:
    """Give each thread its own `app.current_request`, as `chalice local` does for its threads
    (chalice.local.create_local_server): some tests send requests from several threads."""
    from chalice.local import LocalChalice

    import app

    if not isinstance(app.app, LocalChalice):
        app.app.__class__ = type("ThreadLocalChalice", (LocalChalice, type(app.app)), {})


@pytest.fixture
def client(aws: None) -> Iterator[object]:
    from chalice.test import Client

    from app import app

    thread_local_requests()
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
        for name in ("STAGE", "RUNS_TABLE", "READINGS_TABLE", "IDEMPOTENCY_TABLE", "AWS_SESSION_TOKEN"):
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
    import app
    from tests.dynamodb_faults import DynamoDBFaults

    moto_server.reset()
    monkeypatch.setenv("DYNAMODB_ENDPOINT", moto_server.endpoint)
    reset_app()
    create_tables()
    layer = DynamoDBFaults().install(app.parts().dynamodb)
    yield layer
    layer.uninstall()
    reset_app()


@pytest.fixture
def faulty_client(dynamodb_faults: DynamoDBFaults) -> Iterator[object]:
    """A `chalice.test.Client` over the app, whose DynamoDB calls go through `dynamodb_faults`."""
    from chalice.test import Client

    from app import app

    thread_local_requests()
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
    import app

    seen: Counter[str] = Counter()

    def record(model, **_):
        seen[model.name] += 1

    app.parts().dynamodb.meta.events.register("before-call.dynamodb", record)
    return seen


MOSQUITTO = os.environ.get("MOSQUITTO", "/usr/sbin/mosquitto")


def _wait_for_port(port: int, process: subprocess.Popen[bytes], timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"mosquitto exited with {process.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"mosquitto did not listen on {port}")


@pytest.fixture(scope="module")
def mosquitto(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Debian's mosquitto on a free loopback port, anonymous: its URL."""
    if not shutil.which(MOSQUITTO):
        pytest.skip(f"no mosquitto at {MOSQUITTO} (apt-get install mosquitto; CI installs it)")
    port = free_port()
    config = tmp_path_factory.mktemp("mosquitto") / "mosquitto.conf"
    config.write_text(
        f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\nmax_queued_messages 0\n"
    )
    process = subprocess.Popen([MOSQUITTO, "-c", str(config)], stderr=subprocess.PIPE)
    try:
        _wait_for_port(port, process)
        yield f"mqtt://127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(10)


@pytest.fixture
def log_lines() -> Iterator[Any]:
    """Every line the app's logger writes during the test, parsed (a line that is not JSON fails)."""
    from chalicelib.settings import logger

    buffer = io.StringIO()
    previous = logger.logger_handler.setStream(buffer)  # type: ignore[attr-defined]
    try:
        yield lambda: [json.loads(line) for line in buffer.getvalue().splitlines()]
    finally:
        logger.logger_handler.setStream(previous)  # type: ignore[attr-defined]
