"""The app's structured logger: one JSON object per line, with the request's context.

Every line carries `level`, `message`, `timestamp`, `service` and `stage`. Lines
written while a request is handled also carry `requestId` (API Gateway's id, the
one in its access logs; the Lambda invocation id when there is none) and, when
the request names them, `runId` and `user`. Logs Insights filters on these
fields: the Grafana dashboard's error panel selects a run's lines by `runId`.

The context comes from the request's headers and path alone (no body parsing,
no I/O), so binding it costs microseconds per request.

It is held per request: Powertools' thread-safe keys live in a context variable,
and `chalice local` serves each request on a thread of its own (Lambda runs one at
a time), so concurrent requests never see each other's keys. The logger's global
keys (`logger.append_keys`, `clear_state`) are shared by every thread and are left
alone after start-up: `service` and `stage` only, set when the logger is built.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from aws_lambda_powertools.logging import Logger

from chalicelib.schemas import RUN_ID_RE, USER_RE
from chalicelib.settings import get_settings

SERVICE = "iot-playground"
REQUEST_ID = "requestId"
LAMBDA_REQUEST_ID = "lambdaRequestId"
RUN_ID = "runId"
USER = "user"
STAGE = "stage"

logger = Logger(service=SERVICE, stage=get_settings().stage)


def bind_request(
    *,
    context: Mapping[str, Any],
    headers: Mapping[str, str],
    path_params: Mapping[str, str] | None,
    query: Mapping[str, str] | None,
    lambda_context: Any,
) -> None:
    """Replace the previous log context of this thread with this request's.

    `context` is API Gateway's requestContext. A run named in the path, the
    X-Run-Id header or the `runId` query parameter, and the X-User header, are
    logged only when well-formed: a malformed one is the request's error to
    report, not a field to copy into every line."""
    keys: dict[str, Any] = {STAGE: get_settings().stage}
    lambda_request_id = getattr(lambda_context, "aws_request_id", None)
    request_id = context.get("requestId") or lambda_request_id
    if request_id:
        keys[REQUEST_ID] = request_id
    if lambda_request_id and lambda_request_id != request_id:
        keys[LAMBDA_REQUEST_ID] = lambda_request_id
    route = context.get("resourcePath")
    if route:
        keys["route"] = f"{context.get('httpMethod', '')} {route}".strip()
    run_id = _run_id((path_params or {}).get("run_id"), headers.get("x-run-id"), (query or {}).get("runId"))
    if run_id:
        keys[RUN_ID] = run_id
    user = headers.get("x-user")
    if user and USER_RE.match(user):
        keys[USER] = user
    _bind(keys)


def bind_invocation(lambda_context: Any) -> None:
    """Log context for an invocation that is not an HTTP request (the scheduled sweep)."""
    keys: dict[str, Any] = {STAGE: get_settings().stage}
    request_id = getattr(lambda_context, "aws_request_id", None)
    if request_id:
        keys[REQUEST_ID] = request_id
    _bind(keys)


def clear() -> None:
    """Forget the finished request's context (the container, and the thread, outlive it)."""
    logger.thread_safe_clear_keys()


def _bind(keys: dict[str, Any]) -> None:
    # Thread-safe keys only: they are this thread's (a context variable). Never
    # `clear_state` per request: it rebuilds the keys every thread's lines share.
    logger.thread_safe_clear_keys()
    logger.thread_safe_append_keys(**keys)


def _run_id(*candidates: str | None) -> str | None:
    for candidate in candidates:
        if candidate and RUN_ID_RE.match(candidate):
            return candidate.lower()
    return None
