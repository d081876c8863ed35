"""What the domain refuses, in its own words: no HTTP here.

Repositories and domain modules raise these; the HTTP layer (`http_errors.py`) gives each
class its status code and error code, and answers `{"error", "message", **extra, "details"?}`.
"""

from __future__ import annotations

from typing import Any


class ConfigurationError(RuntimeError):
    """The environment holds a setting the app cannot use."""


class DomainError(Exception):
    # Seconds the caller should wait before trying again, when it should.
    retry_after: int | None = None

    def __init__(self, message: str, *, details: Any = None, extra: dict[str, Any] | None = None):
        super().__init__(message)
        self.message = message
        self.details = details
        # Facts some clients read directly (e.g. currentRunning when the run limit is reached).
        self.extra = extra or {}


class BadRequest(DomainError):
    """A malformed value: a run id, a timestamp, a page token..."""


class ValidationFailed(DomainError):
    """A request body or a combination of values that breaks the rules."""


class NotFound(DomainError):
    pass


class RunLimitReached(DomainError):
    pass


class UserRunLimitReached(DomainError):
    pass


class RunNotRunning(DomainError):
    pass


class RequestInProgress(DomainError):
    """Another attempt of the same keyed request is running."""

    retry_after = 1


class IdempotencyKeyReused(DomainError):
    """The same Idempotency-Key sent with a different request."""


class Unavailable(DomainError):
    """DynamoDB kept refusing (throttling, contention): the caller should try again."""

    retry_after = 1
