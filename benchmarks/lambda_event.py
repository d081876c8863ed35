"""What Lambda hands the app's handler, to run it as Lambda would outside Lambda: an API Gateway
REST (v1) proxy event, as the deployed API sends it, and a context object.

Standard library only: the bare interpreters of the cold-start probe and of the runtime check
(tests/lambda_runtime_driver.py) import it too.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping
from typing import Any


class Context:
    """The attributes of Lambda's context object that the app and its libraries read."""

    function_name = "iot-playground-dev"
    function_version = "$LATEST"
    memory_limit_in_mb = 256
    invoked_function_arn = "arn:aws:lambda:eu-west-3:123456789012:function:iot-playground-dev"
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
    headers: Mapping[str, str] | None = None,
    path: Mapping[str, str] | None = None,
    query: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """The event of `method` on `resource` (`/api/runs/{run_id}`) with `path` parameters, a JSON
    `body` and `query`, under the stage `api`."""
    sent = {"Host": "api.example", "Accept": "application/json", "X-Forwarded-Proto": "https"}
    sent |= {"Content-Type": "application/json", **(headers or {})}
    concrete = resource
    for name, value in (path or {}).items():
        concrete = concrete.replace(f"{{{name}}}", value)
    return {
        "resource": resource,
        "path": concrete,
        "httpMethod": method,
        "headers": sent,
        "multiValueHeaders": {k: [v] for k, v in sent.items()},
        "queryStringParameters": dict(query) if query else None,
        "multiValueQueryStringParameters": {k: [v] for k, v in query.items()} if query else None,
        "pathParameters": dict(path) if path else None,
        "stageVariables": None,
        "requestContext": {
            "resourcePath": resource,
            "httpMethod": method,
            "path": f"/api{concrete}",
            "stage": "api",
            "requestId": str(uuid.uuid4()),
            "identity": {"sourceIp": "127.0.0.1"},
        },
        "body": None if body is None else json.dumps(body),
        "isBase64Encoded": False,
    }
