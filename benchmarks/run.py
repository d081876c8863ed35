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
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks import coldstart, cost
from benchmarks.dynamodb_units import STORAGE_OVERHEAD_BYTES, Call, Recorder, indexes_holding, item_size
from benchmarks.lambda_event import Context, api_event
from iot_playground.common.endpoints import LOCAL_CREDENTIALS, endpoint_client
from iot_playground.common.stages import Stage
from iot_playground.deploy import prices
from iot_playground.local.local_stack import start_dynamodb

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results.json"
BENCH_TABLES = {
    f"{kind.upper()}_TABLE": f"iot-playground-{kind}-bench" for kind in ("runs", "readings", "idempotency")
}
USER = "bench"
SENSORS = [f"sensor-{n}" for n in range(1, 101)]  # a run's most (100)
DAY = 86_400
BATCH_SENSORS = 10  # sensors in a measured batch: a batch of 100 is 10 rounds of 10 sensors
ROUND_MS = 1_000
# The cost model and its assumptions (each printed beside its figure): benchmarks/cost.py.


@dataclass(frozen=True, slots=True)
class Sizes:
    history: tuple[int, ...]
    batches: tuple[int, ...]
    warm_requests: int
    cold_runs: int
    client_runs: int
    latest_readings: int  # readings of the RUNNING run `latest` reads
    report_runs: tuple[int, int]  # finished runs in the report ZIP, readings each


FULL = Sizes((10, 1_000, 10_000), (25, 100, 500), 100, 10, 20, 20_000, (20, 400))
SMOKE = Sizes((2, 5), (25, 100, 500), 4, 1, 1, 1_000, (2, 40))


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


class App:
    """The app imported here, with its stage's settings and the bench's tables."""

    def __init__(self, env: Mapping[str, str], reader: Any):
        os.environ.update(env)
        import app as module  # after the environment: settings are read at import
        from chalicelib.settings import logger

        self._handler = module.app
        handler = logger.registered_handler
        assert isinstance(handler, logging.StreamHandler)  # Powertools logs to stdout
        self._log_handler = handler
        self.recorder = Recorder(module.parts().dynamodb, BENCH_TABLES, reader)

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
    for page in client.get_paginator("scan").paginate(TableName=BENCH_TABLES["READINGS_TABLE"]):
        items.extend(page["Items"])
    stored = sum(
        (item_size(item) + STORAGE_OVERHEAD_BYTES) * (1 + len(indexes_holding(item, READINGS)))
        for item in items
    )
    return {"readings": readings, "items": len(items), "stored_bytes_per_reading": stored / readings}


def _finished_run_items(count: int, offset: int) -> list[dict[str, Any]]:
    from chalicelib.runs import Run

    started = int(time.time() * 1000) - 400 * DAY * 1000
    return [
        (
            Run(
                id=str(uuid.UUID(int=offset + n + 1)),
                username=f"user-{(offset + n) % 50}",
                status="SUCCESS",
                started_ms=started + (offset + n) * 60_000,
                duration=60,
                interval=1,
                sensor_ids=tuple(SENSORS[:BATCH_SENSORS]),
                finished_ms=started + (offset + n) * 60_000 + 60_000,
            ).item()
        )
        for n in range(count)
    ]


def add_history(client: Any, count: int, offset: int) -> None:
    """Finished runs written straight into the runs table, 25 per BatchWriteItem."""
    items = _finished_run_items(count, offset)
    for start in range(0, len(items), 25):
        pending = [{"PutRequest": {"Item": item}} for item in items[start : start + 25]]
        while pending:
            answer = client.batch_write_item(RequestItems={BENCH_TABLES["RUNS_TABLE"]: pending})
            pending = answer.get("UnprocessedItems", {}).get(BENCH_TABLES["RUNS_TABLE"], [])


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


def measure_latest(app: App, readings: int, clock: Clock) -> dict[str, Any]:
    """`GET /api/sensors/latest` and `/stats` of a RUNNING run of `readings` readings (100 sensors)."""
    run_id = app.start_run(SENSORS, user="bench-latest")
    for start in range(0, readings, 500):
        app.post(
            run_id, _reading_body("batch", min(500, readings - start), clock, SENSORS), user="bench-latest"
        )
    rows = {}
    for name, resource in (("latest", "/api/sensors/latest"), ("stats", "/api/runs/{run_id}/stats")):
        query = {"runId": run_id} if name == "latest" else None
        result = app.ok("GET", resource, query=query, path={"run_id": run_id})
        rows[name] = {
            "seconds": result.seconds,
            "queries": sum(call.operation == "Query" for call in result.calls),
            "items_read": sum(call.items_read for call in result.calls),
            "complete": result.body["complete"],
        }
    app.ok("POST", "/api/runs/{run_id}/finish", path={"run_id": run_id}, body={"status": "SUCCESS"})
    return {"readings": readings, **rows}


def measure_report(runs: int, readings: int) -> dict[str, Any]:
    """The report ZIP of `runs` finished runs of `readings` readings each, under `make run`
    (`iot-playground serve`: chalice local behind its gateway, over the embedded DynamoDB)."""
    import urllib.request

    from iot_playground.local.local_stack import free_port, wait_for_http

    port = free_port()
    api, env = (
        f"http://127.0.0.1:{port}",
        {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), **LOCAL_CREDENTIALS},
    )
    env |= {"MAX_CONCURRENT_RUNS": "50", "MAX_RUNS_PER_USER": "50"}
    command = [sys.executable, "-m", "iot_playground", "serve", "--port", str(port), "--no-autoreload"]
    server = subprocess.Popen(
        command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )

    def call(method: str, path: str, body: Any = None, **headers: str) -> Any:
        data = json.dumps(body).encode() if body is not None else None
        wanted = {"Content-Type": "application/json", **headers}
        with urllib.request.urlopen(
            urllib.request.Request(api + path, data, wanted, method=method), timeout=60
        ) as r:
            return r.read(), dict(r.headers)

    try:
        wait_for_http(f"{api}/api/health", 60, server)
        clock = Clock()
        for n in range(runs):
            body = {"sensorIds": SENSORS[:BATCH_SENSORS], "duration": 3600, "interval": 1}
            run = json.loads(call("POST", "/api/runs/start", body, **{"X-User": f"bench-{n}"})[0])
            for start in range(0, readings, 500):
                batch = _reading_body("batch", min(500, readings - start), clock, SENSORS[:BATCH_SENSORS])
                call("POST", "/api/sensors/data", batch, **{"X-Run-Id": run["id"]})
            call("POST", f"/api/runs/{run['id']}/finish", {"status": "SUCCESS"})
        seconds, complete = [], []
        for _ in range(3):
            started = time.perf_counter()
            zipped, headers = call("GET", "/api/reports/download", **{"Accept": "application/zip"})
            seconds.append(time.perf_counter() - started)
            complete.append(headers.get("X-Export-Complete") == "true")
        return {
            "runs": runs,
            "readings": readings,
            "seconds": seconds,
            "bytes": len(zipped),
            "complete": all(complete),
        }
    finally:
        server.terminate()
        server.wait(15)


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


def metric_combinations(app: App, sensors: int, user: str) -> set[tuple[str, str, tuple[Any, ...]]]:
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
        return combinations
    finally:
        app.ok("POST", "/api/runs/{run_id}/finish", path={"run_id": run_id}, body={"status": "SUCCESS"})


def metric_counts(app: App, sensors: int) -> dict[str, int]:
    """Custom metrics the app's EMF creates: those two runs (of two users) share live as long as
    the stage; the others are each run's own."""
    first, second = (metric_combinations(app, sensors, user=f"bench-metrics-{n}") for n in (1, 2))
    return {"metrics_per_stage": len(first & second), "metrics_per_run": len(first - second)}


def measure_package(stage: str, zip_path: Path | None) -> dict[str, Any]:
    from iot_playground.deploy.packaging import package_cloudformation, package_sizes

    if zip_path is None:
        with tempfile.TemporaryDirectory(prefix="bench-package-") as scratch:
            package_cloudformation(stage, Path(scratch) / stage)
            zipped, unzipped = package_sizes(Path(scratch) / stage / "deployment.zip")
    else:
        zipped, unzipped = package_sizes(zip_path)
    return {"stage": stage, "zipped_bytes": zipped, "unzipped_bytes": unzipped}


# ---- the monthly cost model (benchmarks/cost.py) with what was measured -----------------------


def measured_facts(measured: dict[str, Any], memory_mb: int, ttl_days: int) -> cost.Facts:
    writes = {row["shape"]: row for row in measured["writes"]}
    warm = {row["route"]: row for row in measured["warm"]}
    newest = max(measured["history"])
    reads = {row["route"]: row for row in measured["reads"] if row["finished_runs"] == newest}
    polls = [warm[f"GET /api/runs/{route}"] for route in ("can-start", "running")]

    def post(batch: int) -> cost.Post:
        write = writes["single"] if batch == 1 else writes[f"batch of {batch}"]
        route = warm[f"POST /api/sensors/data ({'1 reading' if batch == 1 else f'batch of {batch}'})"]
        duration = math.ceil(route["overhead_median_ms"] + write["requests"] * cost.DYNAMODB_LATENCY_MS)
        # Its items, plus DynamoDB's 100 B per item in the table and in each index holding it.
        overhead = STORAGE_OVERHEAD_BYTES * write["items_written"] / batch * (1 + write["indexes_per_item"])
        stored = write["item_bytes_per_reading"] + overhead
        return cost.Post(batch, duration, route["log_bytes_median"], write["write_units_per_reading"], stored)

    return cost.Facts(
        posts={batch: post(batch) for batch in (1, 100)},
        poll_ms=math.ceil(statistics.mean(r["overhead_median_ms"] for r in polls) + cost.DYNAMODB_LATENCY_MS),
        poll_log_bytes=statistics.mean(r["log_bytes_median"] for r in polls),
        poll_read_units=reads["can-start"]["read_units"] + reads["running"]["read_units"],
        metrics_per_stage=measured["metrics"]["metrics_per_stage"],
        metrics_per_run=measured["metrics"]["metrics_per_run"],
        memory_mb=memory_mb,
        ttl_days=ttl_days,
        logs_queries_per_refresh=cost.DESIGN.logs_queries_per_refresh,
    )


def facts_against_design(facts: cost.Facts) -> list[tuple[str, float, float]]:
    """(fact, as measured, as docs/cost.md assumes it): where the app and the document differ."""
    rows = []
    for batch in (1, 100):
        measured, designed = facts.posts[batch], cost.DESIGN.posts[batch]
        for name in ("write_units_per_reading", "stored_bytes_per_reading", "log_bytes", "duration_ms"):
            rows.append((f"{name}, {batch} a post", getattr(measured, name), getattr(designed, name)))
    for name in ("poll_ms", "poll_log_bytes", "poll_read_units", "metrics_per_stage", "metrics_per_run"):
        rows.append((name, getattr(facts, name), getattr(cost.DESIGN, name)))
    return rows


# ---- orchestration and output ----------------------------------------------------------


def stage_env(stage: Stage, endpoint: str) -> dict[str, str]:
    return {
        **LOCAL_CREDENTIALS,
        "AWS_REGION": LOCAL_CREDENTIALS["AWS_DEFAULT_REGION"],
        **stage.environment,
        "STAGE": "bench",
        **BENCH_TABLES,
        "PAGINATION_TOKEN_SECRET": "bench-secret-of-at-least-thirty-two-chars",
        "DYNAMODB_ENDPOINT": endpoint,
        "AWS_LAMBDA_FUNCTION_NAME": "iot-playground-bench",
        "POWERTOOLS_SERVICE_NAME": "iot-playground",
    }


@contextlib.contextmanager
def dynamodb(stage: Stage) -> Iterator[tuple[str, dict[str, str]]]:
    from chalicelib.settings import load_settings
    from iot_playground.deploy.guards import ensure_tables

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
        app.post(run_id, _reading_body("batch", 200, clock, SENSORS[:BATCH_SENSORS]))  # steady state
        progress("writes per reading")
        results["writes"] = measure_writes(app, run_id, sizes.batches, clock)
        results["storage"] = measure_storage(
            side_client, readings=1 + sum(row["readings"] for row in results["writes"])
        )
        # Warm before the history grows: moto's answers slow down with table size, the app's work does not.
        progress(f"warm requests ({sizes.warm_requests} per route)")
        results["warm"] = measure_warm(app, run_id, sizes.warm_requests, clock)
        results["metrics"] = metric_counts(app, cost.RUN_SENSORS)
        progress("reads per call with history " + ", ".join(f"{n:,}" for n in sizes.history))
        results["reads"] = measure_reads(app, side_client, run_id, sizes.history)
        progress(f"latest and stats of a RUNNING run of {sizes.latest_readings:,} readings")
        results["latest"] = measure_latest(app, sizes.latest_readings, clock)
        progress(f"cold starts again, with {sizes.history[-1]:,} finished runs in history")
        results["cold_start_history"] = coldstart.compare(probe_env, sizes.cold_runs)
        app.ok("POST", "/api/runs/{run_id}/finish", path={"run_id": run_id}, body={"status": "SUCCESS"})
        app.recorder.close()
    progress("the report ZIP of {} finished runs of {} readings, under make run".format(*sizes.report_runs))
    results["report"] = measure_report(*sizes.report_runs)
    progress("package")
    results["package"] = measure_package(stage_name, package_zip)
    facts = measured_facts(results, memory_mb, ttl_days)
    volumes = cost.DAILY_VOLUMES
    results["cost"] = [cost.app_bill(volume, batch, facts) for volume in volumes for batch in (1, 100)]
    results["fargate"] = [cost.fargate_bill(volume, ttl_days) for volume in volumes]
    results["crossover"] = {batch: cost.crossover(batch, facts) for batch in (1, 100)}
    results["facts_against_design"] = facts_against_design(facts)
    results["prices"] = {"region": prices.REGION, "as_of": prices.AS_OF}
    results["assumptions"] = {
        "dynamodb_latency_ms": cost.DYNAMODB_LATENCY_MS,
        "platform_log_bytes": cost.PLATFORM_LOG_BYTES,
        "run_sensors": cost.RUN_SENSORS,
        "readings_per_sensor_second": cost.READINGS_PER_SENSOR_SECOND,
        "run_hours": cost.RUN_HOURS,
        "month_days": cost.MONTH_DAYS,
        "memory_mb": memory_mb,
        "reading_ttl_days": ttl_days,
        "dashboard_hours_per_day": cost.DASHBOARD_HOURS_PER_DAY,
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
    latest = results["latest"]
    add(f"\n## A RUNNING run of {latest['readings']:,} readings (100 sensors)\n")
    add("| route | Query calls | items read | time | complete |")
    add("|---|---|---|---|---|")
    for name in ("latest", "stats"):
        row = latest[name]
        took = f"{row['seconds'] * 1000:.0f} ms"
        add(f"| {name} | {row['queries']} | {row['items_read']:,} | {took} | {row['complete']} |")
    report = results["report"]
    times = ", ".join(f"{s:.2f} s" for s in report["seconds"])
    add(
        f"\nReport ZIP of {report['runs']} finished runs of {report['readings']} readings under `make run`:"
        f" {times} (three downloads), {report['bytes'] / 1024:.0f} KiB, complete: {report['complete']}\n"
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
    add("### The design it replaces: Fargate + ALB + RDS, always on (docs/cost.md has its assumptions)\n")
    add(
        "| readings a day | "
        + " | ".join(f"{bill['readings_per_day']:,}" for bill in results["fargate"])
        + " |"
    )
    add("|---|" + "---|" * len(results["fargate"]))
    add("| USD a month | " + " | ".join(f"{bill['total_usd']:,.2f}" for bill in results["fargate"]) + " |")
    for batch, found in results["crossover"].items():
        sent = "singly" if batch == 1 else f"in batches of {batch}"
        where = (
            f"from about {found[0]:,.0f} readings a day" if found else "at no volume up to 1 billion a day"
        )
        add(f"\nSent {sent}, this API costs more than the Fargate design {where}.")
    add(
        "\n### Measured against docs/cost.md's facts (benchmarks/cost.py DESIGN): rewrite it if they differ\n"
    )
    add("| fact | measured | docs/cost.md |")
    add("|---|---|---|")
    for name, measured, designed in results["facts_against_design"]:
        add(f"| {name} | {round(measured, 2):,g} | {round(designed, 2):,g} |")
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
