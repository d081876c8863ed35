"""Request and response shapes, validated and encoded by msgspec.

Decoding is strict: a string where a number belongs, a boolean, NaN or a
missing required field is a 400 naming the offending path.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal, TypeVar

import msgspec

from chalicelib.errors import ValidationFailed

SENSOR_ID_PATTERN = r"^[A-Za-z0-9._:-]{1,64}$"
USER_PATTERN = r"^[A-Za-z0-9._@-]{1,64}$"
TYPE_PATTERN = r"^[A-Za-z0-9_-]{1,32}$"
RUN_ID_RE = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
USER_RE = re.compile(USER_PATTERN)
SENSOR_ID_RE = re.compile(SENSOR_ID_PATTERN)
TYPE_RE = re.compile(TYPE_PATTERN)

RunStatus = Literal["RUNNING", "SUCCESS", "FAILED", "INTERRUPTED", "TIMEOUT"]
RUN_STATUSES: tuple[str, ...] = ("RUNNING", "SUCCESS", "FAILED", "INTERRUPTED", "TIMEOUT")

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
    status: str = "SUCCESS"
    errorMessage: Annotated[str, msgspec.Meta(max_length=2000)] | None = None
    message: Annotated[str, msgspec.Meta(max_length=2000)] | None = None


class RunParamsView(msgspec.Struct):
    runId: str
    sensorIds: list[str]
    duration: int
    interval: int


class RunView(msgspec.Struct):
    id: str
    runId: str
    username: str
    status: str
    startedAt: str
    finishedAt: str | None
    duration: int
    interval: int
    params: RunParamsView
    grafanaUrl: str
    errorMessage: str | None


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


def decode(raw: bytes | str | None, into: type[T] | Any, *, what: str = "body") -> T:
    if raw is None or (isinstance(raw, (bytes, str)) and not raw.strip()):
        raise ValidationFailed(f"request {what} is required")
    try:
        return msgspec.json.decode(raw, type=into)  # type: ignore[no-any-return]
    except msgspec.ValidationError as exc:
        raise ValidationFailed(f"invalid {what}: {exc}") from None
    except msgspec.DecodeError as exc:
        raise ValidationFailed(f"{what} is not valid JSON: {exc}") from None


def convert(value: Any, into: type[T], *, what: str) -> T:
    try:
        return msgspec.convert(value, type=into)
    except msgspec.ValidationError as exc:
        raise ValidationFailed(f"invalid {what}: {exc}") from None


_encoder = msgspec.json.Encoder()


def encode(value: Any) -> str:
    return _encoder.encode(value).decode()
