"""AWS list prices the cost figures use: eu-west-3 (Paris), on-demand, USD, dated.

One place for every unit price (`make bench`'s monthly cost model, `capacity.py`'s
denial-of-wallet ceiling). Each price names where it is published; the figures are those
pages as the author knew them on AS_OF, not fetched by any code here (no network): check
the pages before quoting a total, and change a price here, once, when it moves.
"""

from __future__ import annotations

from dataclasses import dataclass

REGION = "eu-west-3"
AS_OF = "2025-06"


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


API_GATEWAY_REST = Price(
    3.71,
    "million requests (first 333 million a month)",
    "aws.amazon.com/api-gateway/pricing, REST APIs, Europe (Paris)",
    "first tier only: cheaper tiers follow past 333 million a month, so totals above that are a ceiling",
)
LAMBDA_REQUESTS = Price(0.20, "million requests", "aws.amazon.com/lambda/pricing, Europe (Paris)")
LAMBDA_GB_SECOND = Price(
    0.0000166667,
    "GB-second (x86_64, first 6 billion GB-seconds a month)",
    "aws.amazon.com/lambda/pricing, Europe (Paris)",
)
DYNAMODB_WRITE = Price(
    0.7423,
    "million write request units (on-demand)",
    "aws.amazon.com/dynamodb/pricing/on-demand, Europe (Paris), after the 1 Nov 2024 price cut",
)
DYNAMODB_READ = Price(
    0.1484,
    "million read request units (on-demand)",
    "aws.amazon.com/dynamodb/pricing/on-demand, Europe (Paris), after the 1 Nov 2024 price cut",
)
DYNAMODB_STORAGE = Price(
    0.297,
    "GB-month (Standard table class, past the first 25 GB free)",
    "aws.amazon.com/dynamodb/pricing/on-demand, Europe (Paris), data storage",
)
CLOUDWATCH_LOGS_INGESTION = Price(
    0.57,
    "GB ingested (Standard log class)",
    "aws.amazon.com/cloudwatch/pricing, Logs, Europe (Paris)",
    "EMF lines are billed as log ingestion; the metrics they create are billed as custom metrics",
)
CLOUDWATCH_CUSTOM_METRICS = (
    Tier(10_000, 0.30),
    Tier(250_000, 0.10),
    Tier(1_000_000, 0.05),
    Tier(None, 0.02),
)
CLOUDWATCH_CUSTOM_METRICS_SOURCE = (
    "aws.amazon.com/cloudwatch/pricing, Metrics, Europe (Paris): per metric-month, prorated by the hour "
    "a metric receives data"
)
HOURS_PER_MONTH = 730  # CloudWatch prorates custom metrics over this many hours


def tiered(units: float, tiers: tuple[Tier, ...]) -> float:
    """The cost of `units` through consecutive tiers (each `up_to` counts from zero)."""
    cost, below = 0.0, 0.0
    for tier in tiers:
        top = units if tier.up_to is None else min(units, tier.up_to)
        if top > below:
            cost += (top - below) * tier.usd
            below = top
    return cost
