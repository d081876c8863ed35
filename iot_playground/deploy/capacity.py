"""Limits sized to the legitimate load, and what a day-long flood at them costs (`iot-playground
capacity`). The legitimate worst case (docs/frontend.md): every run the stage allows, 100 sensors
posting a reading each every 200 ms, all at once each round, plus each open tab polling `running`
and `can-start` every second and `infra/latest-deployment` every 5 s. A flood buys at most: requests
at the throttle, every reserved execution busy all day, every table and index at its on-demand
maximum (a reading is one item under 1 KB: 1 WRU whatever the request).
"""

from __future__ import annotations

import json
import math
import sys
from typing import Any

from iot_playground.common.stages import CONFIG_PATH, DEPLOY_STAGES, THROTTLING_KEY, Stage, load_config
from iot_playground.deploy import prices

SENSORS_PER_RUN, ROUND_SECONDS = 100, 0.2  # the frontend's maximum, at its fastest interval
POLLS_PER_TAB_PER_SECOND, POLLS_PER_TAB_AT_ONCE = 2 + 1 / 5, 3
OPEN_TABS = {"dev": 5, "prod": 50}  # ASSUMPTION: tabs open at once (dev: the team's own)
# API Gateway's token bucket is approximate: 10 % over a worst case the frontend never quite
# reaches (each round starts 200 ms after the previous round's answers arrived).
HEADROOM = 1.1
REQUEST_SECONDS = 0.1  # ASSUMPTION: mean time a request holds an execution (Little's law's W)
# ASSUMPTION, read units a second: a tab may be the run viewer (a page of readings every 2 s, the
# stats every 10 s); each busy execution re-reads its run's status every 2 s, each poll 1 RRU.
VIEWER_READ_UNITS, RUN_STATUS_SECONDS = 25, 2
# Run starts, finishes, sweeps (a three-item transaction is 6 WRU) and Powertools' idempotency
# records (the frontend sends no Idempotency-Key): small fixed maxima.
SMALL_UNITS = 25
DAY = 86_400


def _ceil(value: float) -> int:
    return math.ceil(round(value, 9))  # 3152.5000000001 from float noise is still 3153


def sizing(stage: Stage) -> dict[str, Any]:
    """The stage's legitimate load and the limits derived from it."""
    runs, tabs = stage.app_settings.max_concurrent_runs, OPEN_TABS[stage.name]
    readings = runs * SENSORS_PER_RUN / ROUND_SECONDS
    rate = _ceil(HEADROOM * (readings + tabs * POLLS_PER_TAB_PER_SECOND))
    burst = _ceil(HEADROOM * (runs * SENSORS_PER_RUN + tabs * POLLS_PER_TAB_AT_ONCE))
    reserved = max(_ceil(rate * REQUEST_SECONDS), burst)  # a burst's requests are all in flight at once
    runs_reads = HEADROOM * (2 * tabs + reserved / RUN_STATUS_SECONDS)
    units = {  # per table and each of its indexes, by chalicelib's setting name
        "READINGS_TABLE": (HEADROOM * tabs * VIEWER_READ_UNITS, HEADROOM * readings),
        "RUNS_TABLE": (runs_reads, SMALL_UNITS),
        "IDEMPOTENCY_TABLE": (SMALL_UNITS, SMALL_UNITS),
    }
    kinds = ("MaxReadRequestUnits", "MaxWriteRequestUnits")
    caps = {k: dict(zip(kinds, map(_ceil, pair), strict=True)) for k, pair in units.items()}
    load = {"runs": runs, "tabs": tabs, "readings": readings}
    return load | {"rate": rate, "burst": burst, "reserved": reserved, "throughput": caps}


def ceiling(stage: Stage, tables: list[dict[str, Any]]) -> dict[str, float]:
    """USD a day with every limit reached all day, at the first (dearest) price tier. `tables`
    are the description's (resources.py), each capped with its indexes."""
    size, gb = sizing(stage), int(stage.settings["lambda_memory_size"]) / 1024
    kinds = ("MaxReadRequestUnits", "MaxWriteRequestUnits")
    units = {kind: sum((1 + len(t["indexes"])) * t["throughput"][kind] for t in tables) for kind in kinds}
    requests = size["rate"] * DAY / 1e6
    cost = {
        "api_gateway": requests * prices.API_GATEWAY_REST.usd,
        "lambda_requests": requests * prices.LAMBDA_REQUESTS.usd,
        "lambda_compute": size["reserved"] * gb * DAY * prices.LAMBDA_GB_SECOND.usd,
        "dynamodb_writes": units["MaxWriteRequestUnits"] * DAY / 1e6 * prices.DYNAMODB_WRITE.usd,
        "dynamodb_reads": units["MaxReadRequestUnits"] * DAY / 1e6 * prices.DYNAMODB_READ.usd,
    }
    return cost | {"total": sum(cost.values())} | units


def describe(stage: Stage) -> str:
    from iot_playground.deploy.resources import describe as description

    s, tables = sizing(stage), description(stage)["tables"]
    cost, load = ceiling(stage, tables), s["readings"] + s["tabs"] * POLLS_PER_TAB_PER_SECOND
    caps = ", ".join(f"{t['key']} {t['throughput']['MaxWriteRequestUnits']:,} WRU/s" for t in tables)
    c, memory, h = {k: f"{v:,.2f}" for k, v in cost.items()}, stage.settings["lambda_memory_size"], HEADROOM
    return (
        f"{stage.name}: {s['runs']} runs x {SENSORS_PER_RUN} sensors / {ROUND_SECONDS} s"
        f" + {s['tabs']} tabs x {POLLS_PER_TAB_PER_SECOND:g} = {load:g} req/s\n"
        f"  rate = ceil({h} x {load:g}) = {s['rate']} req/s; burst = ceil({h} x"
        f" ({s['runs']} x {SENSORS_PER_RUN} + {s['tabs']} x {POLLS_PER_TAB_AT_ONCE})) = {s['burst']}\n"
        f"  reserved concurrency = max(ceil({s['rate']} x {REQUEST_SECONDS} s), {s['burst']})"
        f" = {s['reserved']}; table maxima: {caps}\n"
        f"  a day at the limits ({prices.REGION}, {prices.AS_OF} prices, {memory} MB): API Gateway"
        f" ${c['api_gateway']} + Lambda requests ${c['lambda_requests']}"
        f" + Lambda compute ${c['lambda_compute']}\n    + DynamoDB writes ${c['dynamodb_writes']}"
        f" ({cost['MaxWriteRequestUnits']:,} WRU/s, indexes too) + reads ${c['dynamodb_reads']}"
        f" ({cost['MaxReadRequestUnits']:,} RRU/s) = ${c['total']}/day ceiling"
    )


def reconcile_config(*, write: bool = False, check: bool = False) -> int:
    """`iot-playground capacity`: print each stage's arithmetic; write (or check) config.json's
    throttle and reserved concurrency, derived."""
    config = load_config()
    print("\n".join(describe(Stage.load(name, config)) for name in DEPLOY_STAGES))
    updated: dict[str, Any] = json.loads(json.dumps(config))
    for name in DEPLOY_STAGES:
        s = sizing(Stage.load(name, config))
        throttle = {"rate_limit": s["rate"], "burst_limit": s["burst"]}
        updated["stages"][name] |= {THROTTLING_KEY: throttle, "reserved_concurrency": s["reserved"]}
    if write and updated != config:
        CONFIG_PATH.write_text(json.dumps(updated, indent=2) + "\n")
    if updated == config or write:
        print(f"{CONFIG_PATH.name}: {'written' if updated != config else 'up to date'}")
        return 0
    stale = [name for name in DEPLOY_STAGES if updated["stages"][name] != config["stages"][name]]
    print(f"{CONFIG_PATH.name}: differs for {', '.join(stale)} (run with --write)", file=sys.stderr)
    return 1 if check else 0
