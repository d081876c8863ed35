"""The reference for the cold-start comparison: what the seed's handlers (the design this
project replaces) do in a new container.

At import: boto3, a DynamoDB client and a CloudWatch client (the seed published metrics with
PutMetricData). The first request, the frontend's `GET /api/runs/can-start`, is one Scan of
the runs table counting RUNNING runs. Only `benchmarks/coldstart.py` runs it, in a fresh
interpreter per measurement; it is never deployed.
"""

from __future__ import annotations

import json
import os
from typing import Any

import boto3

_endpoint = os.environ.get("DYNAMODB_ENDPOINT") or None
dynamodb = boto3.client("dynamodb", endpoint_url=_endpoint)
cloudwatch = boto3.client("cloudwatch")
RUNS_TABLE = os.environ["RUNS_TABLE"]
MAX_CONCURRENT_RUNS = int(os.environ.get("MAX_CONCURRENT_RUNS", "5"))


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    scan = dynamodb.scan(
        TableName=RUNS_TABLE,
        FilterExpression="#s = :running",
        ExpressionAttributeNames={"#s": "status"},
        ExpressionAttributeValues={":running": {"S": "RUNNING"}},
    )
    running = scan["Count"]
    available = max(0, MAX_CONCURRENT_RUNS - running)
    body = {"canStart": available > 0, "currentRunning": running, "maxAllowed": MAX_CONCURRENT_RUNS,
            "available": available}  # fmt: skip
    return {"statusCode": 200, "headers": {"Content-Type": "application/json"}, "body": json.dumps(body)}
