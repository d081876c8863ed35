"""One cold start, in the interpreter that runs this file (`benchmarks/coldstart.py` starts a
new one per measurement): import a handler, serve one API Gateway event, print the times.

    python -I benchmarks/coldstart_probe.py app|reference <event.json> <project root>
    python -I benchmarks/coldstart_probe.py boto3|botocore|app-client <project root>

Only `sys` and `time` (built into the interpreter) are imported before the clock starts, so
the handler pays for everything it imports itself.
"""

import sys
import time

started, started_cpu = time.perf_counter(), time.process_time()


def main() -> None:
    from typing import Any

    kind = sys.argv[1]
    sys.path.insert(0, sys.argv[-1])
    handler: Any
    if kind == "app":
        import app

        handler = app.app
    elif kind == "reference":
        from benchmarks import reference_handler

        handler = reference_handler.handler
    else:
        client_only(kind)
        return
    imported = time.perf_counter()
    import json  # both handlers have imported it by now

    from benchmarks.lambda_event import Context

    with open(sys.argv[2], encoding="utf-8") as file:
        event = json.load(file)
    response = handler(event, Context())
    done, done_cpu = time.perf_counter(), time.process_time()
    if response.get("statusCode") != 200:
        raise SystemExit(f"{kind} answered {response}")
    report(started, imported, done, started_cpu, done_cpu)


def client_only(kind: str) -> None:
    """Import an SDK and create a DynamoDB client: boto3's way, botocore's own, or the app's
    (chalicelib.parts.client: botocore with the app's config and hooks). Reports the import (as
    `init_ms`) and the client's creation (as `first_request_ms`) apart."""
    if kind == "boto3":
        import boto3

        imported = time.perf_counter()
        boto3.client("dynamodb")
    elif kind == "botocore":
        import botocore.session

        imported = time.perf_counter()
        botocore.session.get_session().create_client("dynamodb")
    else:
        import botocore.session  # what the app's client imports, timed as the import

        from chalicelib.parts import client

        imported = time.perf_counter()
        client("dynamodb", None)
    done, done_cpu = time.perf_counter(), time.process_time()
    report(started, imported, done, started_cpu, done_cpu)


def report(t0: float, t1: float, t2: float, c0: float, c2: float) -> None:
    import json

    print(json.dumps({"init_ms": (t1 - t0) * 1000, "first_request_ms": (t2 - t1) * 1000,
                      "total_ms": (t2 - t0) * 1000, "cpu_ms": (c2 - c0) * 1000}))  # fmt: skip


if __name__ == "__main__":
    main()
