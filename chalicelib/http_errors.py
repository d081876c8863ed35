"""Errors as HTTP answers: the one table of status code and error code per error class.

Domain modules raise `errors.DomainError`s and know nothing of HTTP; what only the HTTP
surface refuses (a method, a body size, a media type, a missing admin key) is an `HttpError`
defined here. Every answer is `{"error": code, "message": text, **extra, "details"?}`, with
`Retry-After` when the error says when to try again. The OpenAPI document
(`openapi.py`) names these codes; `tests/test_layers.py` holds every error class to one row
of `ANSWERS` and every module outside the HTTP layer to importing none of it.
"""

from __future__ import annotations

from typing import Any

from chalicelib.errors import (
    BadRequest,
    DomainError,
    IdempotencyKeyReused,
    NotFound,
    RequestInProgress,
    RunLimitReached,
    RunNotRunning,
    Unavailable,
    UserRunLimitReached,
    ValidationFailed,
)


class HttpError(Exception):
    """Refused by the HTTP surface, before or around the route: never raised by the domain."""

    details: Any = None
    retry_after: int | None = None

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message
        self.extra: dict[str, Any] = {}


class Forbidden(HttpError):
    """A route that needs the admin API key, called without it (see admin_key.py)."""


class MethodNotAllowed(HttpError):
    pass


class PayloadTooLarge(HttpError):
    pass


class UnsupportedMediaType(HttpError):
    pass


# Whatever may become an error answer.
Error = DomainError | HttpError

# Status code and error code of each class (an exact class: a subclass gets its own row).
ANSWERS: dict[type[Error], tuple[int, str]] = {
    BadRequest: (400, "BadRequest"),
    ValidationFailed: (400, "ValidationError"),
    Forbidden: (403, "Forbidden"),
    NotFound: (404, "NotFound"),
    MethodNotAllowed: (405, "MethodNotAllowed"),
    RunLimitReached: (409, "RunLimitReached"),
    UserRunLimitReached: (409, "UserRunLimitReached"),
    RunNotRunning: (409, "RunNotRunning"),
    RequestInProgress: (409, "RequestInProgress"),
    PayloadTooLarge: (413, "PayloadTooLarge"),
    UnsupportedMediaType: (415, "UnsupportedMediaType"),
    IdempotencyKeyReused: (422, "IdempotencyKeyReused"),
    Unavailable: (503, "ServiceUnavailable"),
}

# What a failure nobody foresaw answers (500): nothing of the failure itself.
INTERNAL_ERROR_BODY = {"error": "InternalError", "message": "internal error"}


def status_code(error: Error) -> int:
    return ANSWERS[type(error)][0]


def error_code(error: Error) -> str:
    return ANSWERS[type(error)][1]


def body(error: Error) -> dict[str, Any]:
    answer: dict[str, Any] = {"error": error_code(error), "message": error.message, **error.extra}
    if error.details is not None:
        answer["details"] = error.details
    return answer


def headers(error: Error) -> dict[str, str]:
    return {"Retry-After": str(error.retry_after)} if error.retry_after is not None else {}


def dynamodb_busy() -> Unavailable:
    """What DynamoDB still refusing after the SDK's own retries answers."""
    return Unavailable("DynamoDB is busy, retry shortly")
