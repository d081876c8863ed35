"""AWS list prices the cost figures use (`benchmarks/cost.py`, `capacity.py`): eu-west-3 (Paris),
on-demand, USD, as their pages stood on AS_OF, not fetched: check the pages before quoting a total,
and change a price here, once, when it moves.
"""

from __future__ import annotations

from dataclasses import dataclass

REGION = "eu-west-3"
AS_OF = "2025-06"
HOURS_PER_MONTH = 730  # CloudWatch prorates custom metrics over this many hours


@dataclass(frozen=True, slots=True)
class Price:
    usd: float
    per: str
    source: str
    note: str = ""


@dataclass(frozen=True, slots=True)
class Tier:
    """`usd` per unit up to `up_to` units a month (None: no limit)."""

    up_to: float | None
    usd: float


_PAGE = "aws.amazon.com/{}/pricing, Europe (Paris)"
_DYNAMODB = _PAGE.format("dynamodb") + " on-demand, after the 1 Nov 2024 price cut"
_CLOUDWATCH = _PAGE.format("cloudwatch")

# ---- this API: API Gateway, Lambda, DynamoDB, CloudWatch ---------------------------------
API_GATEWAY_REST = Price(
    3.71,
    "million requests (first 333 million a month)",
    _PAGE.format("api-gateway") + ", REST APIs",
    "first tier only: cheaper tiers follow past 333 million a month, so totals above that are a ceiling",
)
LAMBDA_REQUESTS = Price(0.20, "million requests", _PAGE.format("lambda"))
LAMBDA_GB_SECOND = Price(0.0000166667, "GB-second (x86_64, first 6 billion a month)", _PAGE.format("lambda"))
DYNAMODB_WRITE = Price(0.7423, "million write request units (on-demand)", _DYNAMODB)
DYNAMODB_READ = Price(0.1484, "million read request units (on-demand)", _DYNAMODB)
DYNAMODB_STORAGE = Price(0.297, "GB-month (Standard table class, past the first 25 GB free)", _DYNAMODB)
CLOUDWATCH_LOGS_INGESTION = Price(
    0.57,
    "GB ingested (Standard log class)",
    _CLOUDWATCH + ", Logs",
    "EMF lines are billed as log ingestion; the metrics they create are billed as custom metrics",
)
LOGS_INSIGHTS_SCANNED = Price(0.0057, "GB scanned by Logs Insights queries", _CLOUDWATCH + ", Logs")
# CloudWatch's Metrics pricing: per metric-month, prorated by the hour a metric receives data.
CLOUDWATCH_CUSTOM_METRICS = (Tier(10_000, 0.30), Tier(250_000, 0.10), Tier(1_000_000, 0.05), Tier(None, 0.02))

# ---- the design it replaces: ECS Fargate behind an ALB, RDS for PostgreSQL ---------------
FARGATE_VCPU_HOUR = Price(0.04656, "vCPU-hour (Linux/x86)", _PAGE.format("fargate"))
FARGATE_GB_HOUR = Price(0.00511, "GB-hour of task memory (Linux/x86)", _PAGE.format("fargate"))
ALB_HOUR = Price(0.0264, "Application Load Balancer-hour", _PAGE.format("elasticloadbalancing"))
ALB_LCU_HOUR = Price(0.0084, "LCU-hour", _PAGE.format("elasticloadbalancing"))
PUBLIC_IPV4_HOUR = Price(0.005, "public IPv4 address-hour", _PAGE.format("vpc") + ", public IPv4 addresses")
# RDS for PostgreSQL, Single-AZ, on-demand, per instance-hour (Multi-AZ: twice the instance and storage).
RDS_POSTGRES_HOUR = {
    "db.t4g.micro": 0.018,
    "db.t4g.medium": 0.071,
    "db.m6g.large": 0.175,
    "db.m6g.xlarge": 0.350,
    "db.m6g.2xlarge": 0.700,
}
RDS_POSTGRES_SOURCE = _PAGE.format("rds/postgresql") + ", Single-AZ on-demand instances"
RDS_GP3_GB_MONTH = Price(0.133, "GB-month of gp3 storage (3,000 IOPS included)", RDS_POSTGRES_SOURCE)


def tiered(units: float, tiers: tuple[Tier, ...]) -> float:
    """The cost of `units` through consecutive tiers (each `up_to` counts from zero)."""
    cost, below = 0.0, 0.0
    for tier in tiers:
        top = units if tier.up_to is None else min(units, tier.up_to)
        if top > below:
            cost += (top - below) * tier.usd
            below = top
    return cost


# ---- devices over MQTT (docs/mqtt.md): IoT Core, a topic rule, SQS ----------------------------
_IOT = _PAGE.format("iot-core").replace("Europe (Paris)", "US East (N. Virginia)")
IOT_MESSAGING = Price(1.00, "million messages of up to 5 KB (first billion)", _IOT, "other regions list more")
IOT_RULES = Price(0.15, "million rules triggered", _IOT + ", rules engine")
IOT_ACTIONS = Price(0.15, "million actions executed", _IOT + ", rules engine")
SQS_REQUESTS = Price(0.40, "million requests (standard queue, past the free million)", _PAGE.format("sqs"))
