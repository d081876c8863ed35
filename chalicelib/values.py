"""Single values checked by the rules of the domain: ids, names, times.

Shared by the HTTP layer (headers, query parameters: `params.py`) and the domain (fields of a
request body: `ingest.py`); each raises BadRequest saying what the value must be.
"""

from __future__ import annotations

import re

from chalicelib import clock
from chalicelib.errors import BadRequest
from chalicelib.schemas import RUN_ID_RE, SENSOR_ID_RE, TYPE_RE, USER_RE


def _matching(value: str | None, pattern: re.Pattern[str], rule: str) -> str | None:
    """The value, None when absent (missing or empty), BadRequest(rule) when it breaks the pattern."""
    if value is None or value == "":
        return None
    if not pattern.match(value):
        raise BadRequest(rule)
    return value


def run_id_value(value: str | None, *, source: str) -> str | None:
    """A run id from a header, query or body, lower-cased: one run in any letter case."""
    checked = _matching(value, RUN_ID_RE, f"{source} must be a run id (UUID)")
    return checked.lower() if checked is not None else None


def sensor_id_value(value: str | None) -> str | None:
    return _matching(value, SENSOR_ID_RE, "sensorId must be 1-64 characters of A-Z a-z 0-9 . _ : -")


def type_value(value: str | None) -> str | None:
    return _matching(value, TYPE_RE, "type must be 1-32 characters of A-Z a-z 0-9 _ -")


def user_value(value: str | None, *, source: str = "user") -> str | None:
    return _matching(value, USER_RE, f"{source} must be 1-64 characters of A-Z a-z 0-9 . _ @ -")


def digits(text: str) -> int | None:
    """ASCII digits as an int, else None. Not int() alone: it also takes a sign, spaces,
    `1_0` and other scripts' digits (full-width, Arabic-Indic, ...)."""
    return int(text) if text.isascii() and text.isdigit() else None


def timestamp_value(value: str | int | None, *, name: str) -> int | None:
    """ISO-8601 text or epoch milliseconds (number or digits) to epoch milliseconds."""
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        raise BadRequest(f"{name} must be ISO-8601 or epoch milliseconds")
    try:
        if isinstance(value, int):
            epoch_ms = value
        else:
            as_digits = digits(value)
            epoch_ms = clock.parse_iso_ms(value) if as_digits is None else as_digits
    except (ValueError, OverflowError):
        raise BadRequest(f"{name} must be ISO-8601 or epoch milliseconds, got {str(value)[:40]!r}") from None
    if not clock.in_range(epoch_ms):
        raise BadRequest(f"{name} must fall between the years 2000 and 2100")
    return epoch_ms


def check_time_range(from_ms: int | None, to_ms: int | None) -> None:
    """A range that ends before it starts is a mistake (and DynamoDB refuses such a BETWEEN)."""
    if from_ms is not None and to_ms is not None and from_ms > to_ms:
        raise BadRequest(f"from ({clock.format_ms(from_ms)}) is later than to ({clock.format_ms(to_ms)})")
