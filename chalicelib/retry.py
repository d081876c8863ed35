"""Retrying what botocore does not, and knowing when to stop.

botocore retries throttling, 5xx answers and dropped connections itself. What it
returns as success but did not finish is ours to retry: BatchWriteItem's
UnprocessedItems, BatchGetItem's UnprocessedKeys, and transactions cancelled by
a conflict with another transaction. Those loops all take their bounds from here.
When DynamoDB still refuses after that, the client gets a 503 with Retry-After
(`errors.Unavailable`).
"""

from __future__ import annotations

import random
import time
from collections.abc import Iterator
from typing import Any

from botocore.exceptions import ClientError, ConnectionError, HTTPClientError

# botocore's own retries (throttling, 5xx, dropped connections), for every client we make:
# "standard" mode; max_attempts 4 means 4 retries, 5 attempts in all.
SDK_RETRIES: dict[str, Any] = {"mode": "standard", "max_attempts": 4}
# Ours, on top of them, for what botocore returns as success (see above).
ATTEMPTS = 8
_FIRST_PAUSE_SECONDS = 0.02
_LONGEST_PAUSE_SECONDS = 1.0

# Errors that say "not now" rather than "never": the request may succeed if sent again.
_TRANSIENT_CODES = frozenset(
    {
        "InternalServerError",
        "ServiceUnavailable",
        "ProvisionedThroughputExceededException",
        "ThrottlingException",
        "RequestLimitExceeded",
        "TransactionConflictException",
        "TransactionInProgressException",
    }
)


def attempts(limit: int = ATTEMPTS) -> Iterator[int]:
    """0 .. limit-1, sleeping before each attempt but the first (exponential backoff, full jitter)."""
    for attempt in range(limit):
        if attempt:
            time.sleep(min(_LONGEST_PAUSE_SECONDS, _FIRST_PAUSE_SECONDS * 2**attempt) * random.random())
        yield attempt


def is_transient(error: BaseException) -> bool:
    if isinstance(error, ClientError):
        return error.response.get("Error", {}).get("Code") in _TRANSIENT_CODES
    return isinstance(error, (ConnectionError, HTTPClientError))
