"""Monthly bills from the price table: this API's, and the always-on design it replaces.

`make bench` (benchmarks/run.py) prices the app with the `Facts` it measured; docs/cost.md is
`markdown()`, the same model with `DESIGN` (the app as designed: one item, 1 write unit and
~350 B stored a reading; one EMF line a reading; one custom metric a stage) against Spring Boot
on ECS Fargate behind an ALB with RDS for PostgreSQL. `python -m benchmarks.cost > docs/cost.md`
rewrites it; tests/test_cost.py fails when they differ. Each assumption is a constant below,
printed beside the figure it makes.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from chalicelib import ingest
from iot_playground.common.stages import PROJECT_ROOT, Stage
from iot_playground.deploy import prices

# The EMF line of one reading, as the app writes it (chalicelib/ingest.py): what a reading costs in logs.
EXAMPLE = ingest.metric_line(
    1_767_225_600_000,
    "prod",
    21.5,
    "0b9e8c1a-5d2f-4c77-9a51-3f2e6d8b7c40",
    "sensor-1",
    "temperature",
    "alice",
    "http",
)

MONTH_DAYS = 30
MONTH_HOURS = MONTH_DAYS * 24
DAILY_VOLUMES = (10_000, 1_000_000, 100_000_000)
# ---- the workload, both designs -------------------------------------------------------
RUN_SENSORS = 100  # a run's sensors (the frontend's maximum)
READINGS_PER_SENSOR_SECOND = 5  # the frontend's fastest interval, 200 ms
RUN_HOURS = 1  # a run lasts an hour: a new run id every hour
POLLS_PER_SECOND = 2  # one open tab per running run polls can-start and running each second
# ---- this API ---------------------------------------------------------------------------
DYNAMODB_LATENCY_MS = 8.0  # per DynamoDB request from Lambda in-region (moto's is not AWS's)
PLATFORM_LOG_BYTES = 290  # START, END and REPORT lines Lambda writes per invocation
STATUS_REREAD_CONTAINERS = 10  # warm containers per run, each re-reading its status every 2 s
DASHBOARD_HOURS_PER_DAY = 1  # Grafana open on a run an hour a day, over its default 1 h range
# ---- the design it replaces -------------------------------------------------------------
TASK_VCPU, TASK_GB = 0.5, 1.0  # one Spring Boot task
TASK_READINGS_PER_SECOND = 250  # what one task inserts (a request and an INSERT a reading)
MIN_TASKS = 1  # always on; 2 for availability doubles the task line
PEAK_TO_AVERAGE = 3  # sized for three times the day's average rate
ALB_PUBLIC_IPS = 2  # an internet-facing ALB has an address in each of its 2 zones
REQUEST_BYTES = 1024  # request + response through the ALB; 1 GB an hour is 1 LCU
# Inserts a second each RDS class sustains (assumed), smallest first.
RDS_WRITES_PER_SECOND = {"db.t4g.micro": 100, "db.t4g.medium": 500, "db.m6g.large": 2_000}
RDS_WRITES_PER_SECOND |= {"db.m6g.xlarge": 4_000, "db.m6g.2xlarge": 8_000}
ROW_BYTES = 200  # a reading in PostgreSQL: the row and its primary-key and (run, time) indexes
MIN_STORAGE_GB = 20  # RDS's smallest gp3 volume


@dataclass(frozen=True, slots=True)
class Post:
    """One POST /api/sensors/data of `batch` readings, as the app handles it."""

    batch: int
    duration_ms: float  # billed Lambda duration
    log_bytes: float  # its log and EMF lines
    write_units_per_reading: float
    stored_bytes_per_reading: float  # items and DynamoDB's per-item overhead


@dataclass(frozen=True, slots=True)
class Facts:
    """What the app's requests cost it: measured by `make bench`, or as designed (DESIGN)."""

    posts: Mapping[int, Post]  # by batch size
    poll_ms: float  # billed duration of can-start or running
    poll_log_bytes: float
    poll_read_units: float  # can-start and running together
    metrics_per_stage: int  # custom metrics that live as long as the stage
    metrics_per_run: int  # custom metrics each run creates (new run id, new metrics)
    memory_mb: int
    ttl_days: int
    logs_queries_per_refresh: int  # the dashboard's Logs Insights queries


PROD = Stage.load("prod")
DASHBOARD = PROJECT_ROOT / "grafana" / "dashboards" / "iot-serverless.json"


def logs_queries_per_refresh(board: Mapping[str, Any]) -> int:
    """Logs Insights queries one refresh of the dashboard starts (a panel repeated over a variable
    runs once per value)."""
    values = {
        v["name"]: len(v.get("options", [])) - v.get("includeAll", False) for v in board["templating"]["list"]
    }
    return sum(
        (values[p["repeat"]] if p.get("repeat") else 1)
        * sum(t.get("queryMode") == "Logs" for t in p["targets"])
        for p in board["panels"]
        if p["type"] != "row"
    )


BOARD = json.loads(DASHBOARD.read_text())
REFRESH_SECONDS = int(BOARD["refresh"].removesuffix("m")) * 60  # every refresh reruns its Logs queries
LINE_BYTES = len(json.dumps(EXAMPLE, separators=(",", ":")).encode()) + 1  # the EMF line of a reading
STORED_BYTES_PER_READING = 350  # the item with DynamoDB's 100 B overhead, as `make bench` measures it
# Warm overheads (ms) from the last `make bench` (prod stage).
POST_OVERHEAD_MS = {1: 1.16, 100: 18.33}
POLL_OVERHEAD_MS = (0.73 + 0.94) / 2
BATCH_WRITE_ITEMS = 25  # a BatchWriteItem's most


def _designed_post(batch: int) -> Post:
    requests = math.ceil(batch / BATCH_WRITE_ITEMS)
    duration = math.ceil(POST_OVERHEAD_MS[batch] + requests * DYNAMODB_LATENCY_MS)
    return Post(batch, duration, batch * LINE_BYTES, 1.0, STORED_BYTES_PER_READING)


DESIGN = Facts(
    posts={batch: _designed_post(batch) for batch in (1, 100)},
    poll_ms=math.ceil(POLL_OVERHEAD_MS + DYNAMODB_LATENCY_MS),
    poll_log_bytes=0,
    poll_read_units=1.5,  # can-start 1 RRU (consistent), running 0.5
    metrics_per_stage=1,
    metrics_per_run=0,
    memory_mb=int(PROD.settings["lambda_memory_size"]),
    ttl_days=int(PROD.environment["READING_TTL_DAYS"]),
    logs_queries_per_refresh=logs_queries_per_refresh(BOARD),
)


def _line(item: str, usd: float, quantity: str, assumption: str = "") -> dict[str, Any]:
    return {"item": item, "usd": round(usd, 2), "quantity": quantity, "assumption": assumption}


def _bill(lines: list[dict[str, Any]], **about: Any) -> dict[str, Any]:
    return {**about, "lines": lines, "total_usd": round(sum(line["usd"] for line in lines), 2)}


def run_hours_per_day(readings_per_day: float) -> int:
    return max(1, math.ceil(readings_per_day / (RUN_SENSORS * READINGS_PER_SENSOR_SECOND * 3600)))


def app_bill(readings_per_day: float, batch: int, facts: Facts = DESIGN) -> dict[str, Any]:
    post = facts.posts[batch]
    readings = readings_per_day * MONTH_DAYS
    posts = readings / batch
    run_hours = run_hours_per_day(readings_per_day)
    polls = run_hours * MONTH_DAYS * 3600 * POLLS_PER_SECOND
    requests = posts + polls
    gb_seconds = (posts * post.duration_ms + polls * facts.poll_ms) / 1000 * facts.memory_mb / 1024
    write_units = readings * post.write_units_per_reading
    status_reads = run_hours * MONTH_DAYS * 3600 / 2 * STATUS_REREAD_CONTAINERS
    read_units = polls / 2 * facts.poll_read_units + status_reads
    stored_gb = readings_per_day * facts.ttl_days * post.stored_bytes_per_reading / 1e9
    log_bytes = posts * (post.log_bytes + PLATFORM_LOG_BYTES) + polls * (
        facts.poll_log_bytes + PLATFORM_LOG_BYTES
    )
    metric_hours = (
        facts.metrics_per_stage * MONTH_HOURS + facts.metrics_per_run * run_hours * MONTH_DAYS * RUN_HOURS
    )
    metric_months = metric_hours / prices.HOURS_PER_MONTH
    refreshes = DASHBOARD_HOURS_PER_DAY * 3600 / REFRESH_SECONDS * MONTH_DAYS
    hour_gb = log_bytes / MONTH_DAYS / min(24, run_hours) / 1e9
    scanned_gb = refreshes * facts.logs_queries_per_refresh * hour_gb
    note, api = prices.API_GATEWAY_REST.note, prices.API_GATEWAY_REST.usd
    lines = [
        _line(
            "API Gateway REST",
            requests / 1e6 * api,
            f"{requests:,.0f} requests",
            f"{posts:,.0f} posts + {polls:,.0f} polls; {note}",
        ),
        _line(
            "Lambda requests",
            requests / 1e6 * prices.LAMBDA_REQUESTS.usd,
            f"{requests:,.0f} invocations",
            "one per API request",
        ),
        _line(
            "Lambda compute",
            gb_seconds * prices.LAMBDA_GB_SECOND.usd,
            f"{gb_seconds:,.0f} GB-s",
            f"{facts.memory_mb} MB x ({post.duration_ms:g} ms a post, {facts.poll_ms:g} ms a poll): "
            f"warm overhead + {DYNAMODB_LATENCY_MS:g} ms per DynamoDB request",
        ),
        _line(
            "DynamoDB writes",
            write_units / 1e6 * prices.DYNAMODB_WRITE.usd,
            f"{write_units:,.0f} WRU",
            f"{post.write_units_per_reading:g} WRU a reading",
        ),
        _line(
            "DynamoDB reads",
            read_units / 1e6 * prices.DYNAMODB_READ.usd,
            f"{read_units:,.0f} RRU",
            f"polls ({facts.poll_read_units:g} RRU a pair), run-status re-reads "
            f"({STATUS_REREAD_CONTAINERS} containers a run, every 2 s)",
        ),
        _line(
            "DynamoDB storage",
            stored_gb * prices.DYNAMODB_STORAGE.usd,
            f"{stored_gb:,.2f} GB",
            f"{facts.ttl_days} days of readings x {post.stored_bytes_per_reading:.0f} B",
        ),
        _line(
            "CloudWatch Logs ingestion",
            log_bytes / 1e9 * prices.CLOUDWATCH_LOGS_INGESTION.usd,
            f"{log_bytes / 1e9:,.2f} GB",
            f"{post.log_bytes:,.0f} B of log and EMF lines a post, {PLATFORM_LOG_BYTES} B of Lambda's",
        ),
        _line(
            "CloudWatch custom metrics",
            prices.tiered(metric_months, prices.CLOUDWATCH_CUSTOM_METRICS),
            f"{metric_months:,.1f} metric-months",
            f"{facts.metrics_per_stage} a stage all month, {facts.metrics_per_run} a run for {RUN_HOURS} h",
        ),
        _line(
            "Logs Insights (dashboard)",
            scanned_gb * prices.LOGS_INSIGHTS_SCANNED.usd,
            f"{scanned_gb:,.0f} GB scanned",
            f"{refreshes:,.0f} refreshes x {facts.logs_queries_per_refresh} queries x "
            f"{hour_gb * 1e3:,.1f} MB (an hour of the API handler's logs)",
        ),
    ]
    return _bill(lines, design="app", readings_per_day=readings_per_day, batch=batch)


def fargate_bill(readings_per_day: float, ttl_days: int = DESIGN.ttl_days) -> dict[str, Any]:
    """Spring Boot on ECS Fargate behind an ALB, RDS for PostgreSQL: always on, sent singly."""
    polls_per_day = run_hours_per_day(readings_per_day) * 3600 * POLLS_PER_SECOND
    peak = readings_per_day / 86_400 * PEAK_TO_AVERAGE
    tasks = max(MIN_TASKS, math.ceil(peak / TASK_READINGS_PER_SECOND))
    classes = [c for c, rate in RDS_WRITES_PER_SECOND.items() if rate >= peak]
    db = classes[0] if classes else list(RDS_WRITES_PER_SECOND)[-1]
    storage_gb = max(MIN_STORAGE_GB, readings_per_day * ttl_days * ROW_BYTES / 1e9)
    lcu = (readings_per_day + polls_per_day) * REQUEST_BYTES / 1e9 / 24  # GB processed an hour
    task_hour = TASK_VCPU * prices.FARGATE_VCPU_HOUR.usd + TASK_GB * prices.FARGATE_GB_HOUR.usd
    addresses = ALB_PUBLIC_IPS + tasks
    lines = [
        _line(
            "Fargate tasks", tasks * MONTH_HOURS * task_hour, f"{tasks} x {TASK_VCPU:g} vCPU, {TASK_GB:g} GB"
        ),
        _line("ALB hours", MONTH_HOURS * prices.ALB_HOUR.usd, "1 ALB"),
        _line("ALB LCUs", lcu * MONTH_HOURS * prices.ALB_LCU_HOUR.usd, f"{lcu:,.2f} LCU"),
        _line("Public IPv4", addresses * MONTH_HOURS * prices.PUBLIC_IPV4_HOUR.usd, f"{addresses} addresses"),
        _line("RDS instance", MONTH_HOURS * prices.RDS_POSTGRES_HOUR[db], db),
        _line("RDS storage", storage_gb * prices.RDS_GP3_GB_MONTH.usd, f"{storage_gb:,.0f} GB gp3"),
    ]
    return _bill(lines, design="fargate", readings_per_day=readings_per_day, batch=1)


def crossover(batch: int, facts: Facts = DESIGN) -> tuple[float, bool] | None:
    """The daily volume from which the app costs more than the Fargate design (to 3 significant
    digits), and whether it stays dearer up to 1 billion a day; None if it never does."""
    volumes = [10 ** (3 + i / 400) for i in range(6 * 400 + 1)]  # 1,000 to 1e9, 0.6 % apart
    bills = [(app_bill(v, batch, facts), fargate_bill(v, facts.ttl_days)) for v in volumes]
    dearer = [app["total_usd"] > farm["total_usd"] for app, farm in bills]
    if True not in dearer:
        return None
    first = dearer.index(True)
    return float(f"{volumes[first]:.3g}"), all(dearer[first:])


# ---- devices over MQTT: IoT Core -> topic rule -> SQS -> the handler, batches of 10 -----------
SQS_BATCH = 10  # app.py's ingest_device_messages batch_size
# The rule's SendMessage a message; Lambda's ReceiveMessage and DeleteMessageBatch a batch.
SQS_REQUESTS_PER_MESSAGE = 1 + 2 / SQS_BATCH


def per_million_readings(channel: str, facts: Facts = DESIGN) -> float:
    """USD for a million readings sent one a request (`http`) or one a message (`mqtt`)."""
    post = facts.posts[1]
    invocations = 1.0 if channel == "http" else 1 / SQS_BATCH  # millions
    log_gb = (post.log_bytes + invocations * PLATFORM_LOG_BYTES) / 1e3
    both = (
        post.duration_ms / 1000 * facts.memory_mb / 1024 * 1e6 * prices.LAMBDA_GB_SECOND.usd
        + invocations * prices.LAMBDA_REQUESTS.usd
        + post.write_units_per_reading * prices.DYNAMODB_WRITE.usd
        + log_gb * prices.CLOUDWATCH_LOGS_INGESTION.usd
    )
    if channel == "http":
        return round(both + prices.API_GATEWAY_REST.usd, 2)
    device = prices.IOT_MESSAGING.usd + prices.IOT_RULES.usd + prices.IOT_ACTIONS.usd
    return round(both + device + SQS_REQUESTS_PER_MESSAGE * prices.SQS_REQUESTS.usd, 2)


def mqtt_cost_line(facts: Facts = DESIGN) -> str:
    """docs/mqtt.md's cost line: the same model (tests/test_cost.py holds it)."""
    http, mqtt = per_million_readings("http", facts), per_million_readings("mqtt", facts)
    return f"Cost per million readings: over MQTT {mqtt:.2f} USD, over HTTP {http:.2f} USD."


# ---- docs/cost.md ----------------------------------------------------------------------------


def _table(head: list[str], rows: list[list[str]]) -> list[str]:
    return [
        "| " + " | ".join(head) + " |",
        "|" + "---|" * len(head),
        *("| " + " | ".join(r) + " |" for r in rows),
    ]


def _items(bills: list[dict[str, Any]], cell: Callable[[dict[str, Any]], str]) -> list[list[str]]:
    items = [line["item"] for line in bills[0]["lines"]]
    rows = [
        [item, *(cell(next(x for x in b["lines"] if x["item"] == item)) for b in bills)] for item in items
    ]
    return [*rows, ["**total**", *(f"**{b['total_usd']:,.2f}**" for b in bills)]]


def _crossing(batch: int, facts: Facts, how: str) -> str:
    found = crossover(batch, facts)
    if found is None:
        return f"{how}, this API costs less than the Fargate design at every volume up to 1 billion a day."
    volume, stays = found
    after = "and stays dearer up to 1 billion a day" if stays else "(the bills cross again above it)"
    volume_text = f"**{volume:,.0f} readings a day**"
    return f"{how}, this API costs more than the Fargate design from about {volume_text} on, {after}."


def _target(bill: dict[str, Any], fargate: dict[str, Any]) -> str:
    """Whether the 10,000-a-day bill meets the original's ~$3 a month, and with which lines."""
    dashboard = next(line["usd"] for line in bill["lines"] if line["item"].startswith("Logs Insights"))
    total, without = bill["total_usd"], bill["total_usd"] - dashboard
    if total <= 3:
        verdict = f"reaches the original's ~$3 a month: **${total:,.2f}**, the dashboard's scans included"
    elif without <= 3:
        verdict = (
            f"reaches the original's ~$3 a month, **${without:,.2f}**, as long as nobody watches Grafana: "
            f"its Logs Insights scans as assumed below add ${dashboard:,.2f}, **${total:,.2f}** in all"
        )
    else:
        verdict = f"misses the original's ~$3 a month: **${total:,.2f}** (${without:,.2f} without Grafana)"
    farm = fargate["total_usd"]
    return f"At 10,000 readings a day sent singly this API {verdict}; the Fargate design costs ${farm:,.2f}."


def markdown(facts: Facts = DESIGN) -> str:
    """docs/cost.md: the totals, the crossover, each design's line items and every assumption."""
    apps = [app_bill(v, n, facts) for v in DAILY_VOLUMES for n in (1, 100)]
    farms = [fargate_bill(v, facts.ttl_days) for v in DAILY_VOLUMES]
    volumes = [f"{v:,}" for v in DAILY_VOLUMES]
    totals = [
        ["this API, sent singly", *(f"{b['total_usd']:,.2f}" for b in apps[::2])],
        ["this API, batches of 100", *(f"{b['total_usd']:,.2f}" for b in apps[1::2])],
        ["Fargate + ALB + RDS, sent singly", *(f"{b['total_usd']:,.2f}" for b in farms)],
    ]
    shapes = [f"{v}, {'singly' if n == 1 else 'batches of 100'}" for v in volumes for n in (1, 100)]
    rates = ", ".join(f"{c} ({r:,}/s)" for c, r in RDS_WRITES_PER_SECOND.items())
    single, batch = facts.posts[1], facts.posts[100]
    assumptions = [
        f"Workload: runs of {RUN_SENSORS} sensors at {READINGS_PER_SENSOR_SECOND} readings a sensor a second "
        f"(the frontend's fastest): a run-hour a day at least, one more per "
        f"{RUN_SENSORS * READINGS_PER_SENSOR_SECOND * 3600:,} readings; one tab per running run polls "
        f"can-start and running each second. The same requests reach both designs.",
        f"Readings kept {facts.ttl_days} days in both (the prod stage's READING_TTL_DAYS; a nightly DELETE "
        "in PostgreSQL).",
        "Not counted in either design: data transfer, free tiers, the AWS service metrics dashboards read "
        "(GetMetricData), the Fargate design's logs and monitoring.",
        f"This API, prod stage: {facts.memory_mb} MB Lambda; a post lasts its warm overhead (last "
        f"`make bench`) + {DYNAMODB_LATENCY_MS:g} ms per DynamoDB request (1 PutItem; 4 BatchWriteItem "
        f"of 25 for 100 readings): {single.duration_ms:g} and {batch.duration_ms:g} ms; a poll "
        f"{facts.poll_ms:g} ms; Lambda adds {PLATFORM_LOG_BYTES} B of START/END/REPORT lines an invocation.",
        f"This API's readings: one DynamoDB item each, {single.write_units_per_reading:g} write unit and "
        f"{single.stored_bytes_per_reading:g} B stored a reading, whatever the body; one EMF line a reading "
        f"of {LINE_BYTES} B (`chalicelib/ingest.py`'s line), {batch.log_bytes:,.0f} B for 100.",
        f"This API's reads: polls ({facts.poll_read_units:g} read units a can-start + running pair) and "
        f"{STATUS_REREAD_CONTAINERS} warm containers a run each re-reading the run's status every 2 s.",
        f"Custom metrics: {facts.metrics_per_stage} a stage (DataIngested by Stage), billed all month, one "
        f"stage priced; {facts.metrics_per_run} a run.",
        f"Grafana: open {DASHBOARD_HOURS_PER_DAY} h a day on a run, refreshing every "
        f"{REFRESH_SECONDS} s; a refresh runs its {facts.logs_queries_per_refresh} Logs "
        "Insights queries over the 1 h shown, which holds a run-hour of the API handler's logs (a day's "
        "logs / its run-hours, at most 24).",
        "API Gateway at its first-tier price: past 333 million requests a month the figure is a ceiling.",
        f"Fargate tasks: {TASK_VCPU:g} vCPU, {TASK_GB:g} GB (Linux/x86), {TASK_READINGS_PER_SECOND} readings "
        f"a second each, enough for {PEAK_TO_AVERAGE} x the day's average rate, {MIN_TASKS} at least (2 for "
        "availability doubles that line); public subnets, a public IPv4 each, no NAT gateway.",
        f"ALB: one, internet-facing in {ALB_PUBLIC_IPS} zones ({ALB_PUBLIC_IPS} public IPv4); LCUs by "
        f"processed bytes, {REQUEST_BYTES:,} B a request (connections kept alive, under 10 rules).",
        f"RDS for PostgreSQL: Single-AZ (Multi-AZ doubles both RDS lines), the smallest of {rates} for the "
        f"peak inserts; gp3 at {ROW_BYTES} B a reading (row and indexes), {MIN_STORAGE_GB} GB at least; "
        "backups within the free allowance.",
    ]
    out = [
        "# Monthly cost: this API against the design it replaces",
        "",
        f"Generated by `python -m benchmarks.cost > docs/cost.md` (`benchmarks/cost.py`, list prices of "
        f"`iot_playground/deploy/prices.py`: {prices.REGION}, {prices.AS_OF}, USD, to check before quoting); "
        "`tests/test_cost.py` fails when this file differs. A 30-day month.",
        "",
        "## Totals, USD a month",
        "",
        *_table(["readings a day", *volumes], totals),
        "",
        f"- {_crossing(1, facts, 'Sent singly (as the frontend does)')}",
        f"- {_crossing(100, facts, 'In batches of 100')}",
        f"- {_target(apps[0], farms[0])}",
        "",
        "## This API, line items",
        "",
        *_table(["item", *shapes], _items(apps, lambda line: f"{line['usd']:,.2f}")),
        "",
        "## Fargate + ALB + RDS, line items (sent singly)",
        "",
        *_table(["item", *volumes], _items(farms, lambda line: f"{line['usd']:,.2f} ({line['quantity']})")),
        "",
        "## Assumptions",
        "",
        *(f"- {line}" for line in assumptions),
    ]
    return "\n".join(out) + "\n"


if __name__ == "__main__":
    print(markdown(), end="")
