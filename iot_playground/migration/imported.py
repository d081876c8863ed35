"""What only the migration writes: runs and readings from another system, each written once.

Not in chalicelib: the API never imports, so neither this code nor the BatchGetItem it
needs to find what is already there ships in the Lambda package or its role. The items
are the API's own, built by chalicelib's mapping (`run_to_item`,
`ReadingRepository.chunk_item`), so the API reads them like any other.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError

from chalicelib import retry
from chalicelib.errors import Unavailable
from chalicelib.readings import Chunk, Reading, ReadingRepository
from chalicelib.run_shape import RUNNING, Run, run_to_item
from chalicelib.runs import RunRepository

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

# Imported readings end their sort key with this and their source row id instead of
# a digest: the key is then the same on every import, so a rerun finds it.
# Digests are hex, so the '-' keeps the two kinds apart.
IMPORTED_KEY_PREFIX = "import-"
BATCH_GET_LIMIT = 100


@dataclass(frozen=True, slots=True)
class ImportedReading:
    """A reading from another system with the id of the row it came from."""

    source_id: str
    reading: Reading


class ImportedRuns:
    def __init__(self, client: DynamoDBClient, table_name: str, max_concurrent_runs: int):
        self._client = client
        self._table = table_name
        self._runs = RunRepository(client, table_name, max_concurrent_runs)

    def exists(self, run_id: str) -> bool:
        return self._runs.get(run_id) is not None

    def put(self, run: Run) -> bool:
        """Write a run from another system unless it exists already. Returns True if written.

        Imported runs must be terminal: a RUNNING import would hold no slot."""
        if run.status == RUNNING:
            run = replace(run, status="INTERRUPTED")
        try:
            self._client.put_item(
                TableName=self._table,
                Item=run_to_item(run),
                ConditionExpression="attribute_not_exists(id)",
            )
        except ClientError as error:
            if error.response["Error"]["Code"] == "ConditionalCheckFailedException":
                return False
            raise
        return True


class ImportedReadings:
    def __init__(self, client: DynamoDBClient, table_name: str, ttl_days: int):
        self._client = client
        self._table = table_name
        self._readings = ReadingRepository(client, table_name, ttl_days)

    def put(self, imported: Sequence[ImportedReading], *, dry_run: bool = False) -> int:
        """Write readings from another system unless already there; returns how many were
        (with dry_run: would be) written. Each is a chunk of one whose key derives from its
        source id (independent of how the rows were batched), so importing the same rows
        again writes nothing, and an import cut short can simply be rerun."""
        # Chunks of one reading: span level 0, which any run's span record covers.
        chunks = [
            Chunk(
                self._readings.chunk_item([i.reading], f"{IMPORTED_KEY_PREFIX}{i.source_id}"),
                1,
                i.reading.run_id,
                0,
            )
            for i in imported
        ]
        existing = self._existing_keys([_key(chunk) for chunk in chunks])
        new = list({_key(chunk): chunk for chunk in chunks if _key(chunk) not in existing}.values())
        if not dry_run and new:
            self._readings.write(new)
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


def _key(chunk: Chunk) -> tuple[str, str]:
    return chunk.item["pk"]["S"], chunk.item["sk"]["S"]
