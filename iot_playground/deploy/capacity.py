"""Throttles and reserved concurrency sized to the legitimate load, and what a flood costs.

The one place where each deploy stage's API Gateway throttle (`api_gateway_throttling`)
and the API handler's `reserved_concurrency` in `.chalice/config.json` come from:

    iot-playground capacity            # prints the arithmetic and the ceiling per stage
    iot-playground capacity --write    # writes the derived values into config.json
    iot-playground capacity --check    # exit 1 when config.json differs from them

The legitimate worst case (../shared/frontend-contract.md): every run the stage allows
(MAX_CONCURRENT_RUNS) driven at the frontend's top speed, 100 sensors posting one reading
each every 200 ms, all fired at once each round; plus every open tab polling
`GET /api/runs/running` and `GET /api/runs/can-start` each second and
`GET /infra/latest-deployment` every 5 s (when the infrastructure URL falls back to this
API). The frontend stops a simulation at the first non-2xx, so a 429 or a Lambda throttle
on legitimate traffic is a failed run: the limits must clear that worst case with headroom.
What they let through is also the most a flood can buy, priced below.
"""

from __future__ import annotations

import json
import math
import sys
from dataclasses import dataclass
from typing import Any

from chalicelib.schemas import MAX_BATCH_READINGS
from chalicelib.tables import READINGS
from iot_playground.common.stages import CONFIG_PATH, DEPLOY_STAGES, THROTTLING_KEY, Stage, load_config
from iot_playground.deploy import prices

# ---- the frontend's worst case (../shared/frontend-contract.md) ---------------------------
SENSORS_PER_RUN = 100  # the frontend's maximum
ROUND_INTERVAL_SECONDS = 0.2  # its fastest interval: one reading per sensor every 200 ms
# Per open tab, whether or not it drives a run: running + can-start every second, and
# infra/latest-deployment every 5 s when INFRA_API_URL falls back to this API.
POLLS_PER_TAB_PER_SECOND = 2 + 1 / 5
POLLS_PER_TAB_AT_ONCE = 3  # the most one tab fires in the same instant
# ASSUMPTION: tabs open on the frontend at the same time, per stage.
OPEN_TABS = {"dev": 10, "prod": 50}
# API Gateway's token bucket is approximate; 25 % above the worst case keeps legitimate
# traffic clear of 429s.
HEADROOM = 1.25
# ASSUMPTION: mean time a request holds a Lambda execution at the throttle (Little's law's
# W). A warm single reading is one PutItem, ~10-30 ms; 100 ms allows for cold starts and
# DynamoDB retries.
REQUEST_SECONDS = 0.1

# ---- a flood's writes ----------------------------------------------------------------------
# The heaviest request the API accepts: a batch of MAX_BATCH_READINGS readings, at worst one
# chunk each (every reading another sensor or type), each chunk one write unit (items < 1 KB)
# on the readings table plus one on each of its indexes (it has none: see chalicelib/tables.py).
WRITE_UNITS_PER_READING = 1 + len(READINGS.indexes)
MAX_WRITE_UNITS_PER_REQUEST = MAX_BATCH_READINGS * WRITE_UNITS_PER_READING
# ASSUMPTION: DynamoDB's default per-table quota for on-demand tables (40,000 write request
# units per second, adjustable in Service Quotas) caps the chunks written per second (and the
# writes to any index). A flood of full batches reaches this cap long before the throttle.
DYNAMODB_TABLE_WRITE_QUOTA = 40_000
MAX_WRITE_UNITS_PER_SECOND = DYNAMODB_TABLE_WRITE_QUOTA * WRITE_UNITS_PER_READING

SECONDS_PER_DAY = 86_400


@dataclass(frozen=True, slots=True)
class Prices:
    """On-demand list prices in USD, first (most expensive) tier, so a ceiling, not an estimate."""

    region: str
    as_of: str
    api_gateway_rest_per_million: float
    lambda_requests_per_million: float
    lambda_gb_second: float  # x86_64
    dynamodb_write_units_per_million: float


# ASSUMPTION: eu-west-3 (Paris) list prices, from iot_playground/deploy/prices.py (dated, with
# their sources; check the pricing pages before quoting a figure).
PARIS = Prices(
    region=prices.REGION,
    as_of=prices.AS_OF,
    api_gateway_rest_per_million=prices.API_GATEWAY_REST.usd,
    lambda_requests_per_million=prices.LAMBDA_REQUESTS.usd,
    lambda_gb_second=prices.LAMBDA_GB_SECOND.usd,
    dynamodb_write_units_per_million=prices.DYNAMODB_WRITE.usd,
)


@dataclass(frozen=True, slots=True)
class Workload:
    """The legitimate worst case of one stage."""

    runs: int
    tabs: int

    @property
    def requests_per_second(self) -> float:
        readings = self.runs * SENSORS_PER_RUN / ROUND_INTERVAL_SECONDS
        return readings + self.tabs * POLLS_PER_TAB_PER_SECOND

    @property
    def requests_at_once(self) -> int:
        # Every run's round fired in the same instant, and every tab polling then too.
        return self.runs * SENSORS_PER_RUN + self.tabs * POLLS_PER_TAB_AT_ONCE


@dataclass(frozen=True, slots=True)
class Sizing:
    workload: Workload
    rate_limit: int
    burst_limit: int
    little_concurrency: int  # in flight at the throttle's rate: rate x W
    reserved_concurrency: int


def _ceil(value: float) -> int:
    return math.ceil(round(value, 9))  # 3152.5000000001 from float noise is still 3153


def size(workload: Workload) -> Sizing:
    rate = _ceil(workload.requests_per_second * HEADROOM)
    burst = _ceil(workload.requests_at_once * HEADROOM)
    little = _ceil(rate * REQUEST_SECONDS)
    # A burst's requests are all in flight together: never fewer executions than the burst.
    return Sizing(workload, rate, burst, little, max(little, burst))


def workload_for(stage: Stage) -> Workload:
    return Workload(runs=stage.app_settings.max_concurrent_runs, tabs=OPEN_TABS[stage.name])


def sizing_for(stage: Stage) -> Sizing:
    return size(workload_for(stage))


@dataclass(frozen=True, slots=True)
class Ceiling:
    """What a flood held at the stage's limits for a whole day costs, by service."""

    requests: int
    gb_seconds: float
    write_units: int
    api_gateway: float
    lambda_requests: float
    lambda_compute: float
    dynamodb: float

    @property
    def total(self) -> float:
        return self.api_gateway + self.lambda_requests + self.lambda_compute + self.dynamodb


def ceiling(
    sizing: Sizing,
    memory_mb: int,
    prices: Prices = PARIS,
    write_units_per_request: int = MAX_WRITE_UNITS_PER_REQUEST,
) -> Ceiling:
    requests = sizing.rate_limit * SECONDS_PER_DAY
    # Every reserved execution busy all day, whatever the requests' duration.
    gb_seconds = sizing.reserved_concurrency * memory_mb / 1024 * SECONDS_PER_DAY
    per_second = min(sizing.rate_limit * write_units_per_request, MAX_WRITE_UNITS_PER_SECOND)
    write_units = per_second * SECONDS_PER_DAY
    return Ceiling(
        requests=requests,
        gb_seconds=gb_seconds,
        write_units=write_units,
        api_gateway=requests / 1e6 * prices.api_gateway_rest_per_million,
        lambda_requests=requests / 1e6 * prices.lambda_requests_per_million,
        lambda_compute=gb_seconds * prices.lambda_gb_second,
        dynamodb=write_units / 1e6 * prices.dynamodb_write_units_per_million,
    )


def stage_memory_mb(stage: Stage) -> int:
    return int(stage.settings["lambda_memory_size"])


# ---- .chalice/config.json --------------------------------------------------------------


def configured(stage: Stage) -> dict[str, Any]:
    """What config.json says now, in the shape `derived` returns."""
    throttling = stage.settings.get(THROTTLING_KEY) or {}
    return {
        THROTTLING_KEY: {
            "rate_limit": throttling.get("rate_limit"),
            "burst_limit": throttling.get("burst_limit"),
        },
        "reserved_concurrency": stage.settings.get("reserved_concurrency"),
    }


def derived(sizing: Sizing) -> dict[str, Any]:
    return {
        THROTTLING_KEY: {"rate_limit": sizing.rate_limit, "burst_limit": sizing.burst_limit},
        "reserved_concurrency": sizing.reserved_concurrency,
    }


def apply(config: dict[str, Any]) -> dict[str, Any]:
    """config.json with every deploy stage's throttle and reserved concurrency derived."""
    updated: dict[str, Any] = json.loads(json.dumps(config))
    for name in DEPLOY_STAGES:
        updated["stages"][name].update(derived(sizing_for(Stage.load(name, config))))
    return updated


def describe(stage: Stage) -> str:
    sizing = sizing_for(stage)
    load = sizing.workload
    memory = stage_memory_mb(stage)
    worst = ceiling(sizing, memory)
    single = ceiling(sizing, memory, write_units_per_request=WRITE_UNITS_PER_READING)
    readings = load.runs * SENSORS_PER_RUN / ROUND_INTERVAL_SECONDS
    return "\n".join(
        [
            f"{stage.name}: {load.runs} runs x {SENSORS_PER_RUN} sensors / {ROUND_INTERVAL_SECONDS} s"
            f" = {readings:g} req/s, + {load.tabs} tabs x {POLLS_PER_TAB_PER_SECOND:g} req/s"
            f" = {load.requests_per_second:g} req/s",
            f"  rate  = ceil({HEADROOM} x {load.requests_per_second:g}) = {sizing.rate_limit} req/s",
            f"  burst = ceil({HEADROOM} x ({load.runs} x {SENSORS_PER_RUN} + {load.tabs} x "
            f"{POLLS_PER_TAB_AT_ONCE})) = {sizing.burst_limit}",
            f"  reserved concurrency = max(ceil({sizing.rate_limit} x {REQUEST_SECONDS} s), "
            f"{sizing.burst_limit}) = max({sizing.little_concurrency}, {sizing.burst_limit})"
            f" = {sizing.reserved_concurrency}",
            f"  a day at the throttle ({PARIS.region}, prices of {PARIS.as_of}):"
            f" {worst.requests:,} requests, {worst.gb_seconds:,.0f} GB-s at {memory} MB",
            f"    API Gateway ${worst.api_gateway:,.2f} + Lambda requests ${worst.lambda_requests:,.2f}"
            f" + Lambda compute ${worst.lambda_compute:,.2f}",
            f"    + DynamoDB ${single.dynamodb:,.2f} (single readings, {WRITE_UNITS_PER_READING} WRU each)"
            f" = ${single.total:,.2f}/day",
            f"    + DynamoDB ${worst.dynamodb:,.2f} (batches of {MAX_BATCH_READINGS}, capped at"
            f" {MAX_WRITE_UNITS_PER_SECOND:,} WRU/s) = ${worst.total:,.2f}/day ceiling",
        ]
    )


def reconcile_config(*, write: bool = False, check: bool = False) -> int:
    """`iot-playground capacity`: print each stage's arithmetic; write (or check) config.json's values."""
    config = load_config()
    for name in DEPLOY_STAGES:
        print(describe(Stage.load(name, config)))
    updated = apply(config)
    if updated == config:
        print(f"{CONFIG_PATH.name}: up to date")
        return 0
    if write:
        CONFIG_PATH.write_text(json.dumps(updated, indent=2) + "\n")
        print(f"{CONFIG_PATH.name}: written")
        return 0
    stale = [name for name in DEPLOY_STAGES if updated["stages"][name] != config["stages"][name]]
    print(f"{CONFIG_PATH.name}: differs for {', '.join(stale)} (run with --write)", file=sys.stderr)
    return 1 if check else 0
