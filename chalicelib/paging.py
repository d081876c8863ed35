"""One page of a DynamoDB Query with bounded work, whatever the table holds.

DynamoDB applies `Limit` before a FilterExpression, and returns a LastEvaluatedKey
whenever `Limit` is reached, even when nothing follows. So a page is read with
one item more than it shows: that extra item says whether there is a next page
(its `nextKey` is the key of the last item shown), so a full last page ends with
no `nextKey`. A filtered query reads at least `FILTERED_READ_LIMIT` items per call,
and every query stops after `MAX_QUERY_CALLS` calls: a filter that matches little
or nothing returns what it found and a `nextKey` to go on from, instead of
walking the whole partition in one request.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from chalicelib.errors import BadRequest
from chalicelib.pagination import AttributeMap

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

MAX_QUERY_CALLS = 3
# A readings page that could show nothing yet within MAX_QUERY_CALLS (a dense stretch
# of chunks, see readings._Scan) may make calls up to this many instead.
MAX_QUERY_CALLS_STARVED = 6
FILTERED_READ_LIMIT = 200

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Page(Generic[T]):
    items: list[T]
    last_key: AttributeMap | None


def query_page(
    client: DynamoDBClient,
    request: dict[str, Any],
    *,
    limit: int,
    start_key: AttributeMap | None,
    key_attributes: tuple[str, ...],
    parse: Callable[[dict[str, Any]], T],
) -> Page[T]:
    """At most `limit` items of `request` (a Query without Limit or ExclusiveStartKey),
    in at most MAX_QUERY_CALLS calls."""
    if start_key is not None and not _is_key(start_key, key_attributes):
        # Signed by us but not a key of this query (an old token, or a secret that leaked).
        raise BadRequest("nextKey is not a valid pagination token for this query")
    filtered = "FilterExpression" in request
    found: list[dict[str, Any]] = []
    key = start_key
    for _ in range(MAX_QUERY_CALLS):
        wanted = limit - len(found) + 1  # one more than shown: is there a next page?
        call: dict[str, Any] = {**request, "Limit": max(wanted, FILTERED_READ_LIMIT) if filtered else wanted}
        if key:
            call["ExclusiveStartKey"] = key
        response = client.query(**call)
        found.extend(response.get("Items", []))
        key = response.get("LastEvaluatedKey")  # type: ignore[assignment]
        if len(found) > limit:
            shown = found[:limit]
            return Page([parse(item) for item in shown], _key_of(shown[-1], key_attributes))
        if not key:
            return Page([parse(item) for item in found], None)
    # The call budget is spent: what was found, and where to go on from.
    return Page([parse(item) for item in found], key)


def _is_key(key: AttributeMap, attributes: tuple[str, ...]) -> bool:
    return set(key) == set(attributes) and all(
        len(value) == 1 and next(iter(value)) in ("S", "N", "B") for value in key.values()
    )


def _key_of(item: dict[str, Any], attributes: tuple[str, ...]) -> AttributeMap:
    return {name: item[name] for name in attributes}
