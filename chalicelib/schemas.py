"""The API's contract: what a request may hold and what a refusal answers.

- Request bodies are msgspec structs, decoded strictly; header and query values are checked
  here; time has one format (ISO-8601 UTC, ms, `Z`). Every refusal says what is wrong: a 400
  naming the field (`$.sensorIds[0]`) or parameter.
- Every refusal is one class of one hierarchy (`ApiError`), each a row of the table of answers
  (HTTP status and error code): `{"error", "message", **extra, "details"?}`, with `Retry-After`
  when it says when to try again (`http.py` writes it). An ApiError is a `ChaliceUnhandledError`:
  Chalice lets it through a view to the middleware. DynamoDB still refusing once the SDK's
  retries are spent becomes `Unavailable` (a 503) at the client itself (`raise_when_busy`).
"""

from __future__ import annotations

import random
import re
import time
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

import msgspec
from botocore.exceptions import ClientError, ConnectionError, HTTPClientError
from chalice.app import ChaliceUnhandledError

# ---- refusals -----------------------------------------------------------------------------


class ApiError(ChaliceUnhandledError):
    status = 500
    code = "InternalError"
    retry_after: int | None = None

    def __init__(
        self, message: str, *, details: Any = None, headers: dict[str, str] | None = None, **extra: Any
    ):
        super().__init__(message)
        self.message = message
        self.details = details
        self.headers = {
            **(headers or {}),
            **({"Retry-After": str(self.retry_after)} if self.retry_after else {}),
        }
        self.extra = extra  # facts some clients read directly, e.g. currentRunning

    def body(self) -> dict[str, Any]:
        answer = {"error": self.code, "message": self.message, **self.extra}
        return answer if self.details is None else {**answer, "details": self.details}


def _error(name: str, status: int, code: str, retry_after: int | None = None) -> type[ApiError]:
    return type(name, (ApiError,), {"status": status, "code": code, "retry_after": retry_after})


# The table of answers.
BadRequest = _error("BadRequest", 400, "BadRequest")  # a malformed value: an id, a time, a token
ValidationFailed = _error("ValidationFailed", 400, "ValidationError")  # a body breaking the rules
Forbidden = _error("Forbidden", 403, "Forbidden")
NotFound = _error("NotFound", 404, "NotFound")
MethodNotAllowed = _error("MethodNotAllowed", 405, "MethodNotAllowed")
RunLimitReached = _error("RunLimitReached", 409, "RunLimitReached")
UserRunLimitReached = _error("UserRunLimitReached", 409, "UserRunLimitReached")
RunNotRunning = _error("RunNotRunning", 409, "RunNotRunning")
RequestInProgress = _error("RequestInProgress", 409, "RequestInProgress", retry_after=1)
PayloadTooLarge = _error("PayloadTooLarge", 413, "PayloadTooLarge")
UnsupportedMediaType = _error("UnsupportedMediaType", 415, "UnsupportedMediaType")
IdempotencyKeyReused = _error("IdempotencyKeyReused", 422, "IdempotencyKeyReused")
Unavailable = _error("Unavailable", 503, "ServiceUnavailable", retry_after=1)  # DynamoDB kept refusing

ANSWERS: tuple[type[ApiError], ...] = tuple(ApiError.__subclasses__())

# DynamoDB's "not now" rather than "never": what is still refused after the SDK's retries is a 503.
_TRANSIENT = frozenset(
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


def aws_code(error: BaseException) -> str | None:
    return error.response.get("Error", {}).get("Code") if isinstance(error, ClientError) else None


def condition_failed(error: BaseException) -> bool:
    return aws_code(error) == "ConditionalCheckFailedException"


def raise_when_busy(
    *, parsed: dict[str, Any] | None = None, exception: BaseException | None = None, **_: Any
) -> None:
    """A botocore `after-call` / `after-call-error` hook: what DynamoDB (or S3) still refuses
    for a reason that passes, after the SDK's own retries, is a 503 for the caller."""
    code = (parsed or {}).get("Error", {}).get("Code")
    if code in _TRANSIENT or isinstance(exception, (ConnectionError, HTTPClientError)):
        raise Unavailable("DynamoDB is busy, retry shortly")


# botocore retries throttling, 5xx and dropped connections itself: 5 attempts in all. What it
# returns as success but did not finish (UnprocessedItems, a transaction cancelled by a conflict)
# the app retries, at most ATTEMPTS times.
SDK_RETRIES: dict[str, Any] = {"mode": "standard", "max_attempts": 4}
ATTEMPTS = 8


def attempts(limit: int = ATTEMPTS) -> Iterator[int]:
    """0 .. limit-1, sleeping before each attempt but the first (exponential backoff, full jitter,
    at most 1.3 s in all: a conflict between transactions passes in milliseconds)."""
    for attempt in range(limit):
        if attempt:
            time.sleep(min(0.25, 0.02 * 2**attempt) * random.random())
        yield attempt


# ---- requests ------------------------------------------------------------------------------

# `(?!\n)$`, not a bare `$`: that would also match before a final newline ("s1\n"), in
# Python's re (as msgspec applies `pattern`) as well as in ECMAScript (the OpenAPI document).
_END = r"(?!\n)$"
SENSOR_ID_PATTERN = r"^[A-Za-z0-9._:-]{1,64}" + _END
USER_PATTERN = r"^[A-Za-z0-9._@-]{1,64}" + _END
TYPE_PATTERN = r"^[A-Za-z0-9_-]{1,32}" + _END
# Any letter case; a run id is lower-cased once it matches: one run in any case.
RUN_ID_PATTERN = r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}" + _END
RUN_ID_RE, USER_RE = re.compile(RUN_ID_PATTERN), re.compile(USER_PATTERN)
SENSOR_ID_RE, TYPE_RE = re.compile(SENSOR_ID_PATTERN), re.compile(TYPE_PATTERN)
ANONYMOUS = "anonymous"
MAX_BATCH_READINGS = 500
MAX_SENSORS_PER_RUN = 100
RUNS_PAGE, READINGS_PAGE = (1, 100, 20), (1, 1000, 100)  # page sizes: least, most, default
DEFAULT_READING_TYPE = "temperature"
MEASUREMENT_FIELDS = ("temperature", "humidity", "pressure")

# ---- time --------------------------------------------------------------------------

# Readings outside this window are refused as typos (seconds sent as milliseconds, say).
EARLIEST_MS, LATEST_MS = 946_684_800_000, 4_102_444_800_000  # 2000-01-01, 2100-01-01
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# fromisoformat takes any character between date and time, a digit too ("20240101100:00"
# is 10:00): here only T, t or a space. re.ASCII: \d is 0-9 only.
_DATE_THEN_TIME = re.compile(r"\d{4}-?\d{2}-?\d{2}(?:[Tt ]|\Z)", re.ASCII)


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def format_ms(epoch_ms: int) -> str:
    seconds, millis = divmod(epoch_ms, 1000)
    return datetime.fromtimestamp(seconds, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{millis:03d}Z"


def parse_iso_ms(value: str) -> int:
    """ISO-8601 (UTC when no zone) to epoch ms; ValueError unless the whole text is one."""
    if not value or len(value) > 40 or not value.isascii() or not _DATE_THEN_TIME.match(value):
        raise ValueError("not an ISO-8601 timestamp")
    parsed = datetime.fromisoformat(value)
    return (parsed.replace(tzinfo=parsed.tzinfo or UTC) - _EPOCH) // timedelta(milliseconds=1)


def digits(text: str) -> int | None:
    """ASCII digits as an int, else None (int() also takes signs, `1_0`, other scripts' digits)."""
    return int(text) if text.isascii() and text.isdigit() else None


# ---- bodies --------------------------------------------------------------------------

SensorId = (
    Annotated[str, msgspec.Meta(pattern=SENSOR_ID_PATTERN)] | Annotated[int, msgspec.Meta(ge=0, le=10**15)]
)
# msgspec refuses NaN, Infinity and overflowing literals; the bound keeps values within what a
# DynamoDB number holds and a sensor plausibly sends.
FiniteNumber = Annotated[float, msgspec.Meta(ge=-1e15, le=1e15)]


class RunParams(msgspec.Struct):
    sensorIds: Annotated[list[SensorId], msgspec.Meta(min_length=1, max_length=MAX_SENSORS_PER_RUN)]
    duration: Annotated[int, msgspec.Meta(ge=1, le=86_400)]
    interval: Annotated[int, msgspec.Meta(ge=1, le=3_600)]


class StartRunRequest(msgspec.Struct):
    """The run's parameters, or the same fields under `params`."""

    sensorIds: list[Any] | None = None
    duration: Any = None
    interval: Any = None
    params: dict[str, Any] | None = None

    def run_params(self) -> RunParams:
        fields = self.params if self.params is not None else msgspec.structs.asdict(self)
        present = {k: v for k, v in fields.items() if v is not None and k != "params"}
        try:
            return msgspec.convert(present, RunParams)
        except msgspec.ValidationError as exc:
            raise ValidationFailed(f"invalid run parameters: {exc}") from None


class FinishRunRequest(msgspec.Struct):
    status: Annotated[
        str, msgspec.Meta(description="SUCCESS, COMPLETED (stored as SUCCESS) or FAILED, in any letter case")
    ] = "SUCCESS"
    errorMessage: Annotated[str, msgspec.Meta(max_length=2000)] | None = None
    message: Annotated[str, msgspec.Meta(max_length=2000)] | None = None


class ReadingIn(msgspec.Struct):
    """One reading (`reading` with its `type`), or a measurement object (`temperature`, ...)."""

    sensorId: SensorId
    reading: FiniteNumber | None = None
    type: Annotated[str, msgspec.Meta(pattern=TYPE_PATTERN)] | None = None
    temperature: FiniteNumber | None = None
    humidity: FiniteNumber | None = None
    pressure: FiniteNumber | None = None
    timestamp: str | int | None = None
    runId: str | None = None


class ReadingView(msgspec.Struct):
    sensorId: str
    type: str
    reading: float
    timestamp: str
    runId: str | None
    user: str


ReadingsBody = (
    Annotated[list[ReadingIn], msgspec.Meta(min_length=1, max_length=MAX_BATCH_READINGS)] | ReadingIn
)


def decode(raw: bytes, into: Any) -> Any:
    """A JSON body as `into`, or a 400 saying why not (also for bytes that are not UTF-8, which
    msgspec would otherwise skip inside unknown fields, and for absurd nesting)."""
    if not raw.strip():
        raise ValidationFailed("request body is required")
    if not raw.isascii():
        try:
            raw.decode()
        except UnicodeDecodeError as exc:
            raise ValidationFailed(
                f"body is not valid UTF-8: byte 0x{raw[exc.start]:02x} at position {exc.start}"
            ) from None
    try:
        return msgspec.json.decode(raw, type=into)
    except msgspec.ValidationError as exc:
        raise ValidationFailed(f"invalid body: {exc}") from None
    except msgspec.DecodeError as exc:
        raise ValidationFailed(f"body is not valid JSON: {exc}") from None
    except RecursionError:
        raise ValidationFailed("body is nested too deeply") from None


# ---- single values: headers, query parameters, fields --------------------------------


def _matching(value: str | None, pattern: re.Pattern[str], rule: str) -> str | None:
    if value is None or value == "":
        return None
    if not pattern.match(value):
        raise BadRequest(rule)
    return value


def run_id_value(value: str | None, *, source: str) -> str | None:
    checked = _matching(value, RUN_ID_RE, f"{source} must be a run id (UUID)")
    return checked.lower() if checked is not None else None


def path_run_id(value: str) -> str:
    """A run id in a URL path; anything else names no run: 404 on every route."""
    if not RUN_ID_RE.match(value):
        raise NotFound(f"run {value} not found")
    return value.lower()


def sensor_id_value(value: str | None) -> str | None:
    return _matching(value, SENSOR_ID_RE, "sensorId must be 1-64 characters of A-Z a-z 0-9 . _ : -")


def type_value(value: str | None) -> str | None:
    return _matching(value, TYPE_RE, "type must be 1-32 characters of A-Z a-z 0-9 _ -")


def user_value(value: str | None, *, source: str = "user") -> str | None:
    return _matching(value, USER_RE, f"{source} must be 1-64 characters of A-Z a-z 0-9 . _ @ -")


def user_header(headers: Mapping[str, str]) -> str:
    return user_value(headers.get("x-user"), source="X-User") or ANONYMOUS


def timestamp_value(value: str | int | None, *, name: str) -> int | None:
    """ISO-8601 text or epoch milliseconds (a number or ASCII digits) to epoch ms."""
    if value is None or value == "":
        return None
    try:
        if isinstance(value, bool):
            raise ValueError
        epoch_ms = value if isinstance(value, int) else digits(value)
        epoch_ms = parse_iso_ms(str(value)) if epoch_ms is None else epoch_ms
    except (ValueError, OverflowError):
        raise BadRequest(f"{name} must be ISO-8601 or epoch milliseconds, got {str(value)[:40]!r}") from None
    if not EARLIEST_MS <= epoch_ms < LATEST_MS:
        raise BadRequest(f"{name} must fall between the years 2000 and 2100")
    return epoch_ms


def time_range(
    query: Mapping[str, str], *, aliases: tuple[str, str] = ("from", "to")
) -> tuple[int | None, int | None]:
    """`from` and `to` (or their aliases); a range that ends before it starts is a mistake."""
    low = timestamp_value(first_param(query, "from", aliases[0]), name="from")
    high = timestamp_value(first_param(query, "to", aliases[1]), name="to")
    if low is not None and high is not None and low > high:
        raise BadRequest(f"from ({format_ms(low)}) is later than to ({format_ms(high)})")
    return low, high


def int_param(query: Mapping[str, str], name: str, bounds: tuple[int, int, int]) -> int:
    low, high, default = bounds
    raw = query.get(name) or ""
    if raw == "":
        return default
    value = digits(raw) if len(raw) <= 20 else None
    if value is None or not low <= value <= high:
        raise BadRequest(f"{name} must be an integer between {low} and {high}, got {raw[:40]!r}")
    return value


def choice_param(query: Mapping[str, str], name: str, choices: tuple[str, ...], default: str | None) -> Any:
    raw = query.get(name) or default
    if raw is not None and raw not in choices:
        raise BadRequest(f"{name} must be one of {', '.join(choices)}")
    return raw


def first_param(query: Mapping[str, str], *names: str) -> str | None:
    """The first present of a parameter's accepted names (aliases)."""
    return next((query[name] for name in names if query.get(name)), None)
