"""What DynamoDB charges for the requests a client actually sends.

`item_size` follows "DynamoDB item sizes and formats" (Amazon DynamoDB Developer Guide,
CapacityUnitCalculations): the sum of attribute name lengths and value sizes. Write units
are `ceil(size / 1 KB)` per item written, once for the table and once more for every global
secondary index the item appears in (an index holds an item when the item has the index's
key attributes; these indexes project ALL attributes, so the index entry is the item). Read
units are `ceil(bytes / 4 KB)` per request (summed over the items a Query returns), halved
for eventually consistent reads; a transaction costs twice its items' units.

`Recorder` hooks a botocore client (`before-call` / `after-call`) and keeps, per request,
the operation, what it wrote and read, and how long botocore took: it computes from the
requests themselves, whatever layout the repositories write. An update or a delete is
charged on the larger of the item before and after it, which the request does not carry:
given a second client (`reader`, not hooked), the recorder reads the item before and after.
"""

from __future__ import annotations

import base64
import json
import math
import threading
import time
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from chalicelib.tables import TABLES, Table

KB = 1024
WRITE_UNIT_BYTES = 1 * KB
READ_UNIT_BYTES = 4 * KB
# Storage: every item carries 100 bytes of indexing overhead, in the table and in each index.
STORAGE_OVERHEAD_BYTES = 100

AttributeValue = Mapping[str, Any]
Item = Mapping[str, AttributeValue]


def _number_size(text: str) -> int:
    """1 byte per two significant digits, plus 1: leading and trailing zeros do not count."""
    digits = format(abs(Decimal(text)), "f").replace(".", "").strip("0")
    return math.ceil(max(len(digits), 1) / 2) + 1


def value_size(value: AttributeValue) -> int:
    """The size of one attribute value in DynamoDB's JSON form ({"S": ...}, {"N": ...}, ...)."""
    ((kind, content),) = value.items()
    if kind == "S":
        return len(content.encode("utf-8"))
    if kind == "N":
        return _number_size(content)
    if kind == "B":
        raw = content if isinstance(content, bytes) else base64.b64decode(content)
        return len(raw)
    if kind in ("BOOL", "NULL"):
        return 1
    if kind == "SS":
        return sum(len(s.encode("utf-8")) for s in content)
    if kind == "NS":
        return sum(_number_size(n) for n in content)
    if kind == "BS":
        return sum(len(b if isinstance(b, bytes) else base64.b64decode(b)) for b in content)
    if kind == "L":
        # 3 bytes for the list, 1 more per element.
        return 3 + sum(value_size(element) + 1 for element in content)
    if kind == "M":
        return 3 + sum(len(name.encode("utf-8")) + value_size(v) + 1 for name, v in content.items())
    raise ValueError(f"unknown DynamoDB type {kind!r}")


def item_size(item: Item) -> int:
    """Bytes of an item: attribute names (UTF-8) plus their values' sizes."""
    return sum(len(name.encode("utf-8")) + value_size(value) for name, value in item.items())


def write_units(size: int) -> int:
    return max(1, math.ceil(size / WRITE_UNIT_BYTES))


def read_units(size: int, *, consistent: bool) -> float:
    units = max(1, math.ceil(size / READ_UNIT_BYTES))
    return float(units) if consistent else units / 2


def table_definition(table_name: str, names: Mapping[str, str]) -> Table:
    """The definition of a physical table, given {setting (RUNS_TABLE...): physical name}."""
    for definition in TABLES:
        if names.get(definition.setting) == table_name:
            return definition
    raise KeyError(f"{table_name} is none of the app's tables {dict(names)}")


def indexes_holding(item: Item, definition: Table) -> list[str]:
    """The global secondary indexes an item appears in: those whose key attributes it has."""
    return [
        index.name
        for index in definition.indexes
        if index.partition_key in item and (index.sort_key is None or index.sort_key in item)
    ]


@dataclass(frozen=True, slots=True)
class Written:
    table: str
    size: int
    indexes: tuple[str, ...]
    transactional: bool = False

    @property
    def write_units(self) -> int:
        """Table plus each index holding it; transactions count twice (DynamoDB's rule)."""
        units = write_units(self.size) * (1 + len(self.indexes))
        return units * 2 if self.transactional else units

    @property
    def stored_bytes(self) -> int:
        return (self.size + STORAGE_OVERHEAD_BYTES) * (1 + len(self.indexes))


@dataclass(slots=True)
class Call:
    """One DynamoDB request as sent, what it wrote and read, and how long botocore took."""

    operation: str
    written: list[Written] = field(default_factory=list)
    items_read: int = 0
    read_units: float = 0.0
    seconds: float = 0.0

    @property
    def write_units(self) -> int:
        return sum(w.write_units for w in self.written)


class Recorder:
    """Records every request a botocore DynamoDB client sends, from its own hooks."""

    def __init__(self, client: Any, table_names: Mapping[str, str], reader: Any = None):
        self._client = client
        self._reader = reader
        self._names = dict(table_names)
        self._lock = threading.Lock()
        self.calls: list[Call] = []
        events = client.meta.events
        events.register("before-call.dynamodb", self._before)
        events.register("after-call.dynamodb", self._after)

    def close(self) -> None:
        events = self._client.meta.events
        events.unregister("before-call.dynamodb", self._before)
        events.unregister("after-call.dynamodb", self._after)

    @contextmanager
    def capture(self) -> Iterator[list[Call]]:
        """The calls made inside the block."""
        with self._lock:
            start = len(self.calls)
        captured: list[Call] = []
        try:
            yield captured
        finally:
            with self._lock:
                captured.extend(self.calls[start:])

    def aws_seconds(self, calls: Iterable[Call]) -> float:
        return sum(call.seconds for call in calls)

    # ---- hooks -------------------------------------------------------------

    def _before(self, model: Any, params: dict[str, Any], context: dict[str, Any], **_: Any) -> None:
        body = params.get("body") or b"{}"
        request = json.loads(body if isinstance(body, str) else body.decode("utf-8"))
        context["bench_request"] = request
        # The lookups count as time in DynamoDB: they are not the app's work.
        context["bench_started"] = time.perf_counter()
        context["bench_before"] = {target: self._lookup(*target) for target in _targets(model.name, request)}

    def _after(self, model: Any, parsed: dict[str, Any], context: dict[str, Any], **_: Any) -> None:
        request = context.pop("bench_request", {})
        before = context.pop("bench_before", {})
        after = {target: self._lookup(*target) for target in before} if "Error" not in parsed else {}
        seconds = time.perf_counter() - context.pop("bench_started", time.perf_counter())
        call = Call(model.name, seconds=seconds)
        if "Error" not in parsed:
            call.written = list(self._written(model.name, request, before, after))
            call.items_read, call.read_units = self._read(model.name, request, parsed)
        with self._lock:
            self.calls.append(call)

    def _definition(self, table: str) -> Table:
        return table_definition(table, self._names)

    def _entry(self, table: str, item: Item, transactional: bool = False) -> Written:
        holding = tuple(indexes_holding(item, self._definition(table)))
        return Written(table, item_size(item), holding, transactional)

    def _lookup(self, table: str, key: str) -> Item | None:
        if self._reader is None:
            return None
        answer = self._reader.get_item(TableName=table, Key=json.loads(key), ConsistentRead=True)
        item: Item | None = answer.get("Item")
        return item

    def _changed(
        self,
        table: str,
        key: Item,
        before: Mapping[tuple[str, str], Item | None],
        after: Mapping[tuple[str, str], Item | None],
        transactional: bool,
    ) -> Written:
        """An update or delete: the larger of the item before and after (its key at least)."""
        target = (table, json.dumps(key, sort_keys=True))
        versions = [v for v in (before.get(target), after.get(target)) if v is not None] or [key]
        largest = max(versions, key=item_size)
        return self._entry(table, largest, transactional)

    def _written(
        self,
        operation: str,
        request: dict[str, Any],
        before: Mapping[tuple[str, str], Item | None],
        after: Mapping[tuple[str, str], Item | None],
    ) -> Iterator[Written]:
        if operation == "PutItem":
            yield self._entry(request["TableName"], request["Item"])
        elif operation == "BatchWriteItem":
            for table, requests in request["RequestItems"].items():
                for entry in requests:
                    if "PutRequest" in entry:
                        yield self._entry(table, entry["PutRequest"]["Item"])
                    else:
                        yield self._changed(table, entry["DeleteRequest"]["Key"], before, after, False)
        elif operation == "TransactWriteItems":
            for entry in request["TransactItems"]:
                if "Put" in entry:
                    yield self._entry(entry["Put"]["TableName"], entry["Put"]["Item"], transactional=True)
                elif "Update" in entry or "Delete" in entry:
                    action = entry.get("Update") or entry["Delete"]
                    yield self._changed(action["TableName"], action["Key"], before, after, True)
        elif operation in ("UpdateItem", "DeleteItem"):
            yield self._changed(request["TableName"], request["Key"], before, after, False)

    def _read(self, operation: str, request: dict[str, Any], parsed: dict[str, Any]) -> tuple[int, float]:
        consistent = bool(request.get("ConsistentRead"))
        if operation == "GetItem":
            item = parsed.get("Item")
            size = item_size(item) if item else 0
            return (1 if item else 0), read_units(size, consistent=consistent)
        if operation in ("Query", "Scan"):
            items = parsed.get("Items", [])
            scanned = int(parsed.get("ScannedCount", len(items)))
            # Filtered-out items are read too; their sizes are not in the answer: the returned
            # items' average stands for them.
            returned = sum(item_size(item) for item in items)
            size = returned * scanned // len(items) if items else 0
            return scanned, read_units(size, consistent=consistent)
        if operation == "BatchGetItem":
            count, units = 0, 0.0
            for table, items in parsed.get("Responses", {}).items():
                table_consistent = bool(request["RequestItems"][table].get("ConsistentRead"))
                for item in items:
                    count += 1
                    units += read_units(item_size(item), consistent=table_consistent)
            return count, units
        return 0, 0.0


def _targets(operation: str, request: dict[str, Any]) -> list[tuple[str, str]]:
    """(table, key as JSON) of the items an update or delete changes."""
    if operation in ("UpdateItem", "DeleteItem"):
        return [(request["TableName"], json.dumps(request["Key"], sort_keys=True))]
    targets = []
    if operation == "BatchWriteItem":
        for table, requests in request["RequestItems"].items():
            for entry in requests:
                if "DeleteRequest" in entry:
                    targets.append((table, json.dumps(entry["DeleteRequest"]["Key"], sort_keys=True)))
    if operation == "TransactWriteItems":
        for entry in request["TransactItems"]:
            action = entry.get("Update") or entry.get("Delete")
            if action:
                targets.append((action["TableName"], json.dumps(action["Key"], sort_keys=True)))
    return targets
