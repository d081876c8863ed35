"""Headers and query parameters: parsed and validated, or a 400 that says why."""

from __future__ import annotations

from collections.abc import Mapping

from chalicelib import clock
from chalicelib.errors import BadRequest, NotFound
from chalicelib.schemas import RUN_ID_RE, SENSOR_ID_RE, TYPE_RE, USER_RE

ANONYMOUS = "anonymous"


def user_header(headers: Mapping[str, str]) -> str:
    user = headers.get("x-user")
    if user is None or user == "":
        return ANONYMOUS
    if not USER_RE.match(user):
        raise BadRequest("X-User must be 1-64 characters of A-Z a-z 0-9 . _ @ -")
    return user


def run_id_value(value: str | None, *, source: str) -> str | None:
    """A run id from a header, query or body, lower-cased: one run in any letter case."""
    if value is None or value == "":
        return None
    if not RUN_ID_RE.match(value):
        raise BadRequest(f"{source} must be a run id (UUID)")
    return value.lower()


def path_run_id(value: str) -> str:
    """A run id from the URL path, lower-cased like `run_id_value`; anything else names no run."""
    if not RUN_ID_RE.match(value):
        raise NotFound(f"run {value} not found")
    return value.lower()


def sensor_id_value(value: str | None) -> str | None:
    if value is None or value == "":
        return None
    if not SENSOR_ID_RE.match(value):
        raise BadRequest("sensorId must be 1-64 characters of A-Z a-z 0-9 . _ : -")
    return value


def type_value(value: str | None) -> str | None:
    if value is None or value == "":
        return None
    if not TYPE_RE.match(value):
        raise BadRequest("type must be 1-32 characters of A-Z a-z 0-9 _ -")
    return value


def user_value(value: str | None) -> str | None:
    if value is None or value == "":
        return None
    if not USER_RE.match(value):
        raise BadRequest("user must be 1-64 characters of A-Z a-z 0-9 . _ @ -")
    return value


def int_param(params: Mapping[str, str], name: str, *, default: int, low: int, high: int) -> int:
    raw = params.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = _digits(raw)
    except ValueError:  # more digits than int() converts
        value = None
    if value is None or not low <= value <= high:
        raise BadRequest(f"{name} must be an integer between {low} and {high}, got {raw[:40]!r}")
    return value


def _digits(text: str) -> int | None:
    """ASCII digits as an int, else None. Not int() alone: it also takes a sign, spaces,
    `1_0` and other scripts' digits (full-width, Arabic-Indic, ...)."""
    return int(text) if text.isascii() and text.isdigit() else None


def choice_param(
    params: Mapping[str, str], name: str, choices: tuple[str, ...], default: str | None
) -> str | None:
    raw = params.get(name)
    if raw is None or raw == "":
        return default
    if raw not in choices:
        raise BadRequest(f"{name} must be one of {', '.join(choices)}")
    return raw


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
            digits = _digits(value)
            epoch_ms = clock.parse_iso_ms(value) if digits is None else digits
    except (ValueError, OverflowError):
        raise BadRequest(f"{name} must be ISO-8601 or epoch milliseconds, got {str(value)[:40]!r}") from None
    if not clock.in_range(epoch_ms):
        raise BadRequest(f"{name} must fall between the years 2000 and 2100")
    return epoch_ms


def check_time_range(from_ms: int | None, to_ms: int | None) -> None:
    """A range that ends before it starts is a mistake (and DynamoDB refuses such a BETWEEN)."""
    if from_ms is not None and to_ms is not None and from_ms > to_ms:
        raise BadRequest(f"from ({clock.format_ms(from_ms)}) is later than to ({clock.format_ms(to_ms)})")


def first_param(params: Mapping[str, str], *names: str) -> str | None:
    """The first of several accepted names (aliases) that is present."""
    for name in names:
        value = params.get(name)
        if value is not None and value != "":
            return value
    return None
