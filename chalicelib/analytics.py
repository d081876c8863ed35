"""Run analytics: per (sensor, type) statistics of a run, each series' latest reading, and one
series aggregated per time bucket. Every figure comes from the run's readings, read through
`readings.Stream` within a budget of Query calls, whatever the run holds.

Statistics are a *fold*: `Fold.add` takes the readings in ascending time order and keeps, per
series, count, sum, min, max, first and last time, last value and largest gap, plus run totals.
- While a run is RUNNING, or ended less than `settle_ms` ago (a container that has not heard of
  the end may still store a reading), each call folds afresh within the budget and keeps nothing.
- Once final, the fold and the stream's `next_key` are kept in one runs-table item (kind `stats`);
  each call goes on from there and writes it back on the condition that its `version` is still
  the one read: a whole fold with its own cursor, so no reading counts twice, and a slow call
  never overwrites newer progress. Once done, a call is two GetItems. Ingest pays nothing.
"""

from __future__ import annotations

import math
import re
from typing import TYPE_CHECKING, Any, Literal

import msgspec

from chalicelib import readings, schemas
from chalicelib.readings import Budget, Reading, ReadingQuery, ReadingRepository
from chalicelib.runs import RUNNING, Run
from chalicelib.schemas import BadRequest, condition_failed, format_ms
from chalicelib.tables import KIND, STATS_KIND

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

STATS_CALLS = 5  # Query calls of up to 1000 readings per stats or latest request
MAX_LISTED_SERIES = 1000  # series a stats answer lists; totals count every one
MAX_KEPT_BYTES = 350_000  # a fold larger than this (thousands of series) is not kept: 400 KB items
# The longest a request that saw the run RUNNING may still be storing readings (Lambda timeout).
MAX_REQUEST_SECONDS = 60


def settle_ms(cache_seconds: float) -> int:
    """How long after its end a run's readings are final."""
    return int((cache_seconds + MAX_REQUEST_SECONDS) * 1000)


class Series(msgspec.Struct, array_like=True):
    sensor_id: str
    type: str
    count: int
    sum: float
    min: float
    max: float
    first_ms: int
    last_ms: int
    last_value: float
    largest_gap_ms: int = 0


class FoldState(msgspec.Struct, array_like=True):
    series: list[Series]
    count: int = 0
    sum: float = 0.0
    min: float | None = None
    max: float | None = None
    first_ms: int | None = None
    last_ms: int | None = None


class SeriesView(msgspec.Struct):
    sensorId: str
    type: str
    count: int
    min: float
    max: float
    mean: float
    firstTimestamp: str
    lastTimestamp: str
    lastValue: float
    largestGapMs: int | None  # null with a single reading


class RunStatsView(msgspec.Struct):
    runId: str
    status: str
    complete: bool
    final: bool
    note: str
    readings: int
    sensors: int
    declaredSensors: int
    expected: int
    received: int
    completeness: float | None
    min: float | None
    max: float | None
    mean: float | None
    firstTimestamp: str | None
    lastTimestamp: str | None
    omittedReadings: int  # readings of the series left out of `series` (beyond MAX_LISTED_SERIES)
    series: list[SeriesView]


class LatestReading(msgspec.Struct):
    sensorId: str
    type: str
    reading: float
    timestamp: str


class LatestView(msgspec.Struct):
    runId: str
    status: str
    complete: bool
    final: bool
    note: str
    count: int
    items: list[LatestReading]


SUMMARY_COLUMNS: tuple[str, ...] = (
    "readings",
    "sensorsReporting",
    "expected",
    "completeness",
    "firstReadingAt",
)
SUMMARY_COLUMNS += ("lastReadingAt", "min", "max", "mean")


def _iso(epoch_ms: int | None) -> str | None:
    return format_ms(epoch_ms) if epoch_ms is not None else None


class Fold:
    """Statistics of one run's readings, fed in ascending time order."""

    def __init__(self, state: FoldState | None = None):
        self.state = state or FoldState(series=[])
        self._index = {(s.sensor_id, s.type): s for s in self.state.series}

    def add(self, reading: Reading) -> None:
        state, value, at = self.state, reading.value, reading.timestamp_ms
        state.count, state.sum, state.last_ms = state.count + 1, state.sum + value, at
        state.min = value if state.min is None else min(state.min, value)
        state.max = value if state.max is None else max(state.max, value)
        state.first_ms = at if state.first_ms is None else state.first_ms
        series = self._index.get((reading.sensor_id, reading.type))
        if series is None:
            series = Series(reading.sensor_id, reading.type, 0, 0.0, value, value, at, at, value)
            self.state.series.append(series)
            self._index[(reading.sensor_id, reading.type)] = series
        series.largest_gap_ms = max(series.largest_gap_ms, at - series.last_ms)
        series.count, series.sum = series.count + 1, series.sum + value
        series.last_ms, series.last_value = at, value
        series.min, series.max = min(series.min, value), max(series.max, value)

    def encode(self) -> bytes:
        return msgspec.msgpack.encode(self.state)

    @staticmethod
    def decode(data: bytes) -> Fold:
        return Fold(msgspec.msgpack.decode(data, type=FoldState))

    def series(self) -> list[Series]:
        return sorted(self.state.series, key=lambda s: (s.sensor_id, s.type))

    def received(self, run: Run) -> int:
        """Sensor rounds that arrived: per declared sensor, the count of its most frequent type
        (a measurement object of three types is one round), at most the rounds due."""
        rounds, best = run.duration // run.interval, dict[str, int]()
        for s in self.state.series:
            best[s.sensor_id] = max(best.get(s.sensor_id, 0), s.count)
        return sum(min(rounds, best.get(sensor, 0)) for sensor in run.sensor_ids)

    def view(self, run: Run, *, complete: bool, final: bool, note: str) -> RunStatsView:
        """The figures; the run totals count every series, `series` lists MAX_LISTED_SERIES."""
        state, listed = self.state, self.series()[:MAX_LISTED_SERIES]
        omitted = state.count - sum(s.count for s in listed)
        expected = (run.duration // run.interval) * len(run.sensor_ids)
        if omitted:
            note += (
                f"; {len(state.series) - len(listed)} series past the first {MAX_LISTED_SERIES} not listed"
            )
        return RunStatsView(
            runId=run.id,
            status=run.status,
            complete=complete and not omitted,
            final=final,
            note=note,
            readings=state.count,
            sensors=len({s.sensor_id for s in state.series}),
            declaredSensors=len(run.sensor_ids),
            expected=expected,
            received=self.received(run),
            completeness=self.received(run) / expected if expected else None,
            min=state.min,
            max=state.max,
            mean=state.sum / state.count if state.count else None,
            firstTimestamp=_iso(state.first_ms),
            lastTimestamp=_iso(state.last_ms),
            omittedReadings=omitted,
            series=[
                SeriesView(s.sensor_id, s.type, s.count, s.min, s.max, s.sum / s.count, format_ms(s.first_ms),
                           format_ms(s.last_ms), s.last_value, s.largest_gap_ms if s.count > 1 else None)
                for s in listed
            ],
        )  # fmt: skip

    def summary_row(self, run: Run) -> dict[str, Any]:
        """The totals as flat columns (SUMMARY_COLUMNS) of the report's summary.csv."""
        v = self.view(run, complete=True, final=True, note="")
        row: tuple[Any, ...] = (v.readings, v.sensors, v.expected, v.completeness, v.firstTimestamp)
        row += (v.lastTimestamp, v.min, v.max, v.mean)
        return {
            name: "" if value is None else value for name, value in zip(SUMMARY_COLUMNS, row, strict=True)
        }


class Folded(msgspec.Struct, frozen=True):
    fold: Fold
    complete: bool  # every reading stored (when read) is in the fold
    final: bool  # the run's readings can no longer change

    def note(self, run: Run) -> str:
        count, bound = self.fold.state.count, f"{STATS_CALLS} pages of {readings.PAGE_READINGS} readings"
        if self.final:
            partial = f"partial: the first {count} readings; each call folds {bound} more, ask again"
            return "final: every reading of the ended run, kept" if self.complete else partial
        what = "the run is RUNNING" if run.status == RUNNING else "the run ended moments ago"
        if self.complete:
            return f"{what}: exact for the readings stored at this call, computed afresh on every call"
        return (
            f"partial, {what}: only the oldest {count} readings (at most {bound} a call); complete once ended"
        )


class RunAnalytics:
    def __init__(self, client: DynamoDBClient, runs_table: str, readings: ReadingRepository, settle: int):
        self._client, self._table, self._readings, self._settle_ms = client, runs_table, readings, settle

    def stats(self, run: Run) -> Folded:
        ended = run.finished_ms if run.status != RUNNING else None
        if ended is None or schemas.now_ms() < ended + self._settle_ms:
            fold = Fold()
            return Folded(fold, self.fold_more(run, fold, None) is None, False)
        item = self._get(run.id)
        fold = Fold.decode(item["state"]["B"]) if item else Fold()
        if item and item["done"]["BOOL"]:
            return Folded(fold, True, True)
        cursor = msgspec.msgpack.decode(item["cursor"]["B"]) if item and "cursor" in item else None
        cursor = self.fold_more(run, fold, cursor)
        if self.keep(run.id, fold, cursor, int(item["version"]["N"]) if item else 0):
            return Folded(fold, cursor is None, True)
        stored = self._get(run.id)  # another call stored its progress first: answer with that
        if stored is None:
            return Folded(fold, False, True)
        return Folded(Fold.decode(stored["state"]["B"]), bool(stored["done"]["BOOL"]), True)

    def fold_more(self, run: Run, fold: Fold, cursor: Any, budget: Budget | None = None) -> Any:
        """Fold the run's readings from `cursor` on; where to go on (None: all folded)."""
        stream = self._readings.stream(
            ReadingQuery(run.id, ascending=True), budget or Budget(STATS_CALLS), after=cursor
        )
        for reading in stream:
            fold.add(reading)
        return stream.next_key

    def latest(self, run: Run) -> LatestView:
        """The last reading of each series: from the kept fold once complete, else reading the
        run newest first (at most STATS_CALLS calls); complete only when that held every series."""
        folded = self.stats(run) if run.status != RUNNING else None
        if folded is not None and folded.complete:
            last = {(s.sensor_id, s.type): (s.last_value, s.last_ms) for s in folded.fold.state.series}
            complete, note = True, folded.note(run)
        else:
            stream = self._readings.stream(ReadingQuery(run.id), Budget(STATS_CALLS))
            last = {}
            for r in stream:
                last.setdefault((r.sensor_id, r.type), (r.value, r.timestamp_ms))
            complete, note = stream.complete, "the newest readings, read newest first"
            if not complete:
                bound = f"{STATS_CALLS} pages of {readings.PAGE_READINGS}"
                note += f" ({bound}): a series not among them is not listed"
        items = [LatestReading(s, t, value, format_ms(at)) for (s, t), (value, at) in sorted(last.items())]
        final = folded.final if folded is not None else False
        return LatestView(run.id, run.status, complete, final, note, len(items), items)

    def keep(self, run_id: str, fold: Fold, cursor: Any, version: int) -> bool:
        """Store the fold as version + 1 if the stored one is still `version`; False if not."""
        state = fold.encode()
        if len(state) > MAX_KEPT_BYTES:
            return False
        item: dict[str, Any] = {
            "id": {"S": f"#stats#{run_id}"},
            KIND: {"S": STATS_KIND},
            "state": {"B": state},
            "done": {"BOOL": cursor is None},
            "version": {"N": str(version + 1)},
            "readings": {"N": str(fold.state.count)},
            "updatedAt": {"S": format_ms(schemas.now_ms())},
        }
        if cursor is not None:
            item["cursor"] = {"B": msgspec.msgpack.encode(cursor)}
        condition = "attribute_not_exists(id)" if version == 0 else "version = :version"
        versions: Any = {"ExpressionAttributeValues": {":version": {"N": str(version)}}} if version else {}
        try:
            self._client.put_item(TableName=self._table, Item=item, ConditionExpression=condition, **versions)
        except Exception as error:
            if not condition_failed(error):
                raise
            return False
        return True

    def _get(self, run_id: str) -> dict[str, Any] | None:
        key = {"id": {"S": f"#stats#{run_id}"}}
        return self._client.get_item(TableName=self._table, Key=key, ConsistentRead=True).get("Item")  # type: ignore[return-value]


# ---- one series per time bucket -------------------------------------------------------------

Aggregate = Literal["avg", "min", "max", "sum", "count"]
AGGREGATES: tuple[Aggregate, ...] = ("avg", "min", "max", "sum", "count")
DEFAULT_INTERVAL = "10s"
INTERVAL_PATTERN = r"^([1-9][0-9]{0,8})(ms|s|m|h)(?!\n)$"  # nine digits at most: no huge int
_UNIT_MS = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000}
MAX_BUCKETS = 1000  # a chart of more points is not one a person reads; it bounds the answer too
SERIES_CALLS = 10  # Query calls of up to 1000 readings per series request


class Bucket(msgspec.Struct):
    t: str  # the bucket's start
    value: float | None  # null: no readings in the bucket (or a sum beyond the float range)


class SeriesAnswer(msgspec.Struct):
    """`buckets` tile [from, to) when `complete`; else [from, nextFrom): ask again from there."""

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


def parse_interval(text: str | None) -> int:
    match = re.match(INTERVAL_PATTERN, text or DEFAULT_INTERVAL)
    if match is None:
        raise BadRequest(
            "interval must be a positive integer followed by ms, s, m or h (e.g. 500ms, 10s, 5m, 1h),"
            f" got {(text or '')[:40]!r}"
        )
    return int(match.group(1)) * _UNIT_MS[match.group(2)]


def aggregate(values: list[float], agg: Aggregate) -> float | None:
    """One bucket's value; None for no values, or for a sum beyond the float range."""
    if not values:
        return None
    if agg in ("count", "min", "max"):
        return float(len(values)) if agg == "count" else (min if agg == "min" else max)(values)
    try:
        total = math.fsum(values)  # exact: a bucket's value does not depend on reading order
    except OverflowError:
        total = math.inf
    if agg == "sum" or math.isfinite(total):
        return (total if agg == "sum" else total / len(values)) if math.isfinite(total) else None
    return math.fsum(v / len(values) for v in values)  # each term <= max/len: finite


def read_series(
    repository: ReadingRepository,
    run: Run,
    sensor_id: str,
    kind: str,
    low: int | None,
    high: int | None,
    interval: str | None,
    agg: Aggregate,
) -> SeriesAnswer:
    """Buckets of [from, to) (default: the run's time, startedAt to finishedAt or now, inclusive)."""
    interval = interval or DEFAULT_INTERVAL
    interval_ms = parse_interval(interval)
    end = (run.finished_ms if run.finished_ms is not None else schemas.now_ms()) + 1
    from_ms = low if low is not None else (run.started_ms if high is None else min(run.started_ms, high))
    to_ms = high if high is not None else max(end, from_ms)
    count = max(0, -(-(to_ms - from_ms) // interval_ms))
    if count > MAX_BUCKETS:
        window = f"{format_ms(from_ms)} to {format_ms(to_ms)} in steps of {interval}"
        raise BadRequest(
            f"at most {MAX_BUCKETS} buckets per series: {window} makes {count};"
            " use a longer interval or a shorter from/to range"
        )
    values: list[list[float]] = [[] for _ in range(count)]
    last_at, next_from = None, None
    if to_ms > from_ms:
        query = ReadingQuery(run.id, sensor_id, kind, from_ms, to_ms - 1, ascending=True)
        stream = repository.stream(query, Budget(SERIES_CALLS))
        for reading in stream:
            values[(reading.timestamp_ms - from_ms) // interval_ms].append(reading.value)
            last_at = reading.timestamp_ms
        if not stream.complete:
            # Buckets before the one of the last reading read are whole: answer those.
            bound = f"{SERIES_CALLS * readings.PAGE_READINGS} readings ({SERIES_CALLS} pages)"
            if last_at is None:
                raise BadRequest(
                    f"no reading of this series came within the read bound of {bound}: narrow from/to"
                )
            whole = (last_at - from_ms) // interval_ms
            if whole == 0:
                raise BadRequest(
                    f"the first bucket ({format_ms(from_ms)}, {interval}) holds more readings than the read"
                    f" bound of {bound}: use a shorter interval"
                )
            next_from, values = from_ms + whole * interval_ms, values[:whole]
    return SeriesAnswer(
        runId=run.id,
        sensorId=sensor_id,
        type=kind,
        agg=agg,
        interval=interval,
        intervalMs=interval_ms,
        from_=format_ms(from_ms),
        to=format_ms(to_ms),
        buckets=[
            Bucket(format_ms(from_ms + i * interval_ms), aggregate(v, agg)) for i, v in enumerate(values)
        ],
        complete=next_from is None,
        nextFrom=_iso(next_from),
    )
