"""Request and response shapes, validated and encoded by msgspec.

Decoding is strict: a string where a number belongs, a boolean, NaN or a
missing required field is a 400 naming the offending path; so is a body that
is not UTF-8 or nests deeper than MAX_JSON_DEPTH.
"""

from __future__ import annotations

import itertools
import re
from typing import Annotated, Any, TypeVar

import msgspec

from chalicelib.errors import ValidationFailed

# A bare `$` in Python also matches before a final "\n" ("s1\n" would pass); `(?!\n)$` is
# the end of the string both for Python's re (as msgspec applies `pattern`) and for
# ECMAScript (as a JSON Schema generated from these patterns reads them).
_END = r"(?!\n)$"
SENSOR_ID_PATTERN = r"^[A-Za-z0-9._:-]{1,64}" + _END
USER_PATTERN = r"^[A-Za-z0-9._@-]{1,64}" + _END
TYPE_PATTERN = r"^[A-Za-z0-9_-]{1,32}" + _END
# Any letter case; callers lower-case a run id once it matches (see values.run_id_value).
RUN_ID_PATTERN = r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}" + _END
RUN_ID_RE = re.compile(RUN_ID_PATTERN)
USER_RE = re.compile(USER_PATTERN)
SENSOR_ID_RE = re.compile(SENSOR_ID_PATTERN)
TYPE_RE = re.compile(TYPE_PATTERN)


SensorId = (
    Annotated[str, msgspec.Meta(pattern=SENSOR_ID_PATTERN)] | Annotated[int, msgspec.Meta(ge=0, le=10**15)]
)
MAX_BATCH_READINGS = 500
DEFAULT_READING_TYPE = "temperature"
MEASUREMENT_FIELDS = ("temperature", "humidity", "pressure")


# ---- runs -----------------------------------------------------------------


class RunParams(msgspec.Struct, forbid_unknown_fields=False):
    sensorIds: Annotated[list[SensorId], msgspec.Meta(min_length=1, max_length=100)]
    duration: Annotated[int, msgspec.Meta(ge=1, le=86_400)]
    interval: Annotated[int, msgspec.Meta(ge=1, le=3_600)]


class StartRunRequest(msgspec.Struct):
    """Either the fields themselves or the same fields under `params`."""

    sensorIds: list[Any] | None = None
    duration: Any = None
    interval: Any = None
    params: dict[str, Any] | None = None


class FinishRunRequest(msgspec.Struct):
    # Checked by the route (any letter case); the Meta only documents it.
    status: Annotated[
        str,
        msgspec.Meta(
            description="SUCCESS, COMPLETED (stored as SUCCESS) or FAILED, in any letter case",
            examples=["SUCCESS", "FAILED", "COMPLETED"],
        ),
    ] = "SUCCESS"
    errorMessage: Annotated[str, msgspec.Meta(max_length=2000)] | None = None
    message: Annotated[str, msgspec.Meta(max_length=2000)] | None = None


# ---- readings -------------------------------------------------------------

# msgspec refuses NaN, Infinity and overflowing literals; the bound keeps values
# inside what a DynamoDB number can hold and what a sensor can plausibly send.
FiniteNumber = Annotated[float, msgspec.Meta(ge=-1e15, le=1e15)]


class ReadingIn(msgspec.Struct):
    sensorId: SensorId
    reading: FiniteNumber | None = None
    type: Annotated[str, msgspec.Meta(pattern=TYPE_PATTERN)] | None = None
    temperature: FiniteNumber | None = None
    humidity: FiniteNumber | None = None
    pressure: FiniteNumber | None = None
    timestamp: str | int | None = None
    runId: str | None = None


ReadingsBody = (
    Annotated[list[ReadingIn], msgspec.Meta(min_length=1, max_length=MAX_BATCH_READINGS)] | ReadingIn
)


class ReadingView(msgspec.Struct):
    sensorId: str
    type: str
    reading: float
    timestamp: str
    runId: str | None
    user: str


# ---- decoding -------------------------------------------------------------

T = TypeVar("T")

# Far more than any request needs (a batch of readings with a nested extra field is 3 or
# 4); deeper JSON is refused before parsing, which would otherwise recurse until Python's
# own limit and fail with a RecursionError.
MAX_JSON_DEPTH = 32
# What decides nesting: brackets, and the quotes around strings (brackets inside a string
# nest nothing). An escape (backslash and the next byte) can only be inside a string.
_ESCAPE = re.compile(rb"\\.", re.DOTALL)
_NOT_STRUCTURE = bytes(b for b in range(256) if b not in b'"[]{}')
_BRACKET_STEP = {ord("["): 1, ord("{"): 1, ord("]"): -1, ord("}"): -1}


def _too_deep(raw: bytes) -> bool:
    if raw.count(b"[") + raw.count(b"{") <= MAX_JSON_DEPTH:
        return False  # the common case, without scanning
    if b"\\" in raw:
        raw = _ESCAPE.sub(b"", raw)  # escaped quotes included
    # Quotes and brackets only, less the strings that hold no bracket (most of them); then
    # every other piece between quotes is outside strings.
    structure = raw.translate(None, _NOT_STRUCTURE).replace(b'""', b"")
    outside = b"".join(structure.split(b'"')[::2])
    # The running depth after each bracket; map/accumulate/max keep the loop in C.
    depths = itertools.accumulate(map(_BRACKET_STEP.__getitem__, outside))
    return max(depths, default=0) > MAX_JSON_DEPTH


def _check_text(raw: bytes, what: str) -> None:
    """Refuse what msgspec would fail on with a UnicodeDecodeError or a RecursionError (a 500
    each), or quietly skip (invalid UTF-8 inside an unknown field)."""
    if not raw.isascii():
        try:
            raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ValidationFailed(
                f"{what} is not valid UTF-8: byte 0x{raw[exc.start]:02x} at position {exc.start}"
            ) from None
    if _too_deep(raw):
        raise ValidationFailed(
            f"{what} is nested too deeply: more than {MAX_JSON_DEPTH} levels of arrays and objects"
        )


def decode(raw: bytes | str | None, into: type[T] | Any, *, what: str = "body") -> T:
    if raw is None or (isinstance(raw, (bytes, str)) and not raw.strip()):
        raise ValidationFailed(f"request {what} is required")
    if isinstance(raw, str):
        try:
            raw = raw.encode()
        except UnicodeEncodeError:  # a lone surrogate
            raise ValidationFailed(f"{what} is not valid UTF-8") from None
    _check_text(raw, what)
    try:
        return msgspec.json.decode(raw, type=into)  # type: ignore[no-any-return]
    except msgspec.ValidationError as exc:
        raise ValidationFailed(f"invalid {what}: {exc}") from None
    except msgspec.DecodeError as exc:
        raise ValidationFailed(f"{what} is not valid JSON: {exc}") from None
    except RecursionError:  # a stack already deep when called; MAX_JSON_DEPTH keeps far from it
        raise ValidationFailed(f"{what} is nested too deeply") from None


def convert(value: Any, into: type[T], *, what: str) -> T:
    try:
        return msgspec.convert(value, type=into)
    except msgspec.ValidationError as exc:
        raise ValidationFailed(f"invalid {what}: {exc}") from None


_encoder = msgspec.json.Encoder()


def encode(value: Any) -> str:
    return _encoder.encode(value).decode()
