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
from pathlib import Path
from typing import Any

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
    sys.path.append(str(Path(__file__).resolve().parents[1] / "benchmarks"))  # not the project: its own
    from lambda_event import Context, api_event  # type: ignore[import-not-found]  # benchmarks/, on the path above

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
