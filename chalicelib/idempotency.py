"""`Idempotency-Key`: a POST sent again with the same key is answered, not run again.

A request with the header claims a record in the runs table (id
`IDEMPOTENCY_PREFIX + digest(route, key)`, expiring by TTL after
`RECORD_SECONDS`). The record moves through three states:

- IN_PROGRESS: claimed by one attempt, for `LEASE_SECONDS` (longer than the
  function's timeout). A re-send meanwhile gets 409 RequestInProgress and
  Retry-After.
- DONE: the attempt answered 2xx; the answer is stored and every re-send gets it
  back (with `Idempotent-Replayed: true`).
- RELEASED: the attempt answered an error; the next re-send runs the request again.

A re-send that takes the record over (released, or its lease ran out because the
attempt died) keeps the time of the first attempt, and its derived id: a run
started, a run ended or readings stamped by the earlier attempt are recognised
and stored once (see `Claim`). The key is bound to the request it first came
with: the same key with another body, user or route is a 422.
"""

from __future__ import annotations

import hashlib
import re
import uuid
from contextvars import ContextVar
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError

from chalicelib import clock
from chalicelib.errors import BadRequest, IdempotencyKeyReused, RequestInProgress
from chalicelib.tables import IDEMPOTENCY_PREFIX, TTL_ATTRIBUTE

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

HEADER = "Idempotency-Key"
REPLAYED_HEADER = "Idempotent-Replayed"
# Printable ASCII without spaces: UUIDs, ULIDs and the like.
KEY_RE = re.compile(r"[!-~]{1,128}")
LEASE_SECONDS = 30
RECORD_SECONDS = 24 * 3600

_IN_PROGRESS = "IN_PROGRESS"
_DONE = "DONE"
_RELEASED = "RELEASED"


@dataclass(frozen=True, slots=True)
class Claim:
    """This attempt's hold on a record."""

    record_id: str
    token: str
    started_ms: int

    def derived_id(self) -> str:
        """A UUID that every attempt of this keyed request computes alike."""
        return str(uuid.UUID(bytes=hashlib.sha256(self.record_id.encode()).digest()[:16], version=4))


@dataclass(frozen=True, slots=True)
class StoredResponse:
    status_code: int
    body: str
    content_type: str


def validated_key(raw: str) -> str:
    if not KEY_RE.fullmatch(raw):
        raise BadRequest(f"{HEADER} must be 1-128 printable ASCII characters without spaces")
    return raw


def fingerprint(*parts: str | bytes) -> str:
    digest = hashlib.sha256()
    for part in parts:
        data = part.encode() if isinstance(part, str) else part
        digest.update(len(data).to_bytes(8, "big"))
        digest.update(data)
    return digest.hexdigest()


def record_id(route: str, key: str) -> str:
    return IDEMPOTENCY_PREFIX + fingerprint(route, key)[:40]


class IdempotencyStore:
    def __init__(self, client: DynamoDBClient, table_name: str):
        self._client = client
        self._table = table_name

    def claim(self, *, route: str, key: str, request_fingerprint: str) -> Claim | StoredResponse:
        """Claim the key for this attempt, or return the answer already given to it."""
        record = record_id(route, key)
        token = uuid.uuid4().hex
        now = clock.now_ms()
        try:
            response = self._client.update_item(
                TableName=self._table,
                Key={"id": {"S": record}},
                UpdateExpression=(
                    "SET #state = :in_progress, #token = :token, leaseUntil = :lease,"
                    " firstAttemptAt = if_not_exists(firstAttemptAt, :now),"
                    " fingerprint = if_not_exists(fingerprint, :fingerprint),"
                    " #expires = if_not_exists(#expires, :expires)"
                ),
                # A new key; or a re-send of the same request whose earlier attempt
                # failed or died (its lease ran out).
                ConditionExpression=(
                    "attribute_not_exists(id) OR (fingerprint = :fingerprint"
                    " AND (#state = :released OR (#state = :in_progress AND leaseUntil < :now)))"
                ),
                ExpressionAttributeNames={"#state": "state", "#token": "token", "#expires": TTL_ATTRIBUTE},
                ExpressionAttributeValues={
                    ":in_progress": {"S": _IN_PROGRESS},
                    ":released": {"S": _RELEASED},
                    ":token": {"S": token},
                    ":now": {"N": str(now)},
                    ":lease": {"N": str(now + LEASE_SECONDS * 1000)},
                    ":fingerprint": {"S": request_fingerprint},
                    ":expires": {"N": str(now // 1000 + RECORD_SECONDS)},
                },
                ReturnValues="ALL_NEW",
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
            )
            return Claim(record, token, int(response["Attributes"]["firstAttemptAt"]["N"]))  # type: ignore[index]
        except ClientError as error:
            if error.response["Error"]["Code"] != "ConditionalCheckFailedException":
                raise
            held: dict[str, Any] = error.response.get("Item") or {}  # type: ignore[assignment]
        if held.get("token", {}).get("S") == token:
            # Our own claim, applied by an attempt whose answer was lost and then retried.
            return Claim(record, token, int(held["firstAttemptAt"]["N"]))
        if held.get("fingerprint", {}).get("S") != request_fingerprint:
            raise IdempotencyKeyReused(
                f"this {HEADER} was used for a different request; use a new key for a new request"
            )
        if held.get("state", {}).get("S") == _DONE:
            return StoredResponse(
                status_code=int(held["responseStatus"]["N"]),
                body=held["responseBody"]["S"],
                content_type=held["responseType"]["S"],
            )
        raise RequestInProgress(f"a request with this {HEADER} is in progress; retry shortly")

    def complete(self, claim: Claim, response: StoredResponse) -> None:
        """Store the answer for every later re-send (unless another attempt took over)."""
        self._finish(
            claim,
            "SET #state = :done, responseStatus = :status, responseBody = :body, responseType = :type"
            " REMOVE leaseUntil",
            {
                ":done": {"S": _DONE},
                ":status": {"N": str(response.status_code)},
                ":body": {"S": response.body},
                ":type": {"S": response.content_type},
            },
        )

    def release(self, claim: Claim) -> None:
        """The attempt failed: let the next re-send run the request again."""
        self._finish(claim, "SET #state = :released REMOVE leaseUntil", {":released": {"S": _RELEASED}})

    def _finish(self, claim: Claim, update: str, values: dict[str, Any]) -> None:
        try:
            self._client.update_item(
                TableName=self._table,
                Key={"id": {"S": claim.record_id}},
                UpdateExpression=update,
                ConditionExpression="#token = :token",
                ExpressionAttributeNames={"#state": "state", "#token": "token"},
                ExpressionAttributeValues={**values, ":token": {"S": claim.token}},
            )
        except ClientError as error:
            # Another attempt took the record over after our lease ran out: its answer stands.
            if error.response["Error"]["Code"] != "ConditionalCheckFailedException":
                raise


# The claim of the request being handled; a context variable because `chalice local`
# serves requests on threads.
_current: ContextVar[Claim | None] = ContextVar("idempotency_claim", default=None)


def current() -> Claim | None:
    return _current.get()


def activate(claim: Claim | None) -> Any:
    return _current.set(claim)


def deactivate(reset_token: Any) -> None:
    _current.reset(reset_token)
