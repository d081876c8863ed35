"""Run inside a bare interpreter (stdlib + boto3, like the Lambda Python runtime):
import the unzipped deployment package and invoke it as Lambda would, with the
layers' content on the path after the code, where Lambda puts /opt/python.

    python -I lambda_runtime_driver.py <unzipped deployment.zip> [<layer content>...]

Prints one JSON object per invocation; the test reads them.
"""

from __future__ import annotations

import importlib.util
import json
import sys
import uuid
from typing import Any


class Context:
    """The attributes of the Lambda context object the app and its libraries read."""

    function_name = "iot-playground-dev"
    function_version = "$LATEST"
    memory_limit_in_mb = 512
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:iot-playground-dev"
    log_group_name = "/aws/lambda/iot-playground-dev"
    log_stream_name = "2026/01/01/[$LATEST]0"

    def __init__(self) -> None:
        self.aws_request_id = str(uuid.uuid4())

    def get_remaining_time_in_millis(self) -> int:
        return 15_000


def api_event(
    method: str,
    resource: str,
    body: Any = None,
    headers: dict[str, str] | None = None,
    path_parameters: dict[str, str] | None = None,
) -> dict[str, Any]:
    """An API Gateway REST (v1) proxy event, as the deployed API sends for a route."""
    all_headers = {"Content-Type": "application/json", "Host": "api.example", **(headers or {})}
    path = resource
    for name, value in (path_parameters or {}).items():
        path = path.replace(f"{{{name}}}", value)
    return {
        "resource": resource,
        "path": path,
        "httpMethod": method,
        "headers": all_headers,
        "multiValueHeaders": {k: [v] for k, v in all_headers.items()},
        "queryStringParameters": None,
        "multiValueQueryStringParameters": None,
        "pathParameters": path_parameters,
        "stageVariables": None,
        "requestContext": {
            "resourcePath": resource,
            "httpMethod": method,
            "path": f"/api{path}",
            "stage": "api",
            "requestId": str(uuid.uuid4()),
            "identity": {"sourceIp": "127.0.0.1"},
        },
        "body": None if body is None else json.dumps(body),
        "isBase64Encoded": False,
    }


# What EventBridge sends for `rate(1 minute)`.
SCHEDULED_EVENT = {
    "version": "0",
    "id": "53dc4d37-cffa-4f76-80c9-8b7d4a4d2eaa",
    "detail-type": "Scheduled Event",
    "source": "aws.events",
    "account": "123456789012",
    "time": "2026-01-01T00:00:00Z",
    "region": "us-east-1",
    "resources": ["arn:aws:events:us-east-1:123456789012:rule/iot-playground-dev-time_out_orphaned_runs"],
    "detail": {},
}


def main(code_dir: str, *layer_dirs: str) -> None:
    for name in ("moto", "pytest", "iot_playground", "aws_lambda_powertools"):
        if importlib.util.find_spec(name) is not None:
            raise SystemExit(f"{name} is importable: this is not a runtime-only interpreter")
    sys.path[0:0] = [code_dir, *layer_dirs]
    import app  # the package's app.py: what Lambda imports as handler `app.app`

    def call(event: dict[str, Any], expect: int) -> dict[str, Any]:
        response: dict[str, Any] = app.app(event, Context())
        body = json.loads(response["body"]) if response.get("body") else None
        result = {"path": event["path"], "status": response["statusCode"], "expected": expect, "body": body}
        print(json.dumps(result), flush=True)
        return result

    user = {"X-User": "runtime-check"}
    call(api_event("GET", "/api/health"), 200)
    call(api_event("GET", "/api/runs/can-start"), 200)
    started = call(
        api_event("POST", "/api/runs/start", {"sensorIds": ["s1"], "duration": 60, "interval": 1}, user), 201
    )
    run_id = started["body"]["id"]
    reading = {"sensorId": "s1", "type": "temperature", "reading": 21.5}
    call(api_event("POST", "/api/sensors/data", reading, {**user, "X-Run-Id": run_id}), 201)
    finish = api_event("POST", "/api/runs/{run_id}/finish", {"status": "SUCCESS"}, user, {"run_id": run_id})
    call(finish, 200)
    scheduled = app.time_out_orphaned_runs(SCHEDULED_EVENT, Context())
    chalice, powertools = (sys.modules[name].__file__ for name in ("chalice", "aws_lambda_powertools"))
    print(json.dumps({"path": "schedule", "result": scheduled, "chalice": chalice, "powertools": powertools}))


if __name__ == "__main__":
    main(*sys.argv[1:])
