"""Reading repository: one PutItem per reading, BatchWriteItem per 25 for batches.

Keys are built so that no two readings collide (see `tables.py`): the sort key
ends with 64 random bits, and single writes are conditional on the key being
new, so even a collision is retried rather than overwriting.
"""

from __future__ import annotations

import random
import secrets
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from botocore.exceptions import ClientError

from chalicelib import clock
from chalicelib.errors import Unavailable
from chalicelib.pagination import AttributeMap
from chalicelib.tables import (
    NO_RUN,
    READING_TTL_ATTRIBUTE,
    READINGS_BY_RUN_INDEX,
    READINGS_BY_SENSOR_INDEX,
)

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

BATCH_WRITE_LIMIT = 25
BATCH_GET_LIMIT = 100
# Imported readings end their sort key with this and their source row id instead of
# random bits: the key is then the same on every import, so a rerun finds it.
# Random suffixes are hex, so the '-' keeps the two kinds apart.
IMPORTED_KEY_PREFIX = "import-"
_BATCH_ATTEMPTS = 8
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
        item: dict[str, Any] = {
            "pk": {"S": f"{reading.run_id or NO_RUN}|{reading.sensor_id}"},
            "sk": {"S": f"{timestamp}#{key_suffix or secrets.token_hex(8)}"},
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
            item[READING_TTL_ATTRIBUTE] = {"N": str(int(time.time()) + self._ttl_seconds)}
        return item

    def put(self, reading: Reading) -> None:
        for _ in range(3):
            try:
                self._client.put_item(
                    TableName=self._table,
                    Item=self.to_item(reading),
                    ConditionExpression="attribute_not_exists(pk)",
                )
                return
            except ClientError as error:
                if error.response["Error"]["Code"] != "ConditionalCheckFailedException":
                    raise
        raise Unavailable("could not find a free key for the reading")  # pragma: no cover

    def put_many(self, readings: list[Reading]) -> int:
        """Write all readings, 25 per request, retrying unprocessed ones with backoff.

        Raises Unavailable (nothing hidden) if DynamoDB keeps refusing some."""
        written = 0
        for start in range(0, len(readings), BATCH_WRITE_LIMIT):
            chunk = readings[start : start + BATCH_WRITE_LIMIT]
            requests: list[dict[str, Any]] = [{"PutRequest": {"Item": self.to_item(r)}} for r in chunk]
            self.write_batch(requests)
            written += len(chunk)
        return written

    def write_batch(self, requests: list[dict[str, Any]]) -> None:
        pending = requests
        for attempt in range(_BATCH_ATTEMPTS):
            response = self._client.batch_write_item(RequestItems={self._table: pending})  # type: ignore[dict-item]
            pending = list(response.get("UnprocessedItems", {}).get(self._table, []))  # type: ignore[arg-type]
            if not pending:
                return
            time.sleep(min(1.0, 0.02 * 2**attempt) * (0.5 + random.random() / 2))
        raise Unavailable(
            f"DynamoDB did not accept {len(pending)} readings after {_BATCH_ATTEMPTS} attempts",
            details={"unprocessed": len(pending)},
        )

    def put_imported(self, imported: Sequence[ImportedReading], *, dry_run: bool = False) -> int:
        """Write readings from another system unless already there; returns how many were
        (with dry_run: would be) written. Keys derive from the source ids, so importing
        the same rows again writes nothing, and an import cut short can simply be rerun."""
        items = [self.to_item(i.reading, f"{IMPORTED_KEY_PREFIX}{i.source_id}") for i in imported]
        existing = self._existing_keys([(item["pk"]["S"], item["sk"]["S"]) for item in items])
        new = [item for item in items if (item["pk"]["S"], item["sk"]["S"]) not in existing]
        if not dry_run:
            for start in range(0, len(new), BATCH_WRITE_LIMIT):
                self.write_batch(
                    [{"PutRequest": {"Item": item}} for item in new[start : start + BATCH_WRITE_LIMIT]]
                )
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
            for attempt in range(_BATCH_ATTEMPTS):
                response = self._client.batch_get_item(RequestItems=request)
                for item in response.get("Responses", {}).get(self._table, []):
                    found.add((item["pk"]["S"], item["sk"]["S"]))  # type: ignore[index]
                request = response.get("UnprocessedKeys")
                if not request:
                    break
                time.sleep(min(1.0, 0.02 * 2**attempt) * (0.5 + random.random() / 2))
            else:
                raise Unavailable("DynamoDB kept refusing to say which readings exist")
        return found

    def query(self, query: ReadingQuery, *, limit: int, start_key: AttributeMap | None) -> ReadingPage:
        names: dict[str, str] = {"#pk": "pk"}
        values: dict[str, Any] = {}
        index: str | None = None
        filters: list[str] = []
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
        if query.type:
            names["#type"] = "type"
            values[":type"] = {"S": query.type}
            filters.append("#type = :type")

        readings: list[Reading] = []
        key = start_key
        while True:
            request: dict[str, Any] = {
                "TableName": self._table,
                "KeyConditionExpression": key_condition,
                "ExpressionAttributeNames": names,
                "ExpressionAttributeValues": values,
                "ScanIndexForward": query.order == "asc",
                "Limit": limit - len(readings),
            }
            if index:
                request["IndexName"] = index
            if filters:
                request["FilterExpression"] = " AND ".join(filters)
            if key:
                request["ExclusiveStartKey"] = key
            response = self._client.query(**request)
            readings.extend(_item_to_reading(item) for item in response.get("Items", []))
            key = response.get("LastEvaluatedKey")  # type: ignore[assignment]
            if not key or len(readings) >= limit:
                return ReadingPage(readings, key)


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
