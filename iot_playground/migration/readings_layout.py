"""`iot-playground migrate-readings-layout`: readings of the old layout into chunks.

The old layout kept one item per reading under ``pk = "<runId or ->|<sensorId>"``,
``sk = "<ISO timestamp>#<digest>"`` (attributes ``reading``, ``timestamp``, ``type``,
``user``, ``expiresAt``), found through two indexes that `make tables` now drops.
This rewrites them as chunks of the current layout (see chalicelib/tables.py).

Per old partition (one run and sensor): read all its items, chunk them as the app
does, and write each chunk together with the deletion of the old items it holds in
one transaction. So at any moment every reading is in exactly one layout: a run cut
short (Ctrl-C, a crash, throttling) leaves no duplicate and no loss, and running the
command again goes on with what is left. When nothing of the old layout is left, it
changes nothing. It runs with operator credentials (it scans the table and deletes),
never as the API, whose role grants neither.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from chalicelib import clock
from chalicelib.readings import Reading, ReadingRepository
from chalicelib.tables import NO_RUN, TTL_ATTRIBUTE

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

OLD_SEPARATOR = "|"
# A transaction holds at most 100 items: the chunk's put and the deletes of its readings.
MAX_READINGS_PER_TRANSACTION = 99


@dataclass(slots=True)
class LayoutSummary:
    partitions: int = 0
    readings: int = 0
    chunks: int = 0


def old_partitions(client: DynamoDBClient, table: str) -> Iterator[str]:
    """Partition keys of old-layout items (a Scan: an operator's one-off, not the API's)."""
    seen: set[str] = set()
    request: dict[str, Any] = {
        "TableName": table,
        "FilterExpression": "contains(#pk, :bar)",
        "ProjectionExpression": "#pk",
        "ExpressionAttributeNames": {"#pk": "pk"},
        "ExpressionAttributeValues": {":bar": {"S": OLD_SEPARATOR}},
    }
    while True:
        page = client.scan(**request)
        for item in page.get("Items", []):
            pk = item["pk"]["S"]  # type: ignore[index]
            if pk not in seen:
                seen.add(pk)
                yield pk
        if "LastEvaluatedKey" not in page:
            return
        request["ExclusiveStartKey"] = page["LastEvaluatedKey"]


def _old_items(client: DynamoDBClient, table: str, pk: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    request: dict[str, Any] = {
        "TableName": table,
        "KeyConditionExpression": "#pk = :pk",
        "ExpressionAttributeNames": {"#pk": "pk"},
        "ExpressionAttributeValues": {":pk": {"S": pk}},
        "ConsistentRead": True,
    }
    while True:
        page = client.query(**request)
        items += page.get("Items", [])
        if "LastEvaluatedKey" not in page:
            return items
        request["ExclusiveStartKey"] = page["LastEvaluatedKey"]


def _reading(item: dict[str, Any]) -> Reading:
    run_part, _, sensor = item["pk"]["S"].partition(OLD_SEPARATOR)
    return Reading(
        sensor_id=item.get("sensorId", {}).get("S", sensor),
        type=item["type"]["S"],
        value=float(item["reading"]["N"]),
        timestamp_ms=clock.parse_iso_ms(item["timestamp"]["S"]),
        run_id=None if run_part == NO_RUN else run_part,
        user=item["user"]["S"],
        # The old key: deterministic, and it names the old item this reading came from.
        nonce=item["sk"]["S"],
    )


def migrate_partition(
    client: DynamoDBClient, repository: ReadingRepository, table: str, pk: str
) -> tuple[int, int]:
    """Moves one old partition; returns (readings, chunks) moved."""
    items = _old_items(client, table, pk)
    expiry = {item["sk"]["S"]: item.get(TTL_ATTRIBUTE, {}).get("N") for item in items}
    readings = [_reading(item) for item in items]
    moved = chunks = 0
    for chunk in repository.chunks(readings):
        for start in range(0, len(chunk), MAX_READINGS_PER_TRANSACTION):
            part = chunk[start : start + MAX_READINGS_PER_TRANSACTION]
            expires = [expiry[r.nonce] for r in part]
            item = repository.chunk_item(part)
            item.pop(TTL_ATTRIBUTE, None)
            if all(expires):  # the latest of the old expiries; none if any reading had none
                item[TTL_ATTRIBUTE] = {"N": str(max(int(e) for e in expires if e))}
            deletes: list[Any] = [
                {"Delete": {"TableName": table, "Key": {"pk": {"S": pk}, "sk": {"S": r.nonce}}}} for r in part
            ]
            client.transact_write_items(TransactItems=[{"Put": {"TableName": table, "Item": item}}, *deletes])
            moved += len(part)
            chunks += 1
    return moved, chunks


def migrate_layout(client: DynamoDBClient, table: str) -> LayoutSummary:
    repository = ReadingRepository(client, table, ttl_days=0)
    summary = LayoutSummary()
    for pk in old_partitions(client, table):
        moved, chunks = migrate_partition(client, repository, table, pk)
        summary.partitions += 1
        summary.readings += moved
        summary.chunks += chunks
    return summary
