"""Reading repository: readings are stored as chunks, one DynamoDB item per chunk.

Layout (see `tables.py` for the write-unit arithmetic): partition ``pk`` is the run
id (``NO_RUN`` for readings without a run); sort key ``sk`` is
``<ISO ms time of the chunk's first reading>#<sensorId>#<type>#<digest>``. A chunk
holds the readings of one (run, sensor, type, user) from one request, sorted by
time, at most `CHUNK_SPAN_MS` apart from its first and at most `MAX_CHUNK_BYTES`
of item size, packed into the binary attribute ``d``.

Every write is safe to repeat. The digest is taken over the chunk's whole content
(run, sensor, type, user, every timestamp, value and arrival nonce), and chunking is
deterministic, so an SDK retry or a client re-sending the same reading or batch
writes the same items to the same keys again: stored once. Different content never
shares a key.

Queries read a run's partition in ``sk`` order and put the readings back into exact
(timestamp, sensor, type, chunk, position) order, emitting a reading only once no
chunk still unread could hold one that sorts before it (see `_Scan`).
"""

from __future__ import annotations

import hashlib
import heapq
import secrets
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import msgspec
from botocore.exceptions import ClientError

from chalicelib import clock, paging, retry
from chalicelib.errors import BadRequest, Unavailable
from chalicelib.tables import NO_RUN, TTL_ATTRIBUTE

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

BATCH_WRITE_LIMIT = 25
# A chunk's readings are at most this far apart from its first. A reading at time x
# lives in a chunk whose sk time t0 has x - CHUNK_SPAN_MS <= t0 <= x: that is what a
# query widens its key range by, and how far past a page a newest-first query reads.
CHUNK_SPAN_MS = 10_000
# Chunk spans as a run records them (Run.reading_span_ms), rounded up to one of these, so a
# run's record widens a couple of times at most. A newest-first query shows a reading once
# no unread chunk can hold a later one: chunks of single readings (span 0, all the frontend
# sends) need no look past the page at all, however many there are.
SPAN_LEVELS_MS = (0, 1_000, CHUNK_SPAN_MS)
# Item size (DynamoDB's way: attribute names plus values) a chunk stays within: one
# write unit (1 KB) with room to spare.
MAX_CHUNK_BYTES = 1000
# Chunks read per Query call: the first call reads what the page needs, later calls more.
MIN_CHUNKS_PER_CALL = 32
MAX_CHUNKS_PER_CALL = 1000
# Sorts after '#', so "<to timestamp>~" includes every chunk of that millisecond.
_KEY_END = "~"
_ISO_LENGTH = len("2000-01-01T00:00:00.000Z")


@dataclass(frozen=True, slots=True)
class Reading:
    sensor_id: str
    type: str
    value: float
    timestamp_ms: int
    run_id: str | None
    user: str
    # Set for readings stamped on arrival: two sends of equal content are then two readings.
    nonce: str = ""


def new_nonce() -> str:
    return secrets.token_hex(8)


@dataclass(frozen=True, slots=True)
class ReadingQuery:
    run_id: str | None = None
    sensor_id: str | None = None
    type: str | None = None
    from_ms: int | None = None
    to_ms: int | None = None
    order: Literal["asc", "desc"] = "desc"


def span_level(span_ms: int) -> int:
    return next(level for level in SPAN_LEVELS_MS if span_ms <= level)


@dataclass(frozen=True, slots=True)
class Chunk:
    """One item to write: `count` readings of `run_id`, spanning `span_ms` (as a level)."""

    item: dict[str, Any]
    count: int
    run_id: str | None
    span_ms: int


class Cursor(msgspec.Struct, array_like=True, forbid_unknown_fields=True):
    """Where a reading query goes on from (the payload of its signed `nextKey`).

    `pk`: the partition being read (None: a sensor-only walk between partitions).
    `runs_after`: a sensor-only walk's position in the runs-by-start index
    ([startedAt, id] of the last run taken; ["-"] once past every run).
    `sk`: the chunk to read again from (inclusive). `last`: the order key of the
    last reading shown; readings at or before it (in the query's order) are skipped.
    """

    pk: str | None
    runs_after: list[str] | None
    sk: str | None
    last: tuple[int, str, str, str, int] | None
    span: int = CHUNK_SPAN_MS  # the widest chunk span of partition `pk`


@dataclass(frozen=True, slots=True)
class ReadingPage:
    readings: list[Reading]
    last_key: Cursor | None


RunFinder = Callable[[str, list[str] | None], tuple[list[tuple[str, str, int | None]], list[str] | None]]
"""(sensor id, position) -> ([(startedAt, run id, reading span or None)] newest first, next
position or None): one Query of the runs that declared the sensor (see
RunRepository.runs_with_sensor)."""


def _number(value: float) -> str:
    # repr round-trips a float exactly.
    return repr(float(value))


# ---- chunks --------------------------------------------------------------------


def _number_size(text: str) -> int:
    digits = text.lstrip("-").replace(".", "").lstrip("0")
    digits = digits.split("e")[0].split("E")[0].rstrip("0")
    return (len(digits) + 1) // 2 + 1


def item_size(item: dict[str, Any]) -> int:
    """An item's size as DynamoDB bills it: per attribute, its name plus its value
    (S: UTF-8 bytes; B: bytes; N: 1 byte per two significant digits, plus 1)."""
    size = 0
    for name, value in item.items():
        size += len(name.encode())
        ((kind, data),) = value.items()
        if kind == "S":
            size += len(data.encode())
        elif kind == "B":
            size += len(data)
        elif kind == "N":
            size += _number_size(str(data))
        else:  # pragma: no cover - readings use no other types
            raise ValueError(f"no size rule for {kind}")
    return size


def write_units(item: dict[str, Any], indexes: int = 0) -> int:
    """Write units of one put: 1 per KB (rounded up), for the table and each index carrying it."""
    return -(-item_size(item) // 1024) * (1 + indexes)


def _pack(timestamps: Sequence[int], values: Sequence[float]) -> bytes:
    """Flat msgpack [dt, value, dt, value, ...]; dt from the previous reading (the first from firstAt)."""
    flat: list[int | float] = []
    previous = timestamps[0]
    for at, value in zip(timestamps, values, strict=True):
        flat += (at - previous, float(value))
        previous = at
    return msgspec.msgpack.encode(flat)


def _unpack(first_ms: int, data: bytes) -> list[tuple[int, float]]:
    flat = msgspec.msgpack.decode(data)
    out: list[tuple[int, float]] = []
    at = first_ms
    for position in range(0, len(flat), 2):
        at += int(flat[position])
        out.append((at, float(flat[position + 1])))
    return out


def chunk_digest(readings: Sequence[Reading]) -> str:
    first = readings[0]
    content = [
        first.run_id or NO_RUN,
        first.sensor_id,
        first.type,
        first.user,
        [[r.timestamp_ms, _number(r.value), r.nonce] for r in readings],
    ]
    return hashlib.blake2b(msgspec.json.encode(content), digest_size=8).hexdigest()


def group_readings(readings: Iterable[Reading]) -> list[list[Reading]]:
    """Readings by (run, sensor, type, user), each group sorted by time (then value,
    nonce): the same readings always give the same groups, in the same order."""
    groups: dict[tuple[str, str, str, str], list[Reading]] = {}
    for r in readings:
        groups.setdefault((r.run_id or NO_RUN, r.sensor_id, r.type, r.user), []).append(r)
    return [sorted(groups[key], key=lambda r: (r.timestamp_ms, r.value, r.nonce)) for key in sorted(groups)]


class ReadingRepository:
    def __init__(self, client: DynamoDBClient, table_name: str, ttl_days: int):
        self._client = client
        self._table = table_name
        self._ttl_seconds = ttl_days * 86_400

    # ---- writes ------------------------------------------------------------

    def chunk_item(
        self, readings: Sequence[Reading], key_suffix: str | None = None, expires_at: int | None = None
    ) -> dict[str, Any]:
        """The item of one chunk: readings of one (run, sensor, type, user), sorted by time."""
        first, last = readings[0], readings[-1]
        suffix = key_suffix or chunk_digest(readings)
        timestamps = [r.timestamp_ms for r in readings]
        item: dict[str, Any] = {
            "pk": {"S": first.run_id or NO_RUN},
            "sk": {"S": f"{clock.format_ms(first.timestamp_ms)}#{first.sensor_id}#{first.type}#{suffix}"},
            "sensorId": {"S": first.sensor_id},
            "type": {"S": first.type},
            "user": {"S": first.user},
            "firstAt": {"N": str(first.timestamp_ms)},
            "lastAt": {"N": str(last.timestamp_ms)},
            "n": {"N": str(len(readings))},
            "d": {"B": _pack(timestamps, [r.value for r in readings])},
        }
        if expires_at is not None:
            item[TTL_ATTRIBUTE] = {"N": str(expires_at)}
        elif self._ttl_seconds:
            # TTL counts from arrival, so late or back-dated readings still live their full span.
            item[TTL_ATTRIBUTE] = {"N": str(int(time.time()) + self._ttl_seconds)}
        return item

    def prepare(self, readings: Iterable[Reading]) -> list[Chunk]:
        """The chunks these readings are written as; a run's record of its widest span
        must cover theirs before they are written (see Run.reading_span_ms)."""
        return [
            Chunk(
                self.chunk_item(chunk),
                len(chunk),
                chunk[0].run_id,
                span_level(chunk[-1].timestamp_ms - chunk[0].timestamp_ms),
            )
            for chunk in self.chunks(readings)
        ]

    def chunks(self, readings: Iterable[Reading]) -> list[list[Reading]]:
        """Per (run, sensor, type, user), readings in time order split where the span or
        the item size would exceed CHUNK_SPAN_MS or MAX_CHUNK_BYTES. Deterministic."""
        out: list[list[Reading]] = []
        for group in group_readings(readings):
            start = 0
            while start < len(group):
                end = start + 1
                while (
                    end < len(group) and group[end].timestamp_ms - group[start].timestamp_ms <= CHUNK_SPAN_MS
                ):
                    if item_size(self.chunk_item(group[start : end + 1])) > MAX_CHUNK_BYTES:
                        break
                    end += 1
                out.append(group[start:end])
                start = end
        return out

    def put(self, reading: Reading) -> None:
        self.write(self.prepare([reading]))

    def put_many(self, readings: Sequence[Reading]) -> int:
        return self.write(self.prepare(readings))

    def write(self, chunks: Sequence[Chunk]) -> int:
        """Write the chunks, one PutItem or 25 per BatchWriteItem; returns how many readings were stored.

        Unconditional: a chunk's key is its content, so writing it again (an SDK retry, a
        re-send) rewrites the same chunk and never overwrites another. If DynamoDB keeps
        refusing, Unavailable says how many readings were stored; a re-send of the same
        request makes the same chunks and stores the rest."""
        if len(chunks) == 1:
            self._client.put_item(TableName=self._table, Item=chunks[0].item)
            return chunks[0].count
        total = sum(chunk.count for chunk in chunks)
        stored = 0
        try:
            for start in range(0, len(chunks), BATCH_WRITE_LIMIT):
                part = chunks[start : start + BATCH_WRITE_LIMIT]
                pending = self._write_pending([{"PutRequest": {"Item": chunk.item}} for chunk in part])
                refused = {item["sk"]["S"] for item in (p["PutRequest"]["Item"] for p in pending)}
                stored += sum(chunk.count for chunk in part if chunk.item["sk"]["S"] not in refused)
                if pending:
                    break
        except ClientError as error:
            if not retry.is_transient(error):
                raise
        if stored < total:
            raise Unavailable(
                f"DynamoDB is busy: {stored} of {total} readings stored; send the request again",
                details={"stored": stored, "notStored": total - stored},
            )
        return total

    def _write_pending(self, requests: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """One BatchWriteItem with its unprocessed items retried; returns those never written."""
        pending = requests
        for _ in retry.attempts():
            response = self._client.batch_write_item(RequestItems={self._table: pending})  # type: ignore[dict-item]
            pending = list(response.get("UnprocessedItems", {}).get(self._table, []))  # type: ignore[arg-type]
            if not pending:
                break
        return pending

    # ---- queries -----------------------------------------------------------

    def query(
        self,
        query: ReadingQuery,
        *,
        limit: int,
        start_key: Cursor | None,
        runs: RunFinder | None = None,
        span_ms: int | None = None,
    ) -> ReadingPage:
        """In exact time order (newest or oldest first); bounded work per call: at most
        paging.MAX_QUERY_CALLS Query calls (see `_Scan` for the one exception).

        With a run id, that run's partition; with only a sensor id, the runs that declared
        the sensor, newest run first (found through `runs`), then the readings without a
        run, each partition's readings in the query's order. `span_ms`: the run's
        `reading_span_ms` (None: not recorded, any span up to CHUNK_SPAN_MS)."""
        if query.run_id is None and query.sensor_id is None:  # pragma: no cover - the route requires one
            raise ValueError("a reading query needs a run id or a sensor id")
        if query.from_ms is not None and query.to_ms is not None and query.from_ms > query.to_ms:
            return ReadingPage([], None)
        if start_key is not None:
            _check_cursor(start_key, query)
        budget = _Budget()
        if query.run_id is not None:
            span = CHUNK_SPAN_MS if span_ms is None else span_ms
            scan = _Scan(self._client, self._table, query, query.run_id, start_key, budget, span)
            found = scan.read(limit)
            return ReadingPage(found, scan.cursor(None))
        return self._sensor_walk(query, limit, start_key, runs, budget)

    def _sensor_walk(
        self,
        query: ReadingQuery,
        limit: int,
        start_key: Cursor | None,
        runs: RunFinder | None,
        budget: _Budget,
    ) -> ReadingPage:
        assert query.sensor_id is not None
        cursor = start_key
        position: list[str] | None = cursor.runs_after if cursor else None
        partition: str | None = cursor.pk if cursor else None
        span = cursor.span if cursor else CHUNK_SPAN_MS
        queue: list[tuple[str, str, int | None]] = []  # runs found but not read yet
        no_more_runs = False  # the last look at the runs found every one left
        found: list[Reading] = []
        while True:
            if partition is None:
                if queue:
                    started, partition, recorded = queue.pop(0)
                    position, cursor = [started, partition], None
                    span = CHUNK_SPAN_MS if recorded is None else recorded
                elif position == [NO_RUN]:
                    return ReadingPage(found, None)
                elif no_more_runs:
                    partition, position, cursor, span = NO_RUN, [NO_RUN], None, CHUNK_SPAN_MS
                    continue
                elif runs is None or not budget.take():
                    if runs is None:  # no run list to walk: only the readings without a run
                        partition, position, cursor, span = NO_RUN, [NO_RUN], None, CHUNK_SPAN_MS
                        continue
                    return ReadingPage(found, Cursor(None, position, None, None, CHUNK_SPAN_MS))
                else:
                    taken, more = runs(query.sensor_id, position)
                    queue, no_more_runs = list(taken), more is None
                    if not queue and more is None:
                        partition, position, cursor, span = NO_RUN, [NO_RUN], None, CHUNK_SPAN_MS
                    elif not queue:
                        position = more
                    # else: a later turn takes them; `more` is found again after the last one
                    continue
            scan = _Scan(self._client, self._table, query, partition, cursor, budget, span)
            found += scan.read(limit - len(found))
            if scan.has_more():
                return ReadingPage(found, scan.cursor(position))
            # This partition is done: on to the next run (or the end).
            partition, cursor = None, None
            if position == [NO_RUN]:
                return ReadingPage(found, None)
            if len(found) >= limit and budget.spent():
                # Full page; whether anything follows is for the next request to find.
                return ReadingPage(found, Cursor(None, position, None, None, CHUNK_SPAN_MS))


def _check_cursor(cursor: Cursor, query: ReadingQuery) -> None:
    """A signed cursor that is not one of this query's is a 400, never a DynamoDB error."""
    walk = cursor.runs_after
    if query.run_id is not None:
        ok = cursor.pk == query.run_id and walk is None and cursor.sk is not None
    elif cursor.pk is None:
        ok = walk is not None and cursor.sk is None and cursor.last is None
    else:
        ok = walk is not None and cursor.sk is not None and walk[-1] == cursor.pk
    if walk is not None and not (walk == [NO_RUN] or (len(walk) == 2 and _is_iso(walk[0]))):
        ok = False
    if cursor.sk is not None and not _is_iso(cursor.sk[:_ISO_LENGTH]):
        ok = False
    if cursor.span not in SPAN_LEVELS_MS:
        ok = False
    if not ok:
        raise BadRequest("nextKey is not a valid pagination token for this query")


def _is_iso(text: str) -> bool:
    try:
        clock.parse_iso_ms(text)
    except ValueError:
        return False
    return True


@dataclass(slots=True)
class _Budget:
    """Query calls left for this request."""

    calls: int = paging.MAX_QUERY_CALLS
    made: int = 0

    def take(self) -> bool:
        if self.made >= self.calls:
            return False
        self.made += 1
        return True

    def spent(self) -> bool:
        return self.made >= self.calls


OrderKey = tuple[int, str, str, str, int]


@dataclass(slots=True)
class _Scan:
    """One partition read in sk order, readings emitted in exact order.

    A chunk's readings are at or after its sk time t0 and at most `span_ms` after it
    (the partition's widest chunk). Oldest first, a loaded reading x is emitted once
    x < t0 of the next chunk not yet loaded; newest first, once x - span_ms > that t0;
    or when no chunk is left. The cursor keeps the sk of the first loaded chunk (in the query's order) that
    still holds a reading not emitted, and the order key of the last reading emitted.
    """

    client: Any
    table: str
    query: ReadingQuery
    pk: str
    start: Cursor | None
    budget: _Budget
    span_ms: int
    pending: list[tuple[OrderKey, Reading]] = field(default_factory=list)  # heap, in emit order
    last: OrderKey | None = None
    last_evaluated: dict[str, Any] | None = None
    exhausted: bool = False
    started: bool = False
    calls_here: int = 0

    def __post_init__(self) -> None:
        if self.start is not None:
            self.last = tuple(self.start.last) if self.start.last else None  # type: ignore[assignment]

    @property
    def ascending(self) -> bool:
        return self.query.order == "asc"

    def _request(self) -> dict[str, Any] | None:
        q = self.query
        low = clock.format_ms(max(0, q.from_ms - CHUNK_SPAN_MS)) if q.from_ms is not None else None
        high = clock.format_ms(q.to_ms) + _KEY_END if q.to_ms is not None else None
        if self.start is not None and self.start.sk is not None:
            if self.ascending:
                low = max(low, self.start.sk) if low is not None else self.start.sk
            else:
                high = min(high, self.start.sk) if high is not None else self.start.sk
        names = {"#pk": "pk"}
        values: dict[str, Any] = {":pk": {"S": self.pk}}
        condition = "#pk = :pk"
        if low is not None and high is not None:
            if low > high:
                return None
            condition += " AND #sk BETWEEN :low AND :high"
        elif low is not None:
            condition += " AND #sk >= :low"
        elif high is not None:
            condition += " AND #sk <= :high"
        if low is not None or high is not None:
            names["#sk"] = "sk"
        if low is not None:
            values[":low"] = {"S": low}
        if high is not None:
            values[":high"] = {"S": high}
        filters = []
        if q.sensor_id is not None:
            names["#sensor"], values[":sensor"] = "sensorId", {"S": q.sensor_id}
            filters.append("#sensor = :sensor")
        if q.type is not None:
            names["#type"], values[":type"] = "type", {"S": q.type}
            filters.append("#type = :type")
        request: dict[str, Any] = {
            "TableName": self.table,
            "KeyConditionExpression": condition,
            "ExpressionAttributeNames": names,
            "ExpressionAttributeValues": values,
            "ScanIndexForward": self.ascending,
        }
        if filters:
            request["FilterExpression"] = " AND ".join(filters)
        return request

    def _frontier(self) -> int | None:
        """t0 of the next chunk not yet loaded, as far as known (None: no chunk left)."""
        if self.exhausted or self.last_evaluated is None:
            return None
        return clock.parse_iso_ms(self.last_evaluated["sk"]["S"][:_ISO_LENGTH])

    def _emittable(self, key: OrderKey) -> bool:
        if not self.started:
            return False
        frontier = self._frontier()
        if frontier is None:
            return True
        return key[0] < frontier if self.ascending else key[0] - self.span_ms > frontier

    def _heap_key(self, key: OrderKey) -> Any:
        return key if self.ascending else _Reverse(key)

    def _load(self, wanted: int) -> bool:
        """One more Query call, if the budget allows; False when it does not."""
        request = self._request()
        if request is None:
            self.started, self.exhausted = True, True
            return True
        if not self.budget.take():
            return False
        minimum = paging.FILTERED_READ_LIMIT if "FilterExpression" in request else MIN_CHUNKS_PER_CALL
        request["Limit"] = min(MAX_CHUNKS_PER_CALL, max(wanted + 1, minimum) * 4**self.calls_here)
        if self.last_evaluated is not None:
            request["ExclusiveStartKey"] = self.last_evaluated
        self.calls_here += 1
        response = self.client.query(**request)
        self.started = True
        for item in response.get("Items", []):
            self._add_chunk(item)
        self.last_evaluated = response.get("LastEvaluatedKey")
        self.exhausted = self.last_evaluated is None
        return True

    def _add_chunk(self, item: dict[str, Any]) -> None:
        q = self.query
        sk = item["sk"]["S"]
        sensor, kind, user = item["sensorId"]["S"], item["type"]["S"], item["user"]["S"]
        if (q.sensor_id is not None and sensor != q.sensor_id) or (q.type is not None and kind != q.type):
            return
        run_id = None if self.pk == NO_RUN else self.pk
        for position, (at, value) in enumerate(_unpack(int(item["firstAt"]["N"]), item["d"]["B"])):
            if (q.from_ms is not None and at < q.from_ms) or (q.to_ms is not None and at > q.to_ms):
                continue
            key: OrderKey = (at, sensor, kind, sk, position)
            if self.last is not None and (key <= self.last if self.ascending else key >= self.last):
                continue
            heapq.heappush(
                self.pending,
                (self._heap_key(key), Reading(sensor, kind, value, at, run_id, user)),  # type: ignore[arg-type]
            )

    def _pop(self) -> tuple[OrderKey, Reading]:
        heap_key, reading = heapq.heappop(self.pending)
        key = heap_key.key if isinstance(heap_key, _Reverse) else heap_key
        return key, reading

    def _peek_key(self) -> OrderKey:
        heap_key = self.pending[0][0]
        return heap_key.key if isinstance(heap_key, _Reverse) else heap_key

    def read(self, limit: int) -> list[Reading]:
        """Up to `limit` readings in order, and enough further to know whether more follow."""
        out: list[Reading] = []
        while True:
            while self.pending and len(out) < limit and self._emittable(self._peek_key()):
                key, reading = self._pop()
                out.append(reading)
                self.last = key
            if self.started and self.exhausted:
                return out
            if len(out) >= limit and self.pending:
                return out  # something follows
            starved = self.pending and not out and self.budget.spent()
            if starved and self.budget.calls < paging.MAX_QUERY_CALLS_STARVED:
                # Nothing could be shown yet: a few more calls rather than a page that
                # makes no progress (see README, "Bounded work per request").
                self.budget.calls += 1
            if not self._load(limit - len(out)):
                return out

    def has_more(self) -> bool:
        return bool(self.pending) or not (self.started and self.exhausted)

    def cursor(self, runs_after: list[str] | None) -> Cursor | None:
        if not self.has_more():
            return None
        if self.pending:
            sks = [key[3] for key in (self._unwrap(entry[0]) for entry in self.pending)]
            sk = min(sks) if self.ascending else max(sks)
        elif self.last_evaluated is not None:
            sk = self.last_evaluated["sk"]["S"]
        elif self.start is not None and self.start.sk is not None:  # not read yet: the same place again
            sk = self.start.sk
        else:  # not read yet, from the first chunk in the query's order
            sk = clock.format_ms(0) if self.ascending else clock.format_ms(clock.LATEST_MS) + _KEY_END
        return Cursor(self.pk, runs_after, sk, self.last, self.span_ms)

    @staticmethod
    def _unwrap(heap_key: Any) -> OrderKey:
        return heap_key.key if isinstance(heap_key, _Reverse) else heap_key  # type: ignore[no-any-return]


@dataclass(frozen=True, slots=True)
class _Reverse:
    """Heap order for newest first."""

    key: OrderKey

    def __lt__(self, other: _Reverse) -> bool:
        return self.key > other.key
