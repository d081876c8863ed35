"""Headers and query parameters: parsed and validated, or a 400 that says why.

The HTTP side of input; the values themselves are checked by `values.py`.
"""

from __future__ import annotations

from collections.abc import Mapping

from chalicelib.errors import BadRequest, NotFound
from chalicelib.schemas import RUN_ID_RE
from chalicelib.values import digits, user_value

ANONYMOUS = "anonymous"


def user_header(headers: Mapping[str, str]) -> str:
    return user_value(headers.get("x-user"), source="X-User") or ANONYMOUS


def path_run_id(value: str) -> str:
    """A run id from the URL path, lower-cased like `values.run_id_value`; anything else names no run."""
    if not RUN_ID_RE.match(value):
        raise NotFound(f"run {value} not found")
    return value.lower()


def int_param(params: Mapping[str, str], name: str, *, default: int, low: int, high: int) -> int:
    raw = params.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = digits(raw)
    except ValueError:  # more digits than int() converts
        value = None
    if value is None or not low <= value <= high:
        raise BadRequest(f"{name} must be an integer between {low} and {high}, got {raw[:40]!r}")
    return value


def choice_param(
    params: Mapping[str, str], name: str, choices: tuple[str, ...], default: str | None
) -> str | None:
    raw = params.get(name)
    if raw is None or raw == "":
        return default
    if raw not in choices:
        raise BadRequest(f"{name} must be one of {', '.join(choices)}")
    return raw


def first_param(params: Mapping[str, str], *names: str) -> str | None:
    """The first of several accepted names (aliases) that is present."""
    for name in names:
        value = params.get(name)
        if value is not None and value != "":
            return value
    return None
