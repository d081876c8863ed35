"""Readings: one plain DynamoDB item per reading, read back in the order and pages DynamoDB gives.

An item is what any DynamoDB tool reads (console, PartiQL, an S3 export, an IoT rule): `runId`,
`sensorId`, `type`, `reading` (a number), `timestamp` (ISO) and `at` (epoch ms), `user`,
`expiresAt` (TTL, from arrival). Key: partition `pk` the run id (without a run: `sensor#<id>`,
each sensor its own partition); sort key `sk` "<ISO ms time>#<sensorId>#<type>#<digest>". `#`
sorts before every character of an id or a type, so `sk` order is (time, sensor, type): exact
time order, oldest or newest first (`ScanIndexForward`).

The digest is of the reading's content (run, sensor, type, user, time, value): the same reading
sent again, alone or in any batch, lands on its own key and is stored once. A reading stamped on
arrival adds its nonce to the content: two equal sends are two readings.

Reads go through `Stream`: one partition, one Query call at a time, each taken from a `Budget`;
it says where it stopped (`next_key`, DynamoDB's own key) or that it read everything.
"""

from __future__ import annotations

import hashlib
import math
import time
from collections.abc import Callable, Iterator, Sequence
from itertools import islice
from typing import TYPE_CHECKING, Any

import msgspec

from chalicelib.schemas import BadRequest, ReadingView, Unavailable, attempts, format_ms
from chalicelib.tables import TTL_ATTRIBUTE

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

Key = dict[str, Any]
BATCH_WRITE_LIMIT = 25
PAGE_READINGS = 1000  # the most one Query call reads
FILTERED_READ_LIMIT = 200  # the least a page's first call reads when a filter may drop most of it
MAX_QUERY_CALLS = 3  # per request of `GET /api/sensors/data`
PAST_RUNS = ["~"]  # a sensor walk's position once every run is read: the sensor's own partition


class Reading(msgspec.Struct, frozen=True):
    sensor_id: str
    type: str
    value: float
    timestamp_ms: int
    run_id: str | None
    user: str
    nonce: str = ""  # set for readings stamped on arrival
    stored_sk: str = ""  # the key of a reading read from the table (its nonce is not stored)

    @property
    def pk(self) -> str:
        return self.run_id or f"sensor#{self.sensor_id}"

    @property
    def sk(self) -> str:
        if self.stored_sk:
            return self.stored_sk
        content = [
            self.run_id,
            self.sensor_id,
            self.type,
            self.user,
            self.timestamp_ms,
            repr(self.value),
            self.nonce,
        ]
        digest = hashlib.blake2b(msgspec.json.encode(content), digest_size=8).hexdigest()
        return f"{format_ms(self.timestamp_ms)}#{self.sensor_id}#{self.type}#{digest}"

    def item(self, expires_at: int | None) -> dict[str, Any]:
        item: dict[str, Any] = {
            "pk": {"S": self.pk},
            "sk": {"S": self.sk},
            "sensorId": {"S": self.sensor_id},
            "type": {"S": self.type},
            "reading": {"N": repr(self.value)},
            "timestamp": {"S": format_ms(self.timestamp_ms)},
            "at": {"N": str(self.timestamp_ms)},
            "user": {"S": self.user},
        }
        if self.run_id is not None:
            item["runId"] = {"S": self.run_id}
        if expires_at is not None:
            item[TTL_ATTRIBUTE] = {"N": str(expires_at)}
        return item

    def view(self) -> ReadingView:
        at = format_ms(self.timestamp_ms)
        return ReadingView(self.sensor_id, self.type, self.value, at, self.run_id, self.user)

    @staticmethod
    def from_item(item: dict[str, Any]) -> Reading:
        run, value, at = item.get("runId"), float(item["reading"]["N"]), int(item["at"]["N"])
        run_id = run["S"] if run else None
        return Reading(
            item["sensorId"]["S"],
            item["type"]["S"],
            value,
            at,
            run_id,
            item["user"]["S"],
            "",
            item["sk"]["S"],
        )


class Budget(msgspec.Struct):
    """The Query calls one request may still spend on reading, and until when (monotonic)."""

    calls: int
    deadline: float = math.inf

    def take(self) -> bool:
        self.calls -= 1
        return self.calls >= 0 and time.monotonic() < self.deadline


class ReadingQuery(msgspec.Struct, frozen=True):
    run_id: str | None = None
    sensor_id: str | None = None
    type: str | None = None
    from_ms: int | None = None
    to_ms: int | None = None
    ascending: bool = False


class Cursor(msgspec.Struct, array_like=True, forbid_unknown_fields=True):
    """Where a readings list goes on (a signed `nextKey`): partition `pk` after `sk`; a sensor
    walk also keeps its place among the runs ([startedAt, runId] of the last, or PAST_RUNS)."""

    pk: str | None
    sk: str | None
    runs_after: list[str] | None = None


RunFinder = Callable[[str, list[str] | None], tuple[list[tuple[list[str], str]], list[str] | None]]
"""(sensor, position) -> ([([startedAt, run id], run id)] newest first, next position or None)."""


class Stream:
    """One partition's readings in `sk` order, a Query call at a time while the budget lasts.

    `want`: how many the caller means to take (a call reads one more, to know whether any follow);
    None: as many as the budget reads. After iterating, `next_key` is where to go on (None:
    nothing left), also when the caller stopped among a call's items."""

    def __init__(self, client: Any, table: str, pk: str, query: ReadingQuery, budget: Budget, **start: Any):
        self._client, self._budget, self._want = client, budget, start.get("want")
        self.next_key: Key | None = start.get("after")
        self.complete = False
        names, values, condition = {"#pk": "pk"}, {":pk": {"S": pk}}, "#pk = :pk"
        low = format_ms(query.from_ms) if query.from_ms is not None else None
        high = format_ms(query.to_ms) + "~" if query.to_ms is not None else None  # "~" sorts after "#"
        if low or high:  # never reversed: from > to is a 400 where they come in
            names["#sk"] = "sk"
            values |= {name: {"S": bound} for name, bound in ((":low", low), (":high", high)) if bound}
            condition += " AND #sk " + (
                "BETWEEN :low AND :high" if low and high else ">= :low" if low else "<= :high"
            )
        filters = []
        for name, value in (("sensorId", query.sensor_id), ("type", query.type)):
            if value is not None and not (name == "sensorId" and pk.startswith("sensor#")):
                names[f"#{name}"], values[f":{name}"] = name, {"S": value}
                filters.append(f"#{name} = :{name}")
        self._request: dict[str, Any] = {
            "TableName": table,
            "KeyConditionExpression": condition,
            "ExpressionAttributeNames": names,
            "ExpressionAttributeValues": values,
            "ScanIndexForward": query.ascending,
        }
        if filters:
            self._request["FilterExpression"] = " AND ".join(filters)

    def __iter__(self) -> Iterator[Reading]:
        taken, calls = 0, 0
        while not self.complete and self._budget.take():
            wanted = PAGE_READINGS if self._want is None else self._want + 1 - taken
            if "FilterExpression" in self._request and self._want is not None:
                # A filter may drop most of what a call reads: FILTERED_READ_LIMIT, then whole pages.
                wanted = max(wanted, FILTERED_READ_LIMIT if calls == 0 else PAGE_READINGS)
            calls += 1
            start = {"ExclusiveStartKey": self.next_key} if self.next_key else {}
            response = self._client.query(**self._request, Limit=min(wanted, PAGE_READINGS), **start)
            for item in response.get("Items", []):
                self.next_key, taken = {"pk": item["pk"], "sk": item["sk"]}, taken + 1
                yield Reading.from_item(item)
            self.next_key = response.get("LastEvaluatedKey")
            self.complete = self.next_key is None


class ReadingRepository:
    def __init__(self, client: DynamoDBClient, table_name: str, ttl_days: int):
        self._client, self._table, self._ttl_seconds = client, table_name, ttl_days * 86_400

    def write(self, readings: Sequence[Reading]) -> int:
        """Store the readings, one PutItem or 25 per BatchWriteItem; how many were stored.

        Unconditional: a reading's key is its content, so writing it again writes the same item.
        When DynamoDB keeps refusing, the 503 says how many were stored; a re-send of the same
        request stores the rest."""
        expires = int(time.time()) + self._ttl_seconds if self._ttl_seconds else None
        items = [reading.item(expires) for reading in readings]
        if len(items) == 1:
            self._client.put_item(TableName=self._table, Item=items[0])
            return 1
        stored = 0
        for start in range(0, len(items), BATCH_WRITE_LIMIT):
            pending: Any = [
                {"PutRequest": {"Item": item}} for item in items[start : start + BATCH_WRITE_LIMIT]
            ]
            for _ in attempts():
                try:
                    answer = self._client.batch_write_item(RequestItems={self._table: pending})
                except Unavailable:
                    if not stored:
                        raise
                    break
                unprocessed = answer.get("UnprocessedItems", {}).get(self._table, [])
                stored, pending = stored + len(pending) - len(unprocessed), unprocessed
                if not pending:
                    break
            if pending:
                raise Unavailable(
                    f"DynamoDB is busy: {stored} of {len(items)} readings stored; send the request again",
                    details={"stored": stored, "notStored": len(items) - stored},
                )
        return stored

    def stream(self, query: ReadingQuery, budget: Budget, **start: Any) -> Stream:
        """A run's readings (query.run_id), or a sensor's own ones without a run; `after`, `want`."""
        return Stream(
            self._client, self._table, query.run_id or f"sensor#{query.sensor_id}", query, budget, **start
        )

    def page(
        self, query: ReadingQuery, limit: int, cursor: Cursor | None, find_runs: RunFinder
    ) -> tuple[list[Reading], Cursor | None]:
        """`GET /api/sensors/data`: one page in at most MAX_QUERY_CALLS calls. A run's readings in
        time order; a sensor's alone: each run that declared it, newest run first, then its
        readings without a run, each partition in time order."""
        budget, own = Budget(MAX_QUERY_CALLS), f"sensor#{query.sensor_id}"
        pk, sk, after = (cursor.pk, cursor.sk, cursor.runs_after) if cursor else (query.run_id, None, None)
        if cursor is not None and (
            (cursor.pk != query.run_id or after is not None)
            if query.run_id
            else (after is None or (pk == own) != (after == PAST_RUNS))
        ):
            raise BadRequest("nextKey is not a valid pagination token for this query")
        queued: list[tuple[list[str], str]] = []
        more_runs = query.run_id is None and after != PAST_RUNS
        found: list[tuple[Reading, list[str] | None]] = []  # each with its run's place in the walk
        while len(found) <= limit:
            if pk is None:
                if queued:
                    after, pk = queued.pop(0)
                elif not more_runs:
                    if after == PAST_RUNS or query.run_id:
                        break
                    pk, after = own, PAST_RUNS  # then the sensor's readings without a run
                elif budget.take():
                    queued, position = find_runs(query.sensor_id or "", after)
                    more_runs, after = position is not None, after if queued else position or after
                    continue
                else:
                    return [r for r, _ in found], Cursor(None, None, after)
                sk = None
            start = {"pk": {"S": pk}, "sk": {"S": sk}} if sk else None
            stream = Stream(
                self._client, self._table, pk, query, budget, after=start, want=limit - len(found)
            )
            found += ((reading, after) for reading in islice(stream, limit + 1 - len(found)))
            if not stream.complete and len(found) <= limit:  # the budget ran out in this partition
                return [r for r, _ in found], Cursor(
                    pk, stream.next_key["sk"]["S"] if stream.next_key else None, after
                )
            pk = None
        if len(found) > limit:
            last, position = found[limit - 1]
            return [r for r, _ in found[:limit]], Cursor(last.pk, last.sk, position)
        return [r for r, _ in found], None
