"""Latency percentiles and throughput, computed the same way for every tool."""

from __future__ import annotations

import math
from collections.abc import Sequence

PERCENTILES = (50, 95, 99)


def percentile(values: Sequence[float], p: float) -> float | None:
    """Nearest-rank percentile: a value that was actually observed, None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(p / 100 * len(ordered)))
    return ordered[rank - 1]


def latency_summary(latencies_ms: Sequence[float]) -> dict[str, float | int | None]:
    summary: dict[str, float | int | None] = {"count": len(latencies_ms)}
    for p in PERCENTILES:
        value = percentile(latencies_ms, p)
        summary[f"p{p}"] = None if value is None else round(value, 1)
    summary["max"] = round(max(latencies_ms), 1) if latencies_ms else None
    summary["mean"] = round(sum(latencies_ms) / len(latencies_ms), 1) if latencies_ms else None
    return summary


def rate(count: int, seconds: float) -> float:
    return round(count / seconds, 1) if seconds > 0 else 0.0


def format_ms(value: float | int | None) -> str:
    return "-" if value is None else f"{value:.1f} ms"
