"""`iot-playground serve` (`make run`): the API on this machine, with nothing to install: moto's
DynamoDB and S3 on loopback (one request at a time, so that every DynamoDB call is atomic as on the
real service), or `DYNAMODB_ENDPOINT`, with the stage's tables and reports bucket; `chalice local`
behind `gateway.py`; an MQTT broker (or `MQTT_URL`) bridged to the app's SQS handler (`mqtt.py`).
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
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from iot_playground.common.endpoints import LOCAL_CREDENTIALS, endpoint_client, local_session
from iot_playground.common.mqtt_topics import device_topic
from iot_playground.common.stages import PROJECT_ROOT, settings_for, stage_environment


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_dynamodb(host: str = "127.0.0.1", port: int = 0) -> tuple[str, Callable[[], None]]:
    """moto's DynamoDB and S3 in a thread, one request at a time; (endpoint URL, stop)."""
    from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app
    from werkzeug.serving import WSGIRequestHandler, make_server

    lock = threading.Lock()
    backend = DomainDispatcherApplication(create_backend_app)

    def serialized(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        with lock:
            return list(backend(environ, start_response))

    class Quiet(WSGIRequestHandler):
        def log_request(self, *args: Any, **kwargs: Any) -> None:
            pass

    server = make_server(host, port or free_port(), serialized, threaded=True, request_handler=Quiet)
    threading.Thread(target=server.serve_forever, name="dynamodb", daemon=True).start()
    return f"http://{host}:{server.server_port}", server.shutdown


def create_reports_bucket(endpoint: str, env: dict[str, str]) -> None:
    """The reports bucket as described (resources.py), on a local S3 endpoint: lifecycle and CORS,
    not the deployed safeguards a plain-HTTP endpoint cannot have (the TLS-only policy)."""
    from botocore.config import Config

    from iot_playground.deploy.guards import reconcile_bucket

    path_style = Config(s3={"addressing_style": "path"})
    reconcile_bucket(
        local_session(env).client("s3", endpoint_url=endpoint, config=path_style), settings_for(env)
    )


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
    """Serve the API until Ctrl-C or SIGTERM; the exit code of `chalice local`."""
    from iot_playground.deploy.guards import ensure_tables
    from iot_playground.local import gateway
    from iot_playground.local.mqtt import start_mqtt

    env = {**LOCAL_CREDENTIALS, **{k: v for k, v in os.environ.items() if k.startswith("AWS_")}}
    # The stage's settings, each overridable from the shell (MAX_CONCURRENT_RUNS=10 make run).
    env.update({k: os.environ.get(k, v) for k, v in stage_environment(stage).items()})
    admin_key = os.environ.get("ADMIN_API_KEY", "").strip() or secrets.token_urlsafe(24)
    endpoint = os.environ.get("DYNAMODB_ENDPOINT")
    embedded = not endpoint
    stop_endpoint: Callable[[], None] = lambda: None  # noqa: E731
    if not endpoint:
        endpoint, stop_endpoint = start_dynamodb()
        print(f"embedded DynamoDB endpoint on {endpoint}", flush=True)
    created = ensure_tables(endpoint_client(endpoint, env), settings_for(env))
    print(f"tables ready ({'created ' + ', '.join(created) if created else 'already there'})", flush=True)
    # Another DynamoDB endpoint says nothing of S3: then S3_ENDPOINT, or the account's S3.
    if s3_endpoint := os.environ.get("S3_ENDPOINT") or (endpoint if embedded else None):
        env["S3_ENDPOINT"] = s3_endpoint
        create_reports_bucket(s3_endpoint, env)
    env["DYNAMODB_ENDPOINT"] = endpoint
    inner = free_port()
    chalice_cli = str(Path(sys.executable).with_name("chalice"))
    command = [chalice_cli, "local", "--stage", stage, "--port", str(inner)]
    command += [] if autoreload else ["--no-autoreload"]
    chalice = subprocess.Popen(command, cwd=PROJECT_ROOT, env={**os.environ, **env})
    signal.signal(signal.SIGTERM, lambda *_: chalice.terminate())
    stop_mqtt: Callable[[], None] = lambda: None  # noqa: E731
    try:
        wait_for_http(f"http://127.0.0.1:{inner}/api/health", 60, chalice)
        os.environ.update(env)  # the app in this process too: its routes, and its SQS handler
        if str(PROJECT_ROOT) not in sys.path:  # `.venv/bin/iot-playground` (make run): app.py is no package
            sys.path.insert(0, str(PROJECT_ROOT))
        import app

        mqtt_url, stop_mqtt = start_mqtt(stage, app.ingest_device_messages)
        origins = settings_for(env).cors_origins
        server = gateway.start(host, port, inner, app.app.routes, origins, admin_key)
        threading.Thread(target=server.serve_forever, name="gateway", daemon=True).start()
        print(f"MQTT broker on {mqtt_url}: {device_topic(stage, '<runId>', '<sensorId>')}", flush=True)
        print(f"admin API key (x-api-key of POST /api/runs/interrupt-all): {admin_key}", flush=True)
        print(f"IoT Playground API on http://{host}:{port} (Ctrl-C stops)", flush=True)
        return chalice.wait()
    except KeyboardInterrupt:
        return 0
    finally:
        stop_mqtt()
        if chalice.poll() is None:
            chalice.terminate()
            try:
                chalice.wait(timeout=10)
            except subprocess.TimeoutExpired:
                chalice.kill()
        stop_endpoint()
