"""Run analytics: per (sensor, type) statistics of a run, and each series' latest reading.

Mechanism: a *fold*. `RunStatsFold.add` takes the run's readings one by one in exact
ascending (timestamp, sensor, type) order, as `ReadingRepository.query(..., order="asc")`
gives them, and keeps per series count, sum, min, max, first and last timestamp, last
value and the largest gap between consecutive readings, plus the run's totals. The
state is small (one `SeriesStats` per series, at most `MAX_SERIES`) and encodes to
msgpack, so it can be kept and continued later from the query's `Cursor`.

Bounded work: one call reads at most `MAX_STATS_QUERY_PAGES` pages of
`STATS_PAGE_LIMIT` readings (each page 1-3 Query calls, up to 6 when starved; see
`readings._Scan`), whatever the run holds.

- While the run is RUNNING, or ended less than `settle_ms` ago (a container that has
  not noticed the end yet may still store a reading, possibly back-dated before
  readings already folded), every call folds from scratch within that bound and writes
  nothing. The answer is exact for the readings stored at that moment when they fit
  the bound (`complete: true`); otherwise it holds the figures of the oldest
  readings folded so far (`complete: false`).
- Once the run's readings are final (ended at least `settle_ms` ago), the fold state
  and the query cursor are kept in ONE item of the runs table, `STATS_PREFIX + runId`
  (like the `#request#` records of idempotency.py, it has no `entity` attribute, so no
  runs index lists it and `RunRepository.get` does not take it for a run). Each call
  continues from the stored cursor for at most the bound and writes the item back on
  the condition that its `version` is still the one read. The fold and its cursor are
  one value, written whole, so no reading is ever counted twice; the condition keeps a
  slow call from overwriting newer progress (the loser answers with what is stored). Once
  the fold is done (`done`), a call is one GetItem. Ingest is untouched: zero extra
  write units per reading.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import msgspec
from botocore.exceptions import ClientError

from chalicelib import clock
from chalicelib.readings import Cursor, Reading, ReadingQuery, ReadingRepository
from chalicelib.run_shape import RUNNING, Run

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

    from chalicelib.settings import Settings

MAX_STATS_QUERY_PAGES = 5
STATS_PAGE_LIMIT = 1000
# Series kept per run (100 sensors x 10 types). Readings of further series still count
# in the run's totals (count, min, max, mean), as `omittedReadings`. Bounds the stored
# item: a series encodes to at most ~175 bytes (ids of 64 and 32 characters), so
# 1000 series stay under 200 KB of DynamoDB's 400 KB item limit.
MAX_SERIES = 1000
STATS_PREFIX = "#stats#"
# The longest a request that saw the run RUNNING can still be storing readings: the
# longest Lambda timeout of any stage (.chalice/config.json).
MAX_REQUEST_SECONDS = 60


def stats_item_id(run_id: str) -> str:
    return STATS_PREFIX + run_id


def settle_ms(settings: Settings) -> int:
    """How long after its end a run's readings are final: other containers refuse readings
    for it within RUN_STATUS_CACHE_SECONDS, and a request accepted before that ends
    within MAX_REQUEST_SECONDS."""
    return int((settings.run_status_cache_seconds + MAX_REQUEST_SECONDS) * 1000)


# ---- the fold ---------------------------------------------------------------------


class SeriesStats(msgspec.Struct, array_like=True):
    """One (sensor, type) series of a run, so far."""

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
    """What the fold keeps: its series in order of first appearance, and the run's totals."""

    series: list[SeriesStats]
    count: int = 0
    sum: float = 0.0
    min: float | None = None
    max: float | None = None
    first_ms: int | None = None
    last_ms: int | None = None
    omitted: int = 0


_STATE_DECODER = msgspec.msgpack.Decoder(FoldState)
_CURSOR_DECODER = msgspec.msgpack.Decoder(Cursor)


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
    omittedReadings: int
    series: list[SeriesView]


class LatestReading(msgspec.Struct):
    sensorId: str
    type: str
    reading: float
    timestamp: str


class LatestReadingsView(msgspec.Struct):
    runId: str
    status: str
    complete: bool
    final: bool
    note: str
    count: int
    items: list[LatestReading]


def _iso(epoch_ms: int | None) -> str | None:
    return clock.format_ms(epoch_ms) if epoch_ms is not None else None


# The columns of `RunStatsFold.summary_row`, in order.
SUMMARY_COLUMNS = (
    "readings",
    "sensorsReporting",
    "expected",
    "completeness",
    "firstReadingAt",
    "lastReadingAt",
    "min",
    "max",
    "mean",
)


class RunStatsFold:
    """Statistics of one run's readings, fed in ascending time order."""

    def __init__(self, state: FoldState | None = None):
        self._state = state if state is not None else FoldState(series=[])
        self._index = {(s.sensor_id, s.type): s for s in self._state.series}

    # ---- feeding ---------------------------------------------------------------

    def add(self, reading: Reading) -> None:
        """One more reading of the run, no earlier than the previous one."""
        state, value, at = self._state, reading.value, reading.timestamp_ms
        state.count += 1
        state.sum += value
        state.min = value if state.min is None else min(state.min, value)
        state.max = value if state.max is None else max(state.max, value)
        if state.first_ms is None:
            state.first_ms = at
        state.last_ms = at
        key = (reading.sensor_id, reading.type)
        series = self._index.get(key)
        if series is None:
            if len(state.series) >= MAX_SERIES:
                state.omitted += 1
                return
            series = SeriesStats(reading.sensor_id, reading.type, 0, 0.0, value, value, at, at, value)
            state.series.append(series)
            self._index[key] = series
        else:
            series.largest_gap_ms = max(series.largest_gap_ms, at - series.last_ms)
        series.count += 1
        series.sum += value
        series.min = min(series.min, value)
        series.max = max(series.max, value)
        series.last_ms = at
        series.last_value = value

    # ---- state -------------------------------------------------------------------

    def encode(self) -> bytes:
        return msgspec.msgpack.encode(self._state)

    @classmethod
    def decode(cls, data: bytes) -> RunStatsFold:
        return cls(_STATE_DECODER.decode(data))

    @property
    def count(self) -> int:
        return self._state.count

    def series(self) -> list[SeriesStats]:
        return sorted(self._state.series, key=lambda s: (s.sensor_id, s.type))

    # ---- figures ---------------------------------------------------------------

    def expected(self, run: Run) -> int:
        """Sensor rounds the run's parameters promise: one per declared sensor per interval."""
        return (run.duration // run.interval) * len(run.sensor_ids)

    def received(self, run: Run) -> int:
        """Sensor rounds that arrived: per declared sensor, the count of its most frequent
        type (a measurement object of three types is one round), at most the rounds due."""
        rounds = run.duration // run.interval
        best: dict[str, int] = {}
        for s in self._state.series:
            best[s.sensor_id] = max(best.get(s.sensor_id, 0), s.count)
        return sum(min(rounds, best.get(sensor, 0)) for sensor in run.sensor_ids)

    def completeness(self, run: Run) -> float | None:
        expected = self.expected(run)
        return self.received(run) / expected if expected else None

    def mean(self) -> float | None:
        return self._state.sum / self._state.count if self._state.count else None

    def view(self, run: Run, *, complete: bool = True, final: bool = False, note: str = "") -> RunStatsView:
        state = self._state
        return RunStatsView(
            runId=run.id,
            status=run.status,
            complete=complete,
            final=final,
            note=note,
            readings=state.count,
            sensors=len({s.sensor_id for s in state.series}),
            declaredSensors=len(run.sensor_ids),
            expected=self.expected(run),
            received=self.received(run),
            completeness=self.completeness(run),
            min=state.min,
            max=state.max,
            mean=self.mean(),
            firstTimestamp=_iso(state.first_ms),
            lastTimestamp=_iso(state.last_ms),
            omittedReadings=state.omitted,
            series=[
                SeriesView(
                    sensorId=s.sensor_id,
                    type=s.type,
                    count=s.count,
                    min=s.min,
                    max=s.max,
                    mean=s.sum / s.count,
                    firstTimestamp=clock.format_ms(s.first_ms),
                    lastTimestamp=clock.format_ms(s.last_ms),
                    lastValue=s.last_value,
                    largestGapMs=s.largest_gap_ms if s.count > 1 else None,
                )
                for s in self.series()
            ],
        )

    def latest_view(
        self,
        run: Run,
        *,
        complete: bool = True,
        final: bool = False,
        note: str = "",
        newer: dict[tuple[str, str], Reading] | None = None,
    ) -> LatestReadingsView:
        """The last reading of each series; `newer`: readings found reading newest first,
        which replace the fold's (a fold cut short holds only the oldest readings)."""
        last = {(s.sensor_id, s.type): (s.last_value, s.last_ms) for s in self._state.series}
        for key, reading in (newer or {}).items():
            last[key] = (reading.value, reading.timestamp_ms)
        items = [
            LatestReading(sensorId=sensor, type=kind, reading=value, timestamp=clock.format_ms(at))
            for (sensor, kind), (value, at) in sorted(last.items())
        ]
        return LatestReadingsView(
            runId=run.id,
            status=run.status,
            complete=complete,
            final=final,
            note=note,
            count=len(items),
            items=items,
        )

    def summary_row(self, run: Run) -> dict[str, str | int | float]:
        """The stats as flat columns (SUMMARY_COLUMNS) of a per-run summary CSV, beside the
        run's own; empty text where there is no figure."""
        state = self._state

        def number(value: float | None) -> str | float:
            return "" if value is None else value

        def instant(epoch_ms: int | None) -> str:
            return "" if epoch_ms is None else clock.format_ms(epoch_ms)

        return {
            "readings": state.count,
            "sensorsReporting": len({s.sensor_id for s in state.series}),
            "expected": self.expected(run),
            "completeness": number(self.completeness(run)),
            "firstReadingAt": instant(state.first_ms),
            "lastReadingAt": instant(state.last_ms),
            "min": number(state.min),
            "max": number(state.max),
            "mean": number(self.mean()),
        }


# ---- folding a run, bounded, kept once final -----------------------------------------


@dataclass(frozen=True, slots=True)
class Folded:
    fold: RunStatsFold
    complete: bool  # every reading stored (when read) is in the fold
    final: bool  # the run's readings can no longer change

    def note(self, run: Run) -> str:
        bound = f"{MAX_STATS_QUERY_PAGES} pages of {STATS_PAGE_LIMIT} readings"
        if self.final and self.complete:
            return "final: every reading of the ended run, kept"
        if self.final:
            return (
                f"partial: the first {self.fold.count} readings in time order; each call folds at most"
                f" {bound} more and keeps them, ask again"
            )
        what = "the run is RUNNING" if run.status == RUNNING else "the run ended moments ago"
        if self.complete:
            return f"{what}: exact for the readings stored at this call, computed afresh on every call"
        return (
            f"partial, {what}: only the oldest {self.fold.count} readings in time order (at most {bound}"
            " per call); complete once the run has ended and the kept fold has caught up"
        )


class RunStatsStore:
    def __init__(self, client: DynamoDBClient, runs_table: str, readings: ReadingRepository):
        self._client = client
        self._table = runs_table
        self._readings = readings

    def fold(self, run: Run, *, settle_ms: int, now_ms: int | None = None) -> Folded:
        now = clock.now_ms() if now_ms is None else now_ms
        final = run.status != RUNNING and run.finished_ms is not None and now >= run.finished_ms + settle_ms
        if not final:
            fold = RunStatsFold()
            cursor = self._continue(run.id, fold, None)
            return Folded(fold, cursor is None, False)
        item = self._get(run.id)
        if item is not None and item.get("done", {}).get("BOOL"):
            return Folded(RunStatsFold.decode(item["state"]["B"]), True, True)
        version = int(item["version"]["N"]) if item is not None else 0
        fold = RunStatsFold.decode(item["state"]["B"]) if item is not None else RunStatsFold()
        start = _CURSOR_DECODER.decode(item["cursor"]["B"]) if item is not None and "cursor" in item else None
        cursor = self._continue(run.id, fold, start)
        if self._put(run.id, fold, cursor, version):
            return Folded(fold, cursor is None, True)
        # Another call stored its progress first: answer with that, adding nothing twice.
        stored = self._get(run.id)
        if stored is None:  # pragma: no cover - the item is never deleted
            return Folded(fold, cursor is None, True)
        return Folded(RunStatsFold.decode(stored["state"]["B"]), bool(stored["done"]["BOOL"]), True)

    def newest(self, run: Run) -> tuple[dict[tuple[str, str], Reading], bool]:
        """The newest reading of each series among the run's newest readings, at most
        MAX_STATS_QUERY_PAGES pages of them; and whether that was every reading."""
        found: dict[tuple[str, str], Reading] = {}
        query = ReadingQuery(run_id=run.id, order="desc")
        cursor: Cursor | None = None
        for _ in range(MAX_STATS_QUERY_PAGES):
            page = self._readings.query(
                query, limit=STATS_PAGE_LIMIT, start_key=cursor, span_ms=run.reading_span_ms
            )
            for reading in page.readings:
                found.setdefault((reading.sensor_id, reading.type), reading)
            cursor = page.last_key
            if cursor is None:
                break
        return found, cursor is None

    def _continue(self, run_id: str, fold: RunStatsFold, cursor: Cursor | None) -> Cursor | None:
        """Fold at most MAX_STATS_QUERY_PAGES pages from `cursor`; where to go on from (None: done)."""
        query = ReadingQuery(run_id=run_id, order="asc")
        for _ in range(MAX_STATS_QUERY_PAGES):
            page = self._readings.query(query, limit=STATS_PAGE_LIMIT, start_key=cursor)
            for reading in page.readings:
                fold.add(reading)
            cursor = page.last_key
            if cursor is None:
                break
        return cursor

    def _get(self, run_id: str) -> dict[str, Any] | None:
        response = self._client.get_item(
            TableName=self._table, Key={"id": {"S": stats_item_id(run_id)}}, ConsistentRead=True
        )
        return response.get("Item")  # type: ignore[return-value]

    def _put(self, run_id: str, fold: RunStatsFold, cursor: Cursor | None, version: int) -> bool:
        """Store the fold as version + 1 if the stored one is still `version`; False if not."""
        item: dict[str, Any] = {
            "id": {"S": stats_item_id(run_id)},
            "state": {"B": fold.encode()},
            "done": {"BOOL": cursor is None},
            "version": {"N": str(version + 1)},
            "readings": {"N": str(fold.count)},
            "updatedAt": {"S": clock.format_ms(clock.now_ms())},
        }
        if cursor is not None:
            item["cursor"] = {"B": msgspec.msgpack.encode(cursor)}
        condition: dict[str, Any] = (
            {"ConditionExpression": "attribute_not_exists(id)"}
            if version == 0
            else {
                "ConditionExpression": "version = :version",
                "ExpressionAttributeValues": {":version": {"N": str(version)}},
            }
        )
        try:
            self._client.put_item(TableName=self._table, Item=item, **condition)
        except ClientError as error:
            if error.response["Error"]["Code"] != "ConditionalCheckFailedException":
                raise
            return False
        return True
