"""`make bench`: what a reading costs, what a request reads, how fast the app is warm and
cold, how big the package is, and what a month costs at three volumes.

    python -m benchmarks.run                 # the full run: prints the tables, writes bench/results.json
    python -m benchmarks.run --smoke         # tiny sizes, seconds (part of `make test`)

Everything runs on this machine against moto's DynamoDB on loopback (no AWS account):
the app is imported in this process and invoked through its Lambda handler with API
Gateway proxy events, its DynamoDB client hooked (`benchmarks/dynamodb_units.py`) so that
requests, write and read units come from the requests it actually sends, and its log and
EMF output counted byte by byte. Cold starts run in fresh interpreters
(`benchmarks/coldstart.py`). Prices: `iot_playground/deploy/prices.py`. Each assumption is
printed next to the figure it makes.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import logging
import math
import os
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks import coldstart
from benchmarks.dynamodb_units import STORAGE_OVERHEAD_BYTES, Call, Recorder, indexes_holding, item_size
from iot_playground.common.endpoints import LOCAL_CREDENTIALS, endpoint_client
from iot_playground.common.stages import Stage
from iot_playground.deploy import prices
from iot_playground.local.local_stack import start_dynamodb

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results.json"
BENCH_TABLES = {"runs": "iot-playground-runs-bench", "readings": "iot-playground-readings-bench"}
USER = "bench"
SENSORS = [f"sensor-{n}" for n in range(1, 101)]  # a run's most (100)
DAY = 86_400
MONTH_DAYS = 30

# ---- assumptions of the cost model (each printed beside its figure) ------------------
DYNAMODB_LATENCY_MS = 8.0  # per DynamoDB request from Lambda in-region (moto's is not AWS's)
PLATFORM_LOG_BYTES = 290  # START, END and REPORT lines Lambda writes per invocation
RUN_SENSORS = 100  # a run's sensors (the frontend's maximum)
BATCH_SENSORS = 10  # sensors in a measured batch: a batch of 100 is 10 rounds of 10 sensors
ROUND_MS = 1_000
READINGS_PER_SENSOR_SECOND = 5  # the frontend's fastest interval, 200 ms
RUN_HOURS = 1  # a run lasts an hour: a new run id, so new custom metrics, every hour
STATUS_REREAD_CONTAINERS = 10  # warm containers per run, each re-reading its status every 2 s
POLLING_PER_SECOND = 1  # one open tab per run polls can-start and running each second
DAILY_VOLUMES = (10_000, 1_000_000, 100_000_000)


@dataclass(frozen=True, slots=True)
class Sizes:
    history: tuple[int, ...]
    batches: tuple[int, ...]
    warm_requests: int
    cold_runs: int
    client_runs: int


FULL = Sizes(
    history=(10, 1_000, 10_000), batches=(25, 100, 500), warm_requests=100, cold_runs=10, client_runs=20
)
SMOKE = Sizes(history=(2, 5), batches=(25, 100, 500), warm_requests=4, cold_runs=1, client_runs=1)


# ---- the app, invoked as Lambda invokes it -------------------------------------------


class _Output(io.TextIOBase):
    """stdout while a request runs: log lines and EMF documents, counted in bytes."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self._partial = ""

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        parts = (self._partial + text).split("\n")
        self._partial = parts.pop()
        self.lines.extend(parts)
        return len(text)

    @property
    def bytes(self) -> int:
        return sum(len(line.encode("utf-8")) + 1 for line in self.lines)

    def emf(self) -> list[dict[str, Any]]:
        documents = []
        for line in self.lines:
            if line.startswith("{") and '"_aws"' in line:
                documents.append(json.loads(line))
        return documents


@dataclass(slots=True)
class Invocation:
    status: int
    body: Any
    seconds: float
    calls: list[Call]
    output: _Output

    @property
    def aws_seconds(self) -> float:
        return sum(call.seconds for call in self.calls)

    @property
    def overhead_ms(self) -> float:
        return (self.seconds - self.aws_seconds) * 1000


class Context:
    function_name = "iot-playground-bench"
    function_version = "$LATEST"
    memory_limit_in_mb = 1024
    invoked_function_arn = "arn:aws:lambda:eu-west-3:123456789012:function:iot-playground-bench"
    log_group_name = "/aws/lambda/iot-playground-bench"
    log_stream_name = "bench"

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
    event = coldstart.api_event(method, resource)
    all_headers = {**event["headers"], "Content-Type": "application/json", **(headers or {})}
    concrete = resource
    for name, value in (path or {}).items():
        concrete = concrete.replace(f"{{{name}}}", value)
    event.update(
        path=concrete,
        headers=all_headers,
        multiValueHeaders={k: [v] for k, v in all_headers.items()},
        pathParameters=dict(path) if path else None,
        queryStringParameters=dict(query) if query else None,
        multiValueQueryStringParameters={k: [v] for k, v in query.items()} if query else None,
        body=None if body is None else json.dumps(body),
    )
    event["requestContext"].update(path=f"/api{concrete}", requestId=str(uuid.uuid4()))
    return event


class App:
    """The app imported here, with its stage's settings and the bench's tables."""

    def __init__(self, env: Mapping[str, str], reader: Any):
        os.environ.update(env)
        import app as module  # after the environment: settings are read at import
        from chalicelib import aws, logs

        self._handler = module.app
        handler = logs.logger.registered_handler
        assert isinstance(handler, logging.StreamHandler)  # Powertools logs to stdout
        self._log_handler = handler
        self.recorder = Recorder(aws.dynamodb_client(), BENCH_TABLES, reader)

    def invoke(self, method: str, resource: str, **kwargs: Any) -> Invocation:
        event = api_event(method, resource, **kwargs)
        output = _Output()
        previous = self._log_handler.setStream(output)
        try:
            with self.recorder.capture() as calls, contextlib.redirect_stdout(output):
                started = time.perf_counter()
                response = self._handler(event, Context())
                seconds = time.perf_counter() - started
        finally:
            self._log_handler.setStream(previous)
        body = json.loads(response["body"]) if response.get("body") else None
        return Invocation(response["statusCode"], body, seconds, calls, output)

    def ok(self, method: str, resource: str, **kwargs: Any) -> Invocation:
        result = self.invoke(method, resource, **kwargs)
        if result.status >= 300:
            raise RuntimeError(f"{method} {resource} answered {result.status}: {result.body}")
        return result

    def start_run(self, sensors: list[str], user: str = USER) -> str:
        body = {"sensorIds": sensors, "duration": 86_400, "interval": 1}
        run = self.ok("POST", "/api/runs/start", body=body, headers={"X-User": user}).body
        return str(run["id"])

    def post(self, run_id: str, body: Any, user: str = USER) -> Invocation:
        headers = {"X-User": user, "X-Run-Id": run_id}
        return self.ok("POST", "/api/sensors/data", body=body, headers=headers)


# ---- measurements ----------------------------------------------------------------------


class Clock:
    """Distinct reading timestamps (ms), so no two readings of a sensor collide."""

    def __init__(self) -> None:
        self._next = int(time.time() * 1000) - 3_600_000

    def take(self, count: int = 1) -> int:
        first = self._next
        self._next += count
        return first


def _reading_body(shape: str, count: int, clock: Clock, sensors: list[str]) -> Any:
    if shape == "single":
        return {"sensorId": sensors[0], "reading": 21.5, "type": "temperature", "timestamp": clock.take()}
    if shape == "measurement":
        return {
            "sensorId": sensors[0],
            "temperature": 21.5,
            "humidity": 40.0,
            "pressure": 1013.2,
            "timestamp": clock.take(),
        }
    # A batch: one reading per sensor per round, a round a second, as a client buffering
    # its sensors sends them.
    rounds = -(-count // len(sensors))
    first = clock.take(rounds * ROUND_MS)
    return [
        {
            "sensorId": sensors[i % len(sensors)],
            "reading": round(15 + (i % 200) / 10, 1),
            "type": "temperature",
            "timestamp": first + (i // len(sensors)) * ROUND_MS,
        }
        for i in range(count)
    ]


def measure_writes(app: App, run_id: str, batches: tuple[int, ...], clock: Clock) -> list[dict[str, Any]]:
    shapes = [("single", 1), ("measurement", 3)] + [(f"batch of {n}", n) for n in batches]
    rows = []
    for shape, readings in shapes:
        result = app.post(run_id, _reading_body(shape.split()[0], readings, clock, SENSORS[:BATCH_SENSORS]))
        # Items written, whatever their relation to readings (chalicelib/readings.py decides).
        written = [w for call in result.calls for w in call.written]
        if not written:
            raise RuntimeError(f"{shape}: the app wrote nothing")
        rows.append(
            {
                "shape": shape,
                "readings": readings,
                "requests": len(result.calls),
                "operations": sorted({call.operation for call in result.calls}),
                "write_units": sum(call.write_units for call in result.calls),
                "requests_per_reading": len(result.calls) / readings,
                "write_units_per_reading": sum(call.write_units for call in result.calls) / readings,
                "items_written": len(written),
                "item_bytes_per_reading": sum(w.size for w in written) / readings,
                "indexes_per_item": statistics.mean(len(w.indexes) for w in written),
                "log_bytes": result.output.bytes,
                "emf_documents": len(result.output.emf()),
            }
        )
    return rows


def measure_storage(client: Any, readings: int) -> dict[str, Any]:
    """What the readings table holds after the writes, per reading: the items as stored (a
    layout may keep several readings in one item), plus 100 bytes for each, in the table and
    in each index holding it."""
    from chalicelib.tables import READINGS

    items: list[dict[str, Any]] = []
    for page in client.get_paginator("scan").paginate(TableName=BENCH_TABLES["readings"]):
        items.extend(page["Items"])
    stored = sum(
        (item_size(item) + STORAGE_OVERHEAD_BYTES) * (1 + len(indexes_holding(item, READINGS)))
        for item in items
    )
    return {"readings": readings, "items": len(items), "stored_bytes_per_reading": stored / readings}


def _finished_run_items(count: int, offset: int) -> list[dict[str, Any]]:
    from chalicelib.run_shape import Run, run_to_item

    started = int(time.time() * 1000) - 400 * DAY * 1000
    return [
        run_to_item(
            Run(
                id=str(uuid.UUID(int=offset + n + 1)),
                username=f"user-{(offset + n) % 50}",
                status="SUCCESS",
                started_ms=started + (offset + n) * 60_000,
                duration=60,
                interval=1,
                sensor_ids=tuple(SENSORS[:BATCH_SENSORS]),
                finished_ms=started + (offset + n) * 60_000 + 60_000,
            )
        )
        for n in range(count)
    ]


def add_history(client: Any, count: int, offset: int) -> None:
    """Finished runs written straight into the runs table, 25 per BatchWriteItem."""
    items = _finished_run_items(count, offset)
    for start in range(0, len(items), 25):
        pending = [{"PutRequest": {"Item": item}} for item in items[start : start + 25]]
        while pending:
            answer = client.batch_write_item(RequestItems={BENCH_TABLES["runs"]: pending})
            pending = answer.get("UnprocessedItems", {}).get(BENCH_TABLES["runs"], [])


READ_ROUTES: tuple[tuple[str, str, str, dict[str, str] | None], ...] = (
    ("can-start", "GET", "/api/runs/can-start", None),
    ("running", "GET", "/api/runs/running", None),
    ("runs, first page", "GET", "/api/runs", {}),
    ("readings of a run, first page", "GET", "/api/sensors/data", {"runId": ""}),
)


def measure_reads(app: App, client: Any, run_id: str, history: tuple[int, ...]) -> list[dict[str, Any]]:
    rows, written = [], 0
    for level in history:
        add_history(client, level - written, written)
        written = level
        for name, method, resource, query in READ_ROUTES:
            if query is not None and "runId" in query:
                query = {"runId": run_id}
            result = app.ok(method, resource, query=query)
            rows.append(
                {
                    "finished_runs": level,
                    "route": name,
                    "requests": len(result.calls),
                    "operations": sorted({call.operation for call in result.calls}),
                    "items_read": sum(call.items_read for call in result.calls),
                    "read_units": sum(call.read_units for call in result.calls),
                }
            )
    return rows


def _percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, math.ceil(fraction * len(ordered)) - 1)]


def measure_warm(app: App, run_id: str, requests: int, clock: Clock) -> list[dict[str, Any]]:
    """Each route `requests` times, interleaved; overhead = handler time minus time in botocore calls."""
    routes: list[tuple[str, Any]] = [
        (
            "POST /api/sensors/data (1 reading)",
            lambda: app.post(run_id, _reading_body("single", 1, clock, SENSORS)),
        ),
        (
            "POST /api/sensors/data (batch of 100)",
            lambda: app.post(run_id, _reading_body("batch", 100, clock, SENSORS[:BATCH_SENSORS])),
        ),
        ("GET /api/runs/can-start", lambda: app.ok("GET", "/api/runs/can-start")),
        ("GET /api/runs/running", lambda: app.ok("GET", "/api/runs/running")),
        ("GET /api/runs", lambda: app.ok("GET", "/api/runs")),
        ("GET /api/sensors/data?runId=", lambda: app.ok("GET", "/api/sensors/data", query={"runId": run_id})),
    ]
    samples: dict[str, list[Invocation]] = {name: [] for name, _ in routes}
    for _ in range(requests):
        for name, request in routes:
            samples[name].append(request())
    return [
        {
            "route": name,
            "requests": len(results),
            "dynamodb_requests": statistics.median(len(r.calls) for r in results),
            "overhead_median_ms": statistics.median(r.overhead_ms for r in results),
            "overhead_p99_ms": _percentile([r.overhead_ms for r in results], 0.99),
            "total_median_ms": statistics.median(r.seconds * 1000 for r in results),
            "log_bytes_median": statistics.median(r.output.bytes for r in results),
        }
        for name, results in samples.items()
    ]


def metric_combinations(app: App, sensors: int, user: str) -> int:
    """Distinct metric + dimension combinations one run's readings create, from the EMF
    documents the app writes for one round of `sensors` sensors (one type)."""
    run_id = app.start_run(SENSORS[:sensors], user=user)
    try:
        clock = Clock()
        result = app.post(run_id, _reading_body("batch", sensors, clock, SENSORS[:sensors]), user=user)
        combinations = set()
        for document in result.output.emf():
            for directive in document["_aws"]["CloudWatchMetrics"]:
                for dimensions in directive["Dimensions"]:
                    values = tuple((d, document[d]) for d in dimensions)
                    for metric in directive["Metrics"]:
                        combinations.add((directive["Namespace"], metric["Name"], values))
        return len(combinations)
    finally:
        app.ok("POST", "/api/runs/{run_id}/finish", path={"run_id": run_id}, body={"status": "SUCCESS"})


def measure_package(stage: str, zip_path: Path | None) -> dict[str, Any]:
    from iot_playground.deploy.packaging import package_cloudformation, package_sizes

    if zip_path is None:
        with tempfile.TemporaryDirectory(prefix="bench-package-") as scratch:
            package_cloudformation(stage, Path(scratch) / stage)
            zipped, unzipped = package_sizes(Path(scratch) / stage / "deployment.zip")
    else:
        zipped, unzipped = package_sizes(zip_path)
    return {"stage": stage, "zipped_bytes": zipped, "unzipped_bytes": unzipped}


# ---- the monthly cost model ---------------------------------------------------------------


def _line(item: str, cost: float, quantity: str, assumption: str) -> dict[str, Any]:
    return {"item": item, "usd": round(cost, 2), "quantity": quantity, "assumption": assumption}


def monthly_cost(
    readings_per_day: int,
    batch: int,
    measured: dict[str, Any],
    memory_mb: int,
    ttl_days: int,
) -> dict[str, Any]:
    writes = {row["shape"]: row for row in measured["writes"]}
    write = writes["single"] if batch == 1 else writes[f"batch of {batch}"]
    warm = {row["route"]: row for row in measured["warm"]}
    route = (
        "POST /api/sensors/data (1 reading)" if batch == 1 else f"POST /api/sensors/data (batch of {batch})"
    )
    reads = {
        row["route"]: row for row in measured["reads"] if row["finished_runs"] == max(measured["history"])
    }
    readings = readings_per_day * MONTH_DAYS
    requests = readings / batch
    run_hours_per_day = max(
        1, math.ceil(readings_per_day / (RUN_SENSORS * READINGS_PER_SENSOR_SECOND * 3600))
    )
    poll_requests = run_hours_per_day * MONTH_DAYS * 3600 * POLLING_PER_SECOND * 2
    dynamodb_calls = write["requests"]
    duration_ms = math.ceil(warm[route]["overhead_median_ms"] + dynamodb_calls * DYNAMODB_LATENCY_MS)
    poll_ms = math.ceil(
        statistics.mean(
            warm[r]["overhead_median_ms"] for r in ("GET /api/runs/can-start", "GET /api/runs/running")
        )
        + DYNAMODB_LATENCY_MS
    )
    gb_seconds = (requests * duration_ms + poll_requests * poll_ms) / 1000 * memory_mb / 1024
    write_units = readings * write["write_units_per_reading"]
    status_reads = run_hours_per_day * MONTH_DAYS * 3600 / 2 * STATUS_REREAD_CONTAINERS
    poll_read_units = (
        run_hours_per_day
        * MONTH_DAYS
        * 3600
        * POLLING_PER_SECOND
        * (reads["can-start"]["read_units"] + reads["running"]["read_units"])
    )
    read_units = poll_read_units + status_reads * 1.0
    # As this shape stores them: its items, plus DynamoDB's 100 B per item in the table and in
    # each index holding it (the table as a whole, after all shapes, is in measured["storage"]).
    stored_per_reading = write["item_bytes_per_reading"] + STORAGE_OVERHEAD_BYTES * write[
        "items_written"
    ] / write["readings"] * (1 + write["indexes_per_item"])
    stored_gb = readings_per_day * ttl_days * stored_per_reading / 1e9
    log_bytes = requests * (warm[route]["log_bytes_median"] + PLATFORM_LOG_BYTES) + poll_requests * (
        statistics.mean(
            warm[r]["log_bytes_median"] for r in ("GET /api/runs/can-start", "GET /api/runs/running")
        )
        + PLATFORM_LOG_BYTES
    )
    metric_hours = run_hours_per_day * MONTH_DAYS * measured["metrics_per_run"] * RUN_HOURS
    metric_months = metric_hours / prices.HOURS_PER_MONTH
    lines = [
        _line(
            "API Gateway REST",
            (requests + poll_requests) / 1e6 * prices.API_GATEWAY_REST.usd,
            f"{requests + poll_requests:,.0f} requests",
            f"{requests:,.0f} posts + {poll_requests:,.0f} polls (one tab per run, can-start and running "
            f"each second); {prices.API_GATEWAY_REST.note}",
        ),
        _line(
            "Lambda requests",
            (requests + poll_requests) / 1e6 * prices.LAMBDA_REQUESTS.usd,
            f"{requests + poll_requests:,.0f} invocations",
            "one invocation per API request",
        ),
        _line(
            "Lambda compute",
            gb_seconds * prices.LAMBDA_GB_SECOND.usd,
            f"{gb_seconds:,.0f} GB-s",
            f"{memory_mb} MB x ({duration_ms} ms a post, {poll_ms} ms a poll): measured warm overhead + "
            f"{DYNAMODB_LATENCY_MS:g} ms per DynamoDB request (assumed in-region latency)",
        ),
        _line(
            "DynamoDB writes",
            write_units / 1e6 * prices.DYNAMODB_WRITE.usd,
            f"{write_units:,.0f} WRU",
            f"{write['write_units_per_reading']:g} WRU a reading, measured from the items written "
            f"(table + {write['indexes_per_item']:g} indexes)",
        ),
        _line(
            "DynamoDB reads",
            read_units / 1e6 * prices.DYNAMODB_READ.usd,
            f"{read_units:,.0f} RRU",
            f"polling ({reads['can-start']['read_units']:g} + {reads['running']['read_units']:g} RRU, "
            "measured) "
            f"and run-status re-reads ({STATUS_REREAD_CONTAINERS} containers a run, every 2 s, 1 RRU)",
        ),
        _line(
            "DynamoDB storage",
            stored_gb * prices.DYNAMODB_STORAGE.usd,
            f"{stored_gb:,.2f} GB",
            f"{ttl_days} days of readings (READING_TTL_DAYS) x {stored_per_reading:.0f} B a reading, "
            "measured for this body (items + 100 B per table and index entry); no free tier counted",
        ),
        _line(
            "CloudWatch Logs ingestion",
            log_bytes / 1e9 * prices.CLOUDWATCH_LOGS_INGESTION.usd,
            f"{log_bytes / 1e9:,.2f} GB",
            f"measured log + EMF bytes a request ({warm[route]['log_bytes_median']:.0f} B a post) + "
            f"{PLATFORM_LOG_BYTES} B of Lambda START/END/REPORT lines (assumed)",
        ),
        _line(
            "CloudWatch custom metrics",
            prices.tiered(metric_months, prices.CLOUDWATCH_CUSTOM_METRICS),
            f"{metric_months:,.1f} metric-months",
            f"{measured['metrics_per_run']} metric+dimension combinations a run (measured from its EMF, "
            f"{RUN_SENSORS} sensors, one type); a run lasts {RUN_HOURS} h, so {run_hours_per_day} run-hours "
            f"a day at {READINGS_PER_SENSOR_SECOND} readings a sensor a second",
        ),
    ]
    return {
        "readings_per_day": readings_per_day,
        "batch": batch,
        "lines": lines,
        "total_usd": round(sum(line["usd"] for line in lines), 2),
    }


# ---- orchestration and output ----------------------------------------------------------


def stage_env(stage: Stage, endpoint: str) -> dict[str, str]:
    return {
        **LOCAL_CREDENTIALS,
        "AWS_REGION": LOCAL_CREDENTIALS["AWS_DEFAULT_REGION"],
        **stage.environment,
        "STAGE": "bench",
        "RUNS_TABLE": BENCH_TABLES["runs"],
        "READINGS_TABLE": BENCH_TABLES["readings"],
        "PAGINATION_TOKEN_SECRET": "bench-secret-of-at-least-thirty-two-chars",
        "DYNAMODB_ENDPOINT": endpoint,
        "AWS_LAMBDA_FUNCTION_NAME": "iot-playground-bench",
        "POWERTOOLS_SERVICE_NAME": "iot-playground",
    }


@contextlib.contextmanager
def dynamodb(stage: Stage) -> Iterator[tuple[str, dict[str, str]]]:
    from chalicelib.settings import load_settings
    from iot_playground.deploy.tables_admin import ensure_tables

    endpoint, stop = start_dynamodb()
    env = stage_env(stage, endpoint)
    saved = dict(os.environ)
    os.environ.update(env)
    try:
        ensure_tables(endpoint_client(endpoint), load_settings())
    finally:
        os.environ.clear()
        os.environ.update(saved)
    try:
        yield endpoint, env
    finally:
        stop()


def run(sizes: Sizes, stage_name: str, package_zip: Path | None, progress: Any = print) -> dict[str, Any]:
    stage = Stage.load(stage_name)
    memory_mb = int(stage.settings["lambda_memory_size"])
    ttl_days = int(stage.environment.get("READING_TTL_DAYS", "30"))
    results: dict[str, Any] = {"stage": stage_name, "history": list(sizes.history)}
    with dynamodb(stage) as (endpoint, env):
        probe_env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), **env}
        progress("cold starts (fresh interpreters, app and reference alternated)")
        results["cold_start"] = coldstart.compare(probe_env, sizes.cold_runs)
        results["sdk_clients"] = coldstart.sdk_clients(probe_env, sizes.client_runs)
        side_client = endpoint_client(endpoint)
        app = App(env, side_client)
        clock = Clock()
        run_id = app.start_run(SENSORS)
        # Steady state: the run's status cached, and its record of the widest chunk span
        # (widened once or twice in a run's life, by its first batches) already as wide as
        # the batches measured: 20 rounds of 10 sensors, chunks spanning 10 s.
        app.post(run_id, _reading_body("batch", 200, clock, SENSORS[:BATCH_SENSORS]))
        progress("writes per reading")
        results["writes"] = measure_writes(app, run_id, sizes.batches, clock)
        results["storage"] = measure_storage(
            side_client, readings=1 + sum(row["readings"] for row in results["writes"])
        )
        # Warm before the history grows: moto's answers slow down with table size, the app's work does not.
        progress(f"warm requests ({sizes.warm_requests} per route)")
        results["warm"] = measure_warm(app, run_id, sizes.warm_requests, clock)
        results["metrics_per_run"] = metric_combinations(app, RUN_SENSORS, user="bench-metrics")
        progress("reads per call with history " + ", ".join(f"{n:,}" for n in sizes.history))
        results["reads"] = measure_reads(app, side_client, run_id, sizes.history)
        progress(f"cold starts again, with {sizes.history[-1]:,} finished runs in history")
        results["cold_start_history"] = coldstart.compare(probe_env, sizes.cold_runs)
        app.ok("POST", "/api/runs/{run_id}/finish", path={"run_id": run_id}, body={"status": "SUCCESS"})
        app.recorder.close()
    progress("package")
    results["package"] = measure_package(stage_name, package_zip)
    results["cost"] = [
        monthly_cost(volume, batch, results, memory_mb, ttl_days)
        for volume in DAILY_VOLUMES
        for batch in (1, 100)
    ]
    results["prices"] = {"region": prices.REGION, "as_of": prices.AS_OF}
    results["assumptions"] = {
        "dynamodb_latency_ms": DYNAMODB_LATENCY_MS,
        "platform_log_bytes": PLATFORM_LOG_BYTES,
        "run_sensors": RUN_SENSORS,
        "readings_per_sensor_second": READINGS_PER_SENSOR_SECOND,
        "run_hours": RUN_HOURS,
        "month_days": MONTH_DAYS,
        "memory_mb": memory_mb,
        "reading_ttl_days": ttl_days,
    }
    return results


def render(results: dict[str, Any]) -> str:
    out: list[str] = []
    add = out.append
    add("## Writes per reading (steady state: the run's status is cached)\n")
    add(
        "| body | readings | DynamoDB requests | items written | requests / reading | write units "
        "| WRU / reading | item bytes / reading |"
    )
    add("|---|---|---|---|---|---|---|---|")
    for row in results["writes"]:
        add(
            f"| {row['shape']} | {row['readings']} | {row['requests']} {'+'.join(row['operations'])} | "
            f"{row['items_written']} | {row['requests_per_reading']:.3f} | {row['write_units']} | "
            f"{row['write_units_per_reading']:g} | "
            f"{row['item_bytes_per_reading']:.0f} |"
        )
    add("\nWrite units: ceil(item bytes / 1 KB) for the table and again for each index holding the item.\n")
    storage = results["storage"]
    add(
        f"Stored: {storage['items']} items for {storage['readings']} readings, "
        f"{storage['stored_bytes_per_reading']:.0f} B a reading with the table's and indexes' overhead.\n"
    )
    add("## Reads per call, by finished runs in history\n")
    levels = results["history"]
    add("| route | " + " | ".join(f"{n:,} runs" for n in levels) + " |")
    add("|---|" + "---|" * len(levels))
    by_route: dict[str, list[dict[str, Any]]] = {}
    for row in results["reads"]:
        by_route.setdefault(row["route"], []).append(row)
    for route, rows in by_route.items():
        cells = [f"{r['items_read']} items, {r['read_units']:g} RRU ({r['requests']} req)" for r in rows]
        add(f"| {route} | " + " | ".join(cells) + " |")
    add("\n## Warm requests (through the Lambda handler; overhead = time outside DynamoDB calls)\n")
    add("| route | DynamoDB requests | overhead median | overhead p99 | log + EMF bytes |")
    add("|---|---|---|---|---|")
    for row in results["warm"]:
        add(
            f"| {row['route']} | {row['dynamodb_requests']:g} | {row['overhead_median_ms']:.2f} ms | "
            f"{row['overhead_p99_ms']:.2f} ms | {row['log_bytes_median']:.0f} |"
        )
    cold = results["cold_start"]
    add(f"\n## Cold start ({cold['runs']} runs each, alternated; {cold['route']}; medians)\n")
    add("| runs table | design | init | first request | total | CPU | ratio app / reference |")
    add("|---|---|---|---|---|---|---|")
    tables = (("empty", cold), (f"{results['history'][-1]:,} finished runs", results["cold_start_history"]))
    for table, measured in tables:
        for name, label in (("app", "this app"), ("reference", "reference (seed: boto3, 2 clients, Scan)")):
            row = measured[name]
            ratio = f"**{measured['ratio']:.2f}** (CPU {measured['cpu_ratio']:.2f})" if name == "app" else ""
            add(
                f"| {table} | {label} | {row['init_ms']:.0f} ms | {row['first_request_ms']:.0f} ms | "
                f"{row['total_ms']:.0f} ms | {row['cpu_ms']:.0f} ms | {ratio} |"
            )
    add("")
    add("| SDK: import, then one DynamoDB client | import | client | total | CPU |")
    add("|---|---|---|---|---|")
    for name, row in results["sdk_clients"].items():
        add(
            f"| {name} | {row['init_ms']:.0f} ms | {row['first_request_ms']:.0f} ms | "
            f"{row['total_ms']:.0f} ms | {row['cpu_ms']:.0f} ms |"
        )
    package = results["package"]
    add(f"\n## Package ({package['stage']})\n")
    add(
        f"deployment.zip: {package['zipped_bytes'] / 1024:.0f} KiB zipped, "
        f"{package['unzipped_bytes'] / 1024:.0f} KiB unzipped\n"
    )
    add(
        f"## Monthly cost, {results['prices']['region']} list prices of {results['prices']['as_of']} "
        f"(iot_playground/deploy/prices.py), 30-day month\n"
    )
    for scenario in results["cost"]:
        sent = "singly" if scenario["batch"] == 1 else f"in batches of {scenario['batch']}"
        add(
            f"### {scenario['readings_per_day']:,} readings a day, sent {sent}: "
            f"**${scenario['total_usd']:,.2f} a month**\n"
        )
        add("| item | quantity | USD | assumption |")
        add("|---|---|---|---|")
        for line in scenario["lines"]:
            add(f"| {line['item']} | {line['quantity']} | {line['usd']:,.2f} | {line['assumption']} |")
        add("")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--smoke", action="store_true", help="tiny sizes: checks the bench, measures little")
    parser.add_argument("--stage", default="prod", choices=("dev", "prod"), help="memory, TTL and settings")
    parser.add_argument(
        "--package-zip", type=Path, help="measure this deployment.zip instead of building one"
    )
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    started = time.perf_counter()
    results = run(
        SMOKE if args.smoke else FULL,
        args.stage,
        args.package_zip,
        progress=lambda step: print(f"... {step}", file=sys.stderr, flush=True),
    )
    results["seconds"] = round(time.perf_counter() - started, 1)
    print(render(results))
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(results, indent=2, default=str) + "\n")
    print(f"\n{args.output} written in {results['seconds']} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
