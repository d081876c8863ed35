"""`GET /api/sensors/series`: one sensor's readings of one type in a run, aggregated per time bucket.

Buckets tile the half-open range [from, to): bucket i is [from + i*interval, from + (i+1)*interval),
the last one cut at `to`. Every bucket is listed, in time order; a bucket without readings has
`value: null` whatever the aggregate (`count` too: null always means "no readings"). A `sum` or
`avg` beyond the float range is null as well (JSON has no infinity).

Reads are bounded: at most MAX_SERIES_QUERY_PAGES pages of SERIES_PAGE_SIZE readings (each page
1-3 DynamoDB Query calls, see readings.py). When the range holds more, the answer is partial,
never silently truncated: `complete: false`, the buckets that were read in full, and `nextFrom`
(the start of the first bucket not answered) to ask again from. Bucket starts stay on the same
grid, since nextFrom = from + k*interval.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Sequence
from typing import Literal

import msgspec

from chalicelib import clock
from chalicelib.errors import BadRequest
from chalicelib.readings import Cursor, ReadingQuery, ReadingRepository
from chalicelib.run_shape import Run

Aggregate = Literal["avg", "min", "max", "sum", "count"]
AGGREGATES: tuple[Aggregate, ...] = ("avg", "min", "max", "sum", "count")
DEFAULT_AGGREGATE: Aggregate = "avg"
DEFAULT_INTERVAL = "10s"
# Nine digits at most: no text grows a huge int. `(?!\n)$`: the end of the string (see schemas.py).
INTERVAL_PATTERN = r"^([1-9][0-9]{0,8})(ms|s|m|h)(?!\n)$"
INTERVAL_RE = re.compile(INTERVAL_PATTERN)
INTERVAL_FORMS = "a positive integer followed by ms, s, m or h (e.g. 500ms, 10s, 5m, 1h)"
_UNIT_MS = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000}
# A chart of more points than this is not one a person reads; it also bounds the answer's size.
MAX_BUCKETS = 1000
# The read bound per request (README, "Bounded work per request").
MAX_SERIES_QUERY_PAGES = 10
SERIES_PAGE_SIZE = 1000


class Bucket(msgspec.Struct):
    """One time bucket: `t` is its start; `value` is null when it holds no readings."""

    t: str
    value: float | None


class Series(msgspec.Struct):
    """`buckets` covers [from, to) when `complete`; otherwise [from, nextFrom), and the rest is
    asked for again with `from=<nextFrom>`."""

    runId: str
    sensorId: str
    type: str
    agg: Aggregate
    interval: str
    intervalMs: int
    from_: str = msgspec.field(name="from")
    to: str
    buckets: list[Bucket]
    complete: bool
    nextFrom: str | None


# ---- pure functions -------------------------------------------------------------


def parse_interval(text: str | None) -> int:
    """`500ms`, `10s`, `5m`, `1h` (absent or empty: DEFAULT_INTERVAL) to milliseconds; else a 400."""
    if text is None or text == "":
        text = DEFAULT_INTERVAL
    match = INTERVAL_RE.match(text)
    if match is None:
        raise BadRequest(f"interval must be {INTERVAL_FORMS}, got {text[:40]!r}")
    return int(match.group(1)) * _UNIT_MS[match.group(2)]


def bucket_count(from_ms: int, to_ms: int, interval_ms: int) -> int:
    """Buckets that tile [from, to): the last one may be shorter."""
    return max(0, -(-(to_ms - from_ms) // interval_ms))


def check_bucket_count(from_ms: int, to_ms: int, interval_ms: int, interval: str) -> int:
    count = bucket_count(from_ms, to_ms, interval_ms)
    if count > MAX_BUCKETS:
        raise BadRequest(
            f"at most {MAX_BUCKETS} buckets per series: {clock.format_ms(from_ms)} to"
            f" {clock.format_ms(to_ms)} in steps of {interval} makes {count};"
            " use a longer interval or a shorter from/to range"
        )
    return count


def default_range(run: Run, now_ms: int, from_ms: int | None, to_ms: int | None) -> tuple[int, int]:
    """[from, to) with the run's span for what the caller left out: startedAt up to and including
    finishedAt (now while RUNNING). A default end never falls before the other end, so a range
    given only on one side beyond the run is empty rather than reversed."""
    end = (run.finished_ms if run.finished_ms is not None else now_ms) + 1
    start = from_ms if from_ms is not None else run.started_ms
    if from_ms is None and to_ms is not None:
        start = min(start, to_ms)
    stop = to_ms if to_ms is not None else max(end, start)
    return start, stop


def aggregate(values: Sequence[float], agg: Aggregate) -> float | None:
    """One bucket's value; None for no values, or for a sum beyond the float range."""
    if not values:
        return None
    if agg == "count":
        return float(len(values))
    if agg == "min":
        return min(values)
    if agg == "max":
        return max(values)
    try:
        total = math.fsum(values)  # exact, so a bucket's value does not depend on reading order
    except OverflowError:
        total = math.inf
    if agg == "sum":
        return total if math.isfinite(total) else None
    if math.isfinite(total):
        return total / len(values)
    # Each term is at most max/len: the mean of finite values is finite.
    return math.fsum(v / len(values) for v in values)


def bucket_values(
    points: Iterable[tuple[int, float]], from_ms: int, to_ms: int, interval_ms: int
) -> list[list[float]]:
    """The values of (timestamp ms, value) points per bucket of [from, to); others are left out."""
    out: list[list[float]] = [[] for _ in range(bucket_count(from_ms, to_ms, interval_ms))]
    for at, value in points:
        if from_ms <= at < to_ms:
            out[(at - from_ms) // interval_ms].append(value)
    return out


def buckets(
    points: Iterable[tuple[int, float]], from_ms: int, to_ms: int, interval_ms: int, agg: Aggregate
) -> list[Bucket]:
    return [
        Bucket(clock.format_ms(from_ms + i * interval_ms), aggregate(values, agg))
        for i, values in enumerate(bucket_values(points, from_ms, to_ms, interval_ms))
    ]


# ---- the read -------------------------------------------------------------------------


def read_series(
    repository: ReadingRepository,
    *,
    run_id: str,
    sensor_id: str,
    type: str,
    from_ms: int,
    to_ms: int,
    interval: str,
    agg: Aggregate,
) -> Series:
    """The series of [from, to), reading at most MAX_SERIES_QUERY_PAGES pages (see module doc)."""
    interval_ms = parse_interval(interval)
    check_bucket_count(from_ms, to_ms, interval_ms, interval)
    points: list[tuple[int, float]] = []
    key: Cursor | None = None
    if to_ms > from_ms:
        query = ReadingQuery(
            run_id=run_id, sensor_id=sensor_id, type=type, from_ms=from_ms, to_ms=to_ms - 1, order="asc"
        )
        for _ in range(MAX_SERIES_QUERY_PAGES):
            page = repository.query(query, limit=SERIES_PAGE_SIZE, start_key=key)
            points += ((r.timestamp_ms, r.value) for r in page.readings)
            key = page.last_key
            if key is None:
                break
    next_from: int | None = None
    if key is not None:
        # More to read than the bound allows. Readings come in time order, so every bucket before
        # the one holding the last reading read is whole; that one and later ones are not answered.
        bound = f"{MAX_SERIES_QUERY_PAGES * SERIES_PAGE_SIZE} readings ({MAX_SERIES_QUERY_PAGES} pages)"
        if not points:
            raise BadRequest(
                f"no reading of this series came within the read bound of {bound}: narrow from/to"
            )
        whole = (points[-1][0] - from_ms) // interval_ms
        if whole == 0:
            raise BadRequest(
                f"the first bucket ({clock.format_ms(from_ms)}, {interval}) holds more readings than the"
                f" read bound of {bound}: use a shorter interval"
            )
        next_from = from_ms + whole * interval_ms
    return Series(
        runId=run_id,
        sensorId=sensor_id,
        type=type,
        agg=agg,
        interval=interval,
        intervalMs=interval_ms,
        from_=clock.format_ms(from_ms),
        to=clock.format_ms(to_ms),
        buckets=buckets(points, from_ms, to_ms if next_from is None else next_from, interval_ms, agg),
        complete=next_from is None,
        nextFrom=None if next_from is None else clock.format_ms(next_from),
    )
