"""A test layer that makes moto's DynamoDB answer the way real DynamoDB does where it does not.

`DynamoDBFaults.install(client)` registers a ``before-send.dynamodb`` hook on a
botocore client. The hook sees each wire request (``X-Amz-Target`` names the
operation, the body is JSON), forwards it itself to the moto server the client
points at, and hands botocore the answer, possibly rewritten or made up, so that
botocore parses it, checks its CRC32 and retries exactly as it would against AWS.
Forwarding is serialized: moto's DynamoDB has no locking at all (a failed
TransactWriteItems even rolls back by restoring a deep copy of whole tables,
undoing concurrent writes to other items), so one request at a time is what makes
each call atomic in moto, as it is on DynamoDB.

Always on, because real DynamoDB always does it:

1. **LastEvaluatedKey on every full page.** DynamoDB stops a Query or Scan when it
   has evaluated ``Limit`` items and returns a ``LastEvaluatedKey`` even if no item
   follows; the next page is then empty. moto 5.2.5 omits the key when the page
   ends exactly at the last item (Count == Limit, nothing after it; likewise when
   a FilterExpression left Count < ScannedCount == Limit), so a pager that stops
   on a missing key passes under moto and makes one more, empty, call on AWS. The
   layer adds the key (the table's key attributes, plus the index's for an index)
   built from the last returned item whenever ScannedCount reached Limit. It
   cannot when the page returned no item or the projection dropped key attributes.
2. **ValidationException on a reversed BETWEEN.** DynamoDB refuses a
   KeyConditionExpression ``k BETWEEN :a AND :b`` whose :a sorts after :b (S by
   code point, N numerically, B bytewise); moto 5.2.5 answers 200 with no items.
3. **TransactionConflict on overlapping transactions.** DynamoDB cancels a
   TransactWriteItems (or TransactGetItems) that touches an item held by another
   transaction in flight (``CancellationReasons`` code ``TransactionConflict`` on
   the overlapping items) and refuses a PutItem/UpdateItem/DeleteItem on such an
   item with ``TransactionConflictException``; moto has no notion of in flight.
   The layer holds each TransactWriteItems' item keys while it is forwarded plus
   `transaction_hold_seconds` (the window a busy table would show) and answers
   the overlapping requests as DynamoDB does, without forwarding them.
   A TransactWriteItems repeated with the same ClientRequestToken (botocore
   retries with the token it generated) is idempotent on DynamoDB; moto ignores
   the token and applies it again, so the layer replays the first answer
   instead (or IdempotentParameterMismatchException if the items differ);
   ``honour_request_tokens = False`` turns that off.

Switchable, each on the layer object (and counted in `counts`):

4. `lose_answer(operation, times, how)`: the write is applied by moto, then its
   answer is replaced by a 500 InternalServerError or a closed connection, so
   botocore retries the identical request, as after a lost answer on AWS.
5. `unprocess_batch_writes(times, keep)` / `unprocess_batch_gets(times, keep)`:
   only the first ``keep`` requests/keys are forwarded; the rest come back as
   UnprocessedItems/UnprocessedKeys, as under load on DynamoDB.
6. `throttle(operation, times, code)`: answered with
   ProvisionedThroughputExceededException (or ThrottlingException) without
   forwarding; with ``times`` above botocore's max_attempts the caller sees it.

`applied` counts, per operation, the client requests that reached moto.
"""

from __future__ import annotations

import base64
import json
import logging
import re
import threading
import time
import urllib.request
import zlib
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Literal, TypeVar

from botocore.awsrequest import AWSPreparedRequest, AWSRequest, AWSResponse, HeadersDict
from botocore.exceptions import ConnectionClosedError
from botocore.httpsession import URLLib3Session

from iot_playground.local.local_stack import free_port

JSON = dict[str, Any]
TARGET_PREFIX = "DynamoDB_20120810."
CONTENT_TYPE = "application/x-amz-json-1.0"
ERROR_TYPE_PREFIX = "com.amazonaws.dynamodb.v20120810#"
SINGLE_WRITES = frozenset({"PutItem", "UpdateItem", "DeleteItem"})
WRITES = SINGLE_WRITES | {"TransactWriteItems", "BatchWriteItem"}
THROTTLE_MESSAGES = {
    "ProvisionedThroughputExceededException": "The level of configured provisioned throughput for the "
    "table was exceeded. Consider increasing your provisioning level with the UpdateTable API.",
    "ThrottlingException": "Throughput exceeds the current capacity of your table or index.",
}
_BETWEEN = re.compile(r"\bBETWEEN\s+(:\w+)\s+AND\s+(:\w+)", re.IGNORECASE)

ItemKey = tuple[str, str]  # (table name, canonical JSON of the key attributes)
K = TypeVar("K")
V = TypeVar("V")


class MotoServer:
    """moto's server on a free loopback port, in a thread of this process."""

    def __init__(self) -> None:
        from moto.server import ThreadedMotoServer

        port = free_port()
        self.endpoint = f"http://127.0.0.1:{port}"
        self._server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)

    def __enter__(self) -> MotoServer:
        self._quiet = _QuietLogger("werkzeug")  # a log line per request would flood failure reports
        self._server.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.stop()
        self._quiet.restore()

    def reset(self) -> None:
        """Forget every table and item."""
        request = urllib.request.Request(f"{self.endpoint}/moto-api/reset", data=b"", method="POST")
        with urllib.request.urlopen(request, timeout=10) as response:
            response.read()


class _QuietLogger:
    def __init__(self, name: str):
        self._logger = logging.getLogger(name)
        self._level = self._logger.level
        self._logger.setLevel(logging.WARNING)

    def restore(self) -> None:
        self._logger.setLevel(self._level)


class _Body:
    """The `raw` of a made-up AWSResponse: botocore reads it with stream()."""

    def __init__(self, data: bytes):
        self._data = data

    def stream(self, *args: Any, **kwargs: Any) -> Iterator[bytes]:
        yield self._data


@dataclass(frozen=True, slots=True)
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes

    @classmethod
    def of(cls, data: JSON, status: int = 200) -> Reply:
        return cls(status, {"Content-Type": CONTENT_TYPE}, json.dumps(data).encode())

    def json(self) -> JSON:
        data: JSON = json.loads(self.body or b"{}")
        return data

    def with_json(self, data: JSON) -> Reply:
        return Reply(self.status, self.headers, json.dumps(data).encode())

    def to_response(self, url: str) -> AWSResponse:
        headers = HeadersDict(self.headers)
        # botocore checks DynamoDB bodies against this header (and retries on a mismatch).
        headers["x-amz-crc32"] = str(zlib.crc32(self.body) & 0xFFFFFFFF)
        headers["Content-Length"] = str(len(self.body))
        return AWSResponse(url, self.status, headers, _Body(self.body))


def error_reply(code: str, message: str, status: int = 400, **extra: Any) -> Reply:
    """An error in DynamoDB's JSON format; botocore takes the code after the '#'."""
    return Reply.of({"__type": ERROR_TYPE_PREFIX + code, "message": message, **extra}, status)


def _operand(value: JSON) -> str | Decimal | bytes | None:
    if "S" in value:
        return str(value["S"])
    if "N" in value:
        return Decimal(value["N"])
    if "B" in value:
        return base64.b64decode(value["B"])
    return None


def reversed_between_error(body: JSON) -> Reply | None:
    values = body.get("ExpressionAttributeValues", {})
    for low_name, high_name in _BETWEEN.findall(body.get("KeyConditionExpression", "")):
        low, high = values.get(low_name, {}), values.get(high_name, {})
        low_value, high_value = _operand(low), _operand(high)
        if type(low_value) is type(high_value) and low_value is not None and low_value > high_value:  # type: ignore[operator]
            (low_type, low_raw), (high_type, high_raw) = next(iter(low.items())), next(iter(high.items()))
            return error_reply(
                "ValidationException",
                "Invalid KeyConditionExpression: The BETWEEN operator requires upper bound to be greater "
                "than or equal to lower bound; "
                f"lower bound operand: AttributeValue: {{{low_type}:{low_raw}}}, "
                f"upper bound operand: AttributeValue: {{{high_type}:{high_raw}}}",
            )
    return None


@dataclass(frozen=True, slots=True)
class TableKeys:
    """Key attribute names of a table and of its indexes, from DescribeTable."""

    table: tuple[str, ...]
    indexes: dict[str, tuple[str, ...]]

    @classmethod
    def from_description(cls, table: JSON) -> TableKeys:
        def names(schema: list[JSON]) -> tuple[str, ...]:
            return tuple(key["AttributeName"] for key in schema)

        indexes = table.get("GlobalSecondaryIndexes", []) + table.get("LocalSecondaryIndexes", [])
        return cls(names(table["KeySchema"]), {i["IndexName"]: names(i["KeySchema"]) for i in indexes})

    def page_key_names(self, index: str | None) -> tuple[str, ...]:
        """What a LastEvaluatedKey holds: the table's key plus the index's."""
        extra = self.indexes.get(index, ()) if index else ()
        return self.table + tuple(name for name in extra if name not in self.table)


class DynamoDBFaults:
    """The hook; see the module docstring. Thread-safe."""

    def __init__(self, transaction_hold_seconds: float = 0.005, honour_request_tokens: bool = True):
        self.transaction_hold_seconds = transaction_hold_seconds
        self.honour_request_tokens = honour_request_tokens  # False: apply a repeated token again, as moto
        self.counts: Counter[str] = Counter()
        self.applied: Counter[str] = Counter()
        self._lock = threading.Lock()  # guards all the state below
        self._moto_lock = threading.Lock()  # one request at a time in moto
        self._http = URLLib3Session()
        self._clients: list[Any] = []
        self._schemas: dict[str, TableKeys] = {}
        self._held: set[ItemKey] = set()  # items of the TransactWriteItems in flight
        self._tokens: dict[str, tuple[str, Reply]] = {}  # ClientRequestToken -> (request, answer)
        self._lost: dict[str, tuple[int, Literal["500", "disconnect"]]] = {}
        self._unprocessed: dict[str, tuple[int, int]] = {}  # operation -> (times, keep)
        self._throttles: dict[str | None, tuple[int, str]] = {}

    # -- switches ---------------------------------------------------------------

    def install(self, client: Any) -> DynamoDBFaults:
        client.meta.events.register_first("before-send.dynamodb", self._before_send)
        self._clients.append(client)
        return self

    def uninstall(self) -> None:
        for client in self._clients:
            client.meta.events.unregister("before-send.dynamodb", self._before_send)
        self._clients.clear()
        self._http.close()

    def lose_answer(self, operation: str, times: int = 1, how: Literal["500", "disconnect"] = "500") -> None:
        """Apply the next `times` successful `operation` requests, then lose their answers."""
        if operation not in WRITES or how not in ("500", "disconnect"):
            raise ValueError(f"cannot lose the answer of {operation} by {how!r}")
        with self._lock:
            self._lost[operation] = (times, how)

    def unprocess_batch_writes(self, times: int = 1, keep: int = 0) -> None:
        """The next `times` BatchWriteItem apply only their first `keep` requests."""
        with self._lock:
            self._unprocessed["BatchWriteItem"] = (times, keep)

    def unprocess_batch_gets(self, times: int = 1, keep: int = 0) -> None:
        """The next `times` BatchGetItem read only their first `keep` keys."""
        with self._lock:
            self._unprocessed["BatchGetItem"] = (times, keep)

    def throttle(
        self,
        operation: str | None = None,
        times: int = 1_000_000,
        code: str = "ProvisionedThroughputExceededException",
    ) -> None:
        """Refuse the next `times` requests of `operation` (None: of any) as throttled."""
        if code not in THROTTLE_MESSAGES:
            raise ValueError(f"unknown throttling code {code}")
        with self._lock:
            self._throttles[operation] = (times, code)

    def clear(self) -> None:
        """Switch off every switchable fault (the always-on behaviours stay)."""
        with self._lock:
            self._lost.clear()
            self._unprocessed.clear()
            self._throttles.clear()

    # -- the hook ---------------------------------------------------------------

    def _before_send(self, request: AWSPreparedRequest, **_: Any) -> AWSResponse:
        target = request.headers["X-Amz-Target"]  # bytes, as botocore sets it
        operation = (target.decode() if isinstance(target, bytes) else target).removeprefix(TARGET_PREFIX)
        raw = request.body or b"{}"
        body: JSON = json.loads(raw if isinstance(raw, bytes | str) else raw.read())
        call = _Call(self, request, operation, body)
        reply = self._answer(call)
        with self._lock:
            lost = self._take(self._lost, operation) if reply.status == 200 else None
            if lost:
                self.counts["lost_answers"] += 1
        if lost == "disconnect":
            raise ConnectionClosedError(endpoint_url=request.url)
        if lost:
            reply = error_reply("InternalServerError", "Internal server error", status=500)
        return reply.to_response(request.url)

    def _answer(self, call: _Call) -> Reply:
        operation, body = call.operation, call.body
        with self._lock:
            throttled = self._take(self._throttles, operation) or self._take(self._throttles, None)
            if throttled:
                self.counts["throttled"] += 1
        if throttled:
            return error_reply(throttled, THROTTLE_MESSAGES[throttled])
        if operation == "Query" and (invalid := reversed_between_error(body)):
            with self._lock:
                self.counts["reversed_between"] += 1
            return invalid
        if operation in ("CreateTable", "DeleteTable", "UpdateTable"):
            with self._lock:
                self._schemas.pop(body.get("TableName", ""), None)
        if operation == "TransactWriteItems":
            return self._transact_write(call)
        if operation == "TransactGetItems":
            return self._transact_get(call)
        if operation in SINGLE_WRITES and self._held:
            key = call.item_key(body["TableName"], body.get("Key") or body.get("Item", {}))
            with self._lock:
                conflict = key in self._held
                if conflict:
                    self.counts["write_conflicts"] += 1
            if conflict:
                return error_reply("TransactionConflictException", "Transaction is ongoing for the item")
        if operation in ("BatchWriteItem", "BatchGetItem"):
            return self._batch(call)
        reply = call.forward()
        if operation in ("Query", "Scan"):
            reply = self._add_last_evaluated_key(call, reply)
        return reply

    def _transact_write(self, call: _Call) -> Reply:
        keys = [call.item_key(*_transact_target(entry)) for entry in call.body["TransactItems"]]
        token = call.body.get("ClientRequestToken") if self.honour_request_tokens else None
        fingerprint = json.dumps({**call.body, "ClientRequestToken": None}, sort_keys=True)
        with self._lock:
            if token in self._tokens:
                first_request, first_answer = self._tokens[token]
                self.counts["idempotent_replays"] += 1
                if first_request == fingerprint:
                    return first_answer
                return error_reply(
                    "IdempotentParameterMismatchException",
                    "Transaction request with the same client token had different parameters",
                )
            overlapping = [key in self._held for key in keys]
            if any(overlapping):
                self.counts["transaction_conflicts"] += 1
            else:
                self._held.update(keys)
        if any(overlapping):
            return _conflict(overlapping)
        try:
            reply = call.forward()
            time.sleep(self.transaction_hold_seconds)
        finally:
            with self._lock:
                self._held.difference_update(keys)
        if token and reply.status == 200:
            with self._lock:
                self._tokens[token] = (fingerprint, reply)
        return reply

    def _transact_get(self, call: _Call) -> Reply:
        keys = [call.item_key(e["Get"]["TableName"], e["Get"]["Key"]) for e in call.body["TransactItems"]]
        with self._lock:
            overlapping = [key in self._held for key in keys]
            if any(overlapping):
                self.counts["transaction_conflicts"] += 1
        return _conflict(overlapping) if any(overlapping) else call.forward()

    def _batch(self, call: _Call) -> Reply:
        """BatchWriteItem/BatchGetItem, leaving unprocessed all but the first `keep` requests."""
        with self._lock:
            keep = self._take(self._unprocessed, call.operation)
        if keep is None:
            return call.forward()
        writes = call.operation == "BatchWriteItem"
        requests = call.body["RequestItems"]
        entries = [
            (table, entry) for table, spec in requests.items() for entry in (spec if writes else spec["Keys"])
        ]
        kept, rest = entries[:keep], entries[keep:]

        def grouped(chosen: list[tuple[str, Any]]) -> JSON:
            tables: JSON = {}
            for table, entry in chosen:
                if writes:
                    tables.setdefault(table, []).append(entry)
                else:
                    tables.setdefault(table, {**requests[table], "Keys": []})["Keys"].append(entry)
            return tables

        reply = call.forward({**call.body, "RequestItems": grouped(kept)}) if kept else Reply.of({})
        if reply.status != 200:
            return reply
        data = reply.json()
        data["UnprocessedItems" if writes else "UnprocessedKeys"] = grouped(rest)
        if rest:
            with self._lock:
                self.counts["unprocessed_batch_writes" if writes else "unprocessed_batch_gets"] += 1
        return reply.with_json(data)

    def _add_last_evaluated_key(self, call: _Call, reply: Reply) -> Reply:
        limit = call.body.get("Limit")
        if reply.status != 200 or limit is None:
            return reply
        data = reply.json()
        items = data.get("Items") or []
        if "LastEvaluatedKey" in data or data.get("ScannedCount", 0) < limit or not items:
            return reply
        schema = call.schema(call.body["TableName"])
        names = schema.page_key_names(call.body.get("IndexName")) if schema else ()
        last = items[-1]
        if not names or any(name not in last for name in names):
            return reply
        data["LastEvaluatedKey"] = {name: last[name] for name in names}
        with self._lock:
            self.counts["last_evaluated_keys_added"] += 1
        return reply.with_json(data)

    # -- helpers ----------------------------------------------------------------

    @staticmethod
    def _take(armed: dict[K, tuple[int, V]], key: K) -> V | None:
        """Use up one of the `times` of an armed fault (call with the lock held)."""
        if key not in armed:
            return None
        times, value = armed[key]
        if times <= 1:
            del armed[key]
        else:
            armed[key] = (times - 1, value)
        return value

    def _send(self, request: AWSPreparedRequest, operation: str, body: JSON | None) -> Reply:
        headers = {k: v for k, v in request.headers.items() if k.lower() != "content-length"}
        if body is not None:  # a new body breaks the signature, which moto does not check
            headers["X-Amz-Target"] = TARGET_PREFIX + operation
            request = AWSRequest("POST", request.url, headers, json.dumps(body).encode()).prepare()
        with self._moto_lock:
            response = self._http.send(request)
            return Reply(response.status_code, dict(response.headers), response.content)

    def _schema(self, request: AWSPreparedRequest, table: str) -> TableKeys | None:
        with self._lock:
            if table in self._schemas:
                return self._schemas[table]
        reply = self._send(request, "DescribeTable", {"TableName": table})
        if reply.status != 200:
            return None
        schema = TableKeys.from_description(reply.json()["Table"])
        with self._lock:
            self._schemas[table] = schema
        return schema


@dataclass(slots=True)
class _Call:
    """One request as the hook sees it."""

    layer: DynamoDBFaults
    request: AWSPreparedRequest
    operation: str
    body: JSON

    def forward(self, body: JSON | None = None) -> Reply:
        """Send this request (or the same with another body) to moto."""
        reply = self.layer._send(self.request, self.operation, body)
        with self.layer._lock:
            self.layer.applied[self.operation] += 1
        return reply

    def schema(self, table: str) -> TableKeys | None:
        return self.layer._schema(self.request, table)

    def item_key(self, table: str, attributes: JSON) -> ItemKey:
        schema = self.schema(table)
        names = schema.table if schema else tuple(attributes)
        return table, json.dumps({n: attributes.get(n) for n in names}, sort_keys=True)


def _transact_target(entry: JSON) -> tuple[str, JSON]:
    ((kind, spec),) = entry.items()
    return spec["TableName"], spec["Item"] if kind == "Put" else spec["Key"]


def _conflict(overlapping: list[bool]) -> Reply:
    reasons = [
        {"Code": "TransactionConflict", "Message": "Transaction is ongoing for the item"}
        if overlaps
        else {"Code": "None"}
        for overlaps in overlapping
    ]
    codes = ", ".join(reason["Code"] for reason in reasons)
    return error_reply(
        "TransactionCanceledException",
        f"Transaction cancelled, please refer cancellation reasons for specific reasons [{codes}]",
        CancellationReasons=reasons,
    )
