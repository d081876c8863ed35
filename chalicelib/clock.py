"""Time in the one format the API speaks: ISO-8601 UTC, milliseconds, `Z`."""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime, timedelta

# Readings outside this window are refused as typos (e.g. seconds sent as milliseconds).
EARLIEST_MS = 946_684_800_000  # 2000-01-01T00:00:00Z
LATEST_MS = 4_102_444_800_000  # 2100-01-01T00:00:00Z
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# fromisoformat takes any one character between date and time, a digit included
# ("20240101100:00" is 10:00); here only T, t or a space. re.ASCII: \d is 0-9 only.
_DATE_THEN_TIME = re.compile(r"\d{4}-?\d{2}-?\d{2}(?:[Tt ]|\Z)", re.ASCII)


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def format_ms(epoch_ms: int) -> str:
    seconds, millis = divmod(epoch_ms, 1000)
    return datetime.fromtimestamp(seconds, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{millis:03d}Z"


def parse_iso_ms(value: str) -> int:
    """Parse ISO-8601 (zone optional, UTC assumed) to epoch milliseconds; ValueError if not.

    The whole text is the timestamp: no surrounding space, ASCII only, and a calendar date
    followed by nothing or by T, t or a space and the time."""
    if not value or len(value) > 40 or not value.isascii() or not _DATE_THEN_TIME.match(value):
        raise ValueError("not an ISO-8601 timestamp")
    parsed = datetime.fromisoformat(value)
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return (parsed - _EPOCH) // timedelta(milliseconds=1)


def in_range(epoch_ms: int) -> bool:
    return EARLIEST_MS <= epoch_ms < LATEST_MS
