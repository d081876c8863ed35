"""Errors that become JSON responses: `{"error": code, "message": text, "details"?}`."""

from __future__ import annotations

from typing import Any


class ConfigurationError(RuntimeError):
    """The environment holds a setting the app cannot use."""


class ApiError(Exception):
    status_code = 400
    code = "BadRequest"
    # Seconds the client should wait before sending the request again, when it should.
    retry_after: int | None = None

    def __init__(self, message: str, *, details: Any = None, extra: dict[str, Any] | None = None):
        super().__init__(message)
        self.message = message
        self.details = details
        # Top-level fields some clients read directly (e.g. currentRunning on 409).
        self.extra = extra or {}

    def body(self) -> dict[str, Any]:
        body: dict[str, Any] = {"error": self.code, "message": self.message, **self.extra}
        if self.details is not None:
            body["details"] = self.details
        return body


class BadRequest(ApiError):
    status_code = 400
    code = "BadRequest"


class ValidationFailed(ApiError):
    status_code = 400
    code = "ValidationError"


class NotFound(ApiError):
    status_code = 404
    code = "NotFound"


class Forbidden(ApiError):
    """A route that needs the admin API key, called without it (see admin_key.py)."""

    status_code = 403
    code = "Forbidden"


class Conflict(ApiError):
    status_code = 409
    code = "Conflict"


class RunLimitReached(ApiError):
    status_code = 409
    code = "RunLimitReached"


class UserRunLimitReached(ApiError):
    status_code = 409
    code = "UserRunLimitReached"


class RunNotRunning(ApiError):
    status_code = 409
    code = "RunNotRunning"


class RequestInProgress(ApiError):
    """Another attempt of the same keyed request is running."""

    status_code = 409
    code = "RequestInProgress"
    retry_after = 1


class IdempotencyKeyReused(ApiError):
    status_code = 422
    code = "IdempotencyKeyReused"


class Unavailable(ApiError):
    """DynamoDB kept refusing (throttling, contention): the client should retry."""

    status_code = 503
    code = "ServiceUnavailable"
    retry_after = 1


class MethodNotAllowed(ApiError):
    status_code = 405
    code = "MethodNotAllowed"


class PayloadTooLarge(ApiError):
    status_code = 413
    code = "PayloadTooLarge"


class UnsupportedMediaType(ApiError):
    status_code = 415
    code = "UnsupportedMediaType"
