"""Reading repository: one PutItem per reading, BatchWriteItem per 25 for batches.

Every write is safe to repeat. A reading's sort key ends with a digest of its
content (`reading_sort_key`): an SDK retry of a write whose answer was lost, or
a client re-sending a batch after an error, writes the same item to the same key
again, so it is stored once. Two different readings never share a key: any
difference in type, value or user changes the digest, and a reading stamped on
arrival (no timestamp of its own) also mixes in a nonce, random unless the
request carried an Idempotency-Key.
"""

from __future__ import annotations

import hashlib
import secrets
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from botocore.exceptions import ClientError

from chalicelib import clock, paging, retry
from chalicelib.errors import Unavailable
from chalicelib.pagination import AttributeMap
from chalicelib.tables import (
    NO_RUN,
    READINGS,
    READINGS_BY_RUN_INDEX,
    READINGS_BY_SENSOR_INDEX,
    TTL_ATTRIBUTE,
)

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

BATCH_WRITE_LIMIT = 25
BATCH_GET_LIMIT = 100
# Imported readings end their sort key with this and their source row id instead of
# a digest: the key is then the same on every import, so a rerun finds it.
# Digests are hex, so the '-' keeps the two kinds apart.
IMPORTED_KEY_PREFIX = "import-"
# Sorts after '#', so "<to timestamp>~" includes every reading of that millisecond.
_KEY_END = "~"


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


def reading_sort_key(reading: Reading) -> str:
    content = "\x1f".join((reading.type, _number(reading.value), reading.user, reading.nonce))
    digest = hashlib.blake2b(content.encode(), digest_size=8).hexdigest()
    return f"{clock.format_ms(reading.timestamp_ms)}#{digest}"


@dataclass(frozen=True, slots=True)
class ImportedReading:
    """A reading from another system with the id of the row it came from."""

    source_id: str
    reading: Reading


@dataclass(frozen=True, slots=True)
class ReadingQuery:
    run_id: str | None = None
    sensor_id: str | None = None
    type: str | None = None
    from_ms: int | None = None
    to_ms: int | None = None
    order: Literal["asc", "desc"] = "desc"


@dataclass(frozen=True, slots=True)
class ReadingPage:
    readings: list[Reading]
    last_key: AttributeMap | None


def _number(value: float) -> str:
    # repr round-trips a float exactly; ints stay ints ("27.0" would do too).
    return repr(float(value))


class ReadingRepository:
    def __init__(self, client: DynamoDBClient, table_name: str, ttl_days: int):
        self._client = client
        self._table = table_name
        self._ttl_seconds = ttl_days * 86_400

    def to_item(self, reading: Reading, key_suffix: str | None = None) -> dict[str, Any]:
        timestamp = clock.format_ms(reading.timestamp_ms)
        sort_key = f"{timestamp}#{key_suffix}" if key_suffix else reading_sort_key(reading)
        item: dict[str, Any] = {
            "pk": {"S": f"{reading.run_id or NO_RUN}|{reading.sensor_id}"},
            "sk": {"S": sort_key},
            "sensorId": {"S": reading.sensor_id},
            "type": {"S": reading.type},
            "reading": {"N": _number(reading.value)},
            "timestamp": {"S": timestamp},
            "user": {"S": reading.user},
        }
        if reading.run_id:
            item["runId"] = {"S": reading.run_id}
        if self._ttl_seconds:
            # TTL counts from arrival, so late or back-dated readings still live their full span.
            item[TTL_ATTRIBUTE] = {"N": str(int(time.time()) + self._ttl_seconds)}
        return item

    def put(self, reading: Reading) -> None:
        # Unconditional: the key is the reading's content, so writing it again rewrites
        # the same reading (an SDK retry, a re-send) and never overwrites another.
        self._client.put_item(TableName=self._table, Item=self.to_item(reading))

    def put_many(self, readings: Sequence[Reading]) -> int:
        """Write all readings, 25 per request; returns how many distinct readings were stored.

        Equal readings in one request share a key: BatchWriteItem refuses a request
        that repeats a key, and they are one reading anyway. If DynamoDB keeps
        refusing, Unavailable says how many were stored; a re-send stores the rest."""
        by_key = {(item["pk"]["S"], item["sk"]["S"]): item for item in map(self.to_item, readings)}
        items = list(by_key.values())
        stored = 0
        try:
            for start in range(0, len(items), BATCH_WRITE_LIMIT):
                chunk = items[start : start + BATCH_WRITE_LIMIT]
                stored += self.write_batch([{"PutRequest": {"Item": item}} for item in chunk])
                if stored < start + len(chunk):
                    break
        except ClientError as error:
            if not retry.is_transient(error):
                raise
        if stored < len(items):
            raise Unavailable(
                f"DynamoDB is busy: {stored} of {len(items)} readings stored; send the request again",
                details={"stored": stored, "notStored": len(items) - stored},
            )
        return stored

    def write_batch(self, requests: list[dict[str, Any]]) -> int:
        """One BatchWriteItem with its unprocessed items retried; returns how many were written."""
        pending = requests
        for _ in retry.attempts():
            response = self._client.batch_write_item(RequestItems={self._table: pending})  # type: ignore[dict-item]
            pending = list(response.get("UnprocessedItems", {}).get(self._table, []))  # type: ignore[arg-type]
            if not pending:
                break
        return len(requests) - len(pending)

    def put_imported(self, imported: Sequence[ImportedReading], *, dry_run: bool = False) -> int:
        """Write readings from another system unless already there; returns how many were
        (with dry_run: would be) written. Keys derive from the source ids, so importing
        the same rows again writes nothing, and an import cut short can simply be rerun."""
        items = [self.to_item(i.reading, f"{IMPORTED_KEY_PREFIX}{i.source_id}") for i in imported]
        existing = self._existing_keys([(item["pk"]["S"], item["sk"]["S"]) for item in items])
        new = [item for item in items if (item["pk"]["S"], item["sk"]["S"]) not in existing]
        if not dry_run:
            for start in range(0, len(new), BATCH_WRITE_LIMIT):
                chunk = new[start : start + BATCH_WRITE_LIMIT]
                if self.write_batch([{"PutRequest": {"Item": item}} for item in chunk]) < len(chunk):
                    raise Unavailable("DynamoDB kept refusing some imported readings")
        return len(new)

    def _existing_keys(self, keys: list[tuple[str, str]]) -> set[tuple[str, str]]:
        unique = list(dict.fromkeys(keys))  # BatchGetItem refuses a request that repeats a key
        found: set[tuple[str, str]] = set()
        for start in range(0, len(unique), BATCH_GET_LIMIT):
            request: Any = {
                self._table: {
                    "Keys": [
                        {"pk": {"S": pk}, "sk": {"S": sk}}
                        for pk, sk in unique[start : start + BATCH_GET_LIMIT]
                    ],
                    "ProjectionExpression": "#pk, #sk",
                    "ExpressionAttributeNames": {"#pk": "pk", "#sk": "sk"},
                    "ConsistentRead": True,
                }
            }
            for _ in retry.attempts():
                response = self._client.batch_get_item(RequestItems=request)
                for item in response.get("Responses", {}).get(self._table, []):
                    found.add((item["pk"]["S"], item["sk"]["S"]))  # type: ignore[index]
                request = response.get("UnprocessedKeys")
                if not request:
                    break
            else:
                raise Unavailable("DynamoDB kept refusing to say which readings exist")
        return found

    def query(self, query: ReadingQuery, *, limit: int, start_key: AttributeMap | None) -> ReadingPage:
        """Newest (or oldest) first; bounded work per call (see `paging`)."""
        names: dict[str, str] = {"#pk": "pk"}
        values: dict[str, Any] = {}
        index: str | None = None
        if query.run_id and query.sensor_id:
            values[":pk"] = {"S": f"{query.run_id}|{query.sensor_id}"}
        elif query.run_id:
            index, names["#pk"] = READINGS_BY_RUN_INDEX, "runId"
            values[":pk"] = {"S": query.run_id}
        elif query.sensor_id:
            index, names["#pk"] = READINGS_BY_SENSOR_INDEX, "sensorId"
            values[":pk"] = {"S": query.sensor_id}
        else:  # pragma: no cover - the route requires one of them
            raise ValueError("a reading query needs a run id or a sensor id")
        if query.from_ms is not None and query.to_ms is not None and query.from_ms > query.to_ms:
            # DynamoDB refuses a BETWEEN whose bounds are reversed; nothing can match anyway.
            return ReadingPage([], None)

        key_condition = "#pk = :pk"
        if query.from_ms is not None and query.to_ms is not None:
            key_condition += " AND #sk BETWEEN :from AND :to"
        elif query.from_ms is not None:
            key_condition += " AND #sk >= :from"
        elif query.to_ms is not None:
            key_condition += " AND #sk <= :to"
        if query.from_ms is not None or query.to_ms is not None:
            names["#sk"] = "sk"
        if query.from_ms is not None:
            values[":from"] = {"S": clock.format_ms(query.from_ms)}
        if query.to_ms is not None:
            values[":to"] = {"S": clock.format_ms(query.to_ms) + _KEY_END}
        request: dict[str, Any] = {
            "TableName": self._table,
            "KeyConditionExpression": key_condition,
            "ExpressionAttributeNames": names,
            "ExpressionAttributeValues": values,
            "ScanIndexForward": query.order == "asc",
        }
        if index:
            request["IndexName"] = index
        if query.type:
            names["#type"] = "type"
            values[":type"] = {"S": query.type}
            request["FilterExpression"] = "#type = :type"
        page = paging.query_page(
            self._client,
            request,
            limit=limit,
            start_key=start_key,
            key_attributes=READINGS.page_key_attributes(index),
            parse=_item_to_reading,
        )
        return ReadingPage(page.items, page.last_key)


def _item_to_reading(item: dict[str, Any]) -> Reading:
    run = item.get("runId")
    return Reading(
        sensor_id=item["sensorId"]["S"],
        type=item["type"]["S"],
        value=float(item["reading"]["N"]),
        timestamp_ms=clock.parse_iso_ms(item["timestamp"]["S"]),
        run_id=run["S"] if run else None,
        user=item["user"]["S"],
    )
