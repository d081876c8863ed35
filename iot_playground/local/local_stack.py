"""`iot-playground serve` (`make run`): an embedded DynamoDB- and S3-compatible endpoint plus `chalice local`.

The endpoint is moto's server on loopback. Its request handling is serialized
behind a lock so that each DynamoDB call is atomic, as it is on the real
service; the app's conditional writes and transactions then behave the same
here as on AWS. `DYNAMODB_ENDPOINT` skips the embedded endpoint and uses
another one (DynamoDB Local, or a real account's regional endpoint).

The same endpoint serves S3 (moto tells the services apart by the request's
signature): the reports bucket is created there, and the presigned URLs of large
downloads point at it (`S3_ENDPOINT`, set to another endpoint, wins).
"""

from __future__ import annotations

import os
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from chalicelib.settings import Settings

from iot_playground.common.endpoints import LOCAL_CREDENTIALS, endpoint_client
from iot_playground.common.stages import PROJECT_ROOT, stage_environment


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class _Serialized:
    """WSGI wrapper: one request at a time, like one DynamoDB partition leader."""

    def __init__(self, app: Callable[..., Iterable[bytes]]):
        self._app = app
        self._lock = threading.Lock()

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        with self._lock:
            return list(self._app(environ, start_response))


def start_dynamodb(host: str = "127.0.0.1", port: int = 0) -> tuple[str, Callable[[], None]]:
    """Start moto's DynamoDB and S3 in a thread; returns (endpoint URL, stop)."""
    from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app
    from werkzeug.serving import WSGIRequestHandler, make_server

    class QuietHandler(WSGIRequestHandler):
        def log_request(self, *args: Any, **kwargs: Any) -> None:
            pass  # the API's own log says what happened; per-call lines here are noise

    app = _Serialized(DomainDispatcherApplication(create_backend_app))
    server = make_server(host, port or free_port(), app, threaded=True, request_handler=QuietHandler)
    thread = threading.Thread(target=server.serve_forever, name="dynamodb", daemon=True)
    thread.start()
    return f"http://{host}:{server.server_port}", server.shutdown


def _settings(env: dict[str, str]) -> Settings:
    from chalicelib.settings import load_settings

    previous = dict(os.environ)
    os.environ.update(env)
    try:
        return load_settings()
    finally:
        os.environ.clear()
        os.environ.update(previous)


def create_tables(endpoint: str, env: dict[str, str]) -> list[str]:
    from iot_playground.deploy.tables_admin import ensure_tables

    return ensure_tables(endpoint_client(endpoint, env), _settings(env))


def create_reports_bucket(endpoint: str, env: dict[str, str]) -> list[str]:
    """The reports bucket with its lifecycle rule and CORS (not the deployed stages' TLS-only
    policy: this endpoint is plain HTTP); returns what changed."""
    import boto3
    from botocore.config import Config

    from iot_playground.deploy.tables_admin import reconcile_bucket

    s3 = boto3.session.Session().client(
        "s3",
        endpoint_url=endpoint,
        region_name=env["AWS_DEFAULT_REGION"],
        aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
        config=Config(s3={"addressing_style": "path"}),
    )
    return [str(change) for change in reconcile_bucket(s3, _settings(env), durable=False)]


def admin_api_key(environ: Mapping[str, str]) -> str:
    """ADMIN_API_KEY from the shell, or a new random one for this `make run`."""
    return environ.get("ADMIN_API_KEY", "").strip() or secrets.token_urlsafe(24)


def wait_for_http(url: str, timeout: float, process: subprocess.Popen[bytes] | None = None) -> None:
    import urllib.request

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode} before answering {url}")
        try:
            with urllib.request.urlopen(url, timeout=1):
                return
        except OSError:
            time.sleep(0.1)
    raise TimeoutError(f"{url} did not answer within {timeout:.0f}s")


def serve(host: str, port: int, stage: str = "local", *, autoreload: bool = True) -> int:
    """Serve the API until Ctrl-C or SIGTERM; returns the exit code of `chalice local`."""
    env = {**LOCAL_CREDENTIALS, **{k: v for k, v in os.environ.items() if k.startswith("AWS_")}}
    # The stage's settings, each overridable from the shell (MAX_CONCURRENT_RUNS=10 make run).
    env.update({k: os.environ.get(k, v) for k, v in stage_environment(stage).items()})
    # `chalice local` checks no API key: the app checks the admin key itself (chalicelib/admin_key.py).
    env["ADMIN_API_KEY"] = admin_api_key(os.environ)
    endpoint = os.environ.get("DYNAMODB_ENDPOINT")
    stop_dynamodb: Callable[[], None] = lambda: None  # noqa: E731
    if not endpoint:
        endpoint, stop_dynamodb = start_dynamodb()
        print(f"embedded DynamoDB endpoint on {endpoint}", flush=True)
    created = create_tables(endpoint, env)
    print(f"tables ready ({'created ' + ', '.join(created) if created else 'already there'})", flush=True)
    # Another DynamoDB endpoint says nothing of S3: then S3_ENDPOINT, or the account's S3.
    s3_endpoint = os.environ.get("S3_ENDPOINT") or (None if os.environ.get("DYNAMODB_ENDPOINT") else endpoint)
    if s3_endpoint:
        env["S3_ENDPOINT"] = s3_endpoint
        made = create_reports_bucket(s3_endpoint, env)
        print(f"reports bucket on {s3_endpoint} ({'; '.join(made) if made else 'already there'})", flush=True)
    print(f"admin API key (x-api-key of POST /api/runs/interrupt-all): {env['ADMIN_API_KEY']}", flush=True)

    child_env = {**os.environ, **env, "DYNAMODB_ENDPOINT": endpoint}
    command = [
        sys.executable, "-m", "iot_playground.local.chalice_local",
        "--stage", stage, "--host", host, "--port", str(port),
    ]  # fmt: skip
    if not autoreload:
        command.append("--no-autoreload")
    chalice = subprocess.Popen(command, cwd=PROJECT_ROOT, env=child_env)

    def stop(*_: object) -> None:
        if chalice.poll() is None:
            chalice.terminate()

    signal.signal(signal.SIGTERM, stop)
    try:
        wait_for_http(f"http://{host}:{port}/api/health", 60, chalice)
        print(f"IoT Playground API on http://{host}:{port} (Ctrl-C stops)", flush=True)
        return chalice.wait()
    except KeyboardInterrupt:
        return 0
    finally:
        stop()
        try:
            chalice.wait(timeout=10)
        except subprocess.TimeoutExpired:
            chalice.kill()
        stop_dynamodb()
