"""Opaque, signed `nextKey` tokens over where a list goes on from.

The payload is DynamoDB's LastEvaluatedKey for the run lists, a `readings.Cursor`
for readings. A token carries it and a fingerprint of the query it belongs to, signed
with HMAC: a malformed, edited or foreign token is a 400, never a DynamoDB
error and never a page of some other query.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from typing import Any

import msgspec

from chalicelib.errors import BadRequest

AttributeMap = dict[str, dict[str, str]]


class _Token(msgspec.Struct, array_like=True):
    query: str
    key: msgspec.Raw


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _signature(secret: str, payload: bytes) -> bytes:
    return hmac.new(secret.encode(), payload, hashlib.sha256).digest()[:16]


def fingerprint(*parts: Any) -> str:
    return hashlib.sha256(msgspec.json.encode(parts)).hexdigest()[:16]


def encode_token(last_key: Any, query: str, secret: str) -> str | None:
    if not last_key:
        return None
    payload = msgspec.json.encode(_Token(query=query, key=msgspec.Raw(msgspec.json.encode(last_key))))
    return f"{_b64(payload)}.{_b64(_signature(secret, payload))}"


def decode_token(token: str | None, query: str, secret: str, payload_type: Any = AttributeMap) -> Any:
    if not token:
        return None
    try:
        payload_text, signature_text = token.split(".")
        payload = _unb64(payload_text)
        signature = _unb64(signature_text)
    except ValueError:
        raise BadRequest("nextKey is not a valid pagination token") from None
    if not hmac.compare_digest(signature, _signature(secret, payload)):
        raise BadRequest("nextKey is not a valid pagination token")
    try:
        decoded = msgspec.json.decode(payload, type=_Token)
    except msgspec.MsgspecError:
        raise BadRequest("nextKey is not a valid pagination token") from None
    if decoded.query != query:
        raise BadRequest("nextKey belongs to a different query")
    try:
        return msgspec.json.decode(decoded.key, type=payload_type)
    except msgspec.MsgspecError:
        raise BadRequest("nextKey is not a valid pagination token for this query") from None
