"""What every HTTP request meets around its route (`handle`, the app's one `http` middleware):

- its log context (request id, route, run, user), for this request only;
- refusals before the route: a body over MAX_BODY_BYTES (413, before anything parses it), a
  method the route does not serve (405 with `Allow`), a POST that is not `application/json`
  (415: form and text bodies are what any page may POST without a CORS preflight);
- `Idempotency-Key` on POSTs, with Powertools Idempotency (below);
- one error format: an `ApiError` is its answer, DynamoDB still refusing after the SDK's retries
  a 503 with `Retry-After`, anything else a logged 500 that shows nothing of the failure, and
  Chalice's own errors (`{"Code", "Message"}`) are rewritten to `{"error", "message"}`;
- CORS: with one origin (or `*`) Chalice's CORSConfig answers, and API Gateway's generated
  preflight; with several, the app answers preflights itself and gives each allowed `Origin`
  back in `Access-Control-Allow-Origin`, with `Vary: Origin`.

Page tokens (`nextKey`) are signed here, bound to the query they continue.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import uuid
from collections.abc import Callable, Mapping
from typing import Any

import msgspec
from chalice.app import CORSConfig, Request, Response

from chalicelib.schemas import (
    RUN_ID_RE,
    USER_RE,
    ApiError,
    BadRequest,
    IdempotencyKeyReused,
    MethodNotAllowed,
    PayloadTooLarge,
    RequestInProgress,
    UnsupportedMediaType,
    now_ms,
)
from chalicelib.settings import logger

MAX_BODY_BYTES = 1024 * 1024
IDEMPOTENCY_HEADER, REPLAYED_HEADER = "Idempotency-Key", "Idempotent-Replayed"
IDEMPOTENCY_SECONDS = 24 * 3600
_KEY = re.compile(r"[!-~]{1,128}")  # printable ASCII without spaces: UUIDs, ULIDs...
# Route aliases are one route for Idempotency-Key.
ALIASES = {"/sensors/data": "/api/sensors/data"}
JSON_TYPE = {"Content-Type": "application/json"}
_encoder = msgspec.json.Encoder()


def json_response(body: Any, status: int = 200, headers: Mapping[str, Any] | None = None) -> Response:
    return Response(
        body=_encoder.encode(body).decode(), status_code=status, headers={**JSON_TYPE, **(headers or {})}
    )


def error_response(error: ApiError) -> Response:
    log = logger.error if error.status >= 500 else logger.warning
    log(error.message, extra={"error": error.code, "status": error.status})
    return json_response(error.body(), error.status, error.headers)


# ---- CORS ----------------------------------------------------------------------------------


def cors_config(origins: tuple[str, ...]) -> CORSConfig:
    return CORSConfig(
        allow_origin=origins[0],
        allow_headers=["X-User", "X-Run-Id", IDEMPOTENCY_HEADER],
        expose_headers=["Content-Disposition", "Retry-After", "X-Export-Complete", "X-Next-Key"],
        max_age=600,
    )


def apply_cors(headers: dict[str, Any], origins: tuple[str, ...], origin: str | None) -> None:
    """This answer's Allow-Origin for the request's `Origin` (none for an origin not listed)."""
    fixed = cors_config(origins).get_access_control_headers()
    for name in [n for n in headers if n.lower() == "access-control-allow-origin"]:
        del headers[name]
    if origins == ("*",) or origin in origins:
        headers["Access-Control-Allow-Origin"] = origin if origins != ("*",) else "*"
        headers["Access-Control-Expose-Headers"] = fixed["Access-Control-Expose-Headers"]
    if origins != ("*",):
        vary = next((n for n in headers if n.lower() == "vary"), "Vary")
        if "origin" not in str(headers.get(vary, "")).lower():
            headers[vary] = f"{headers[vary]}, Origin" if headers.get(vary) else "Origin"


def preflight(origins: tuple[str, ...], origin: str | None, methods: list[str]) -> Response:
    """A preflight the app answers (several origins), as API Gateway's mock would: 200, no body."""
    fixed = cors_config(origins).get_access_control_headers()
    allowed = ",".join([*sorted(m for m in methods if m != "OPTIONS"), "OPTIONS"])
    headers = {name: fixed[name] for name in ("Access-Control-Allow-Headers", "Access-Control-Max-Age")}
    response = Response(
        body="", status_code=200, headers={**headers, "Access-Control-Allow-Methods": allowed}
    )
    apply_cors(response.headers, origins, origin)
    return response


# ---- the middleware --------------------------------------------------------------------------


def handle(
    request: Request,
    get_response: Callable[[Request], Response],
    origins: tuple[str, ...],
    routes: Mapping[str, Any],
    parts: Callable[[], Any],
) -> Response:
    """The app's `http` middleware (see the module's docstring); `parts`: the app's (parts.py)."""
    origin = request.headers.get("origin")
    methods = list(routes.get(request.context.get("resourcePath", ""), {}))
    if request.method == "OPTIONS" and len(origins) > 1:
        return preflight(origins, origin, methods)
    bind_log_context(request, parts().settings.stage)
    try:
        refuse(request, methods)
        key = request.headers.get(IDEMPOTENCY_HEADER.lower()) if request.method == "POST" else None
        response = (
            get_response(request) if key is None else once(request, key, get_response, parts().idempotency)
        )
    except ApiError as error:
        response = error_response(error)
    finally:
        logger.thread_safe_clear_keys()
    response = in_api_format(response)
    apply_cors(response.headers, origins, origin)
    return response


def refuse(request: Request, methods: list[str]) -> None:
    declared = request.headers.get("content-length", "").strip()
    size = (
        int(declared) if declared.isascii() and declared.isdigit() else body_size(request.to_original_event())
    )
    size = max(size, body_size(request.to_original_event()))
    if size > MAX_BODY_BYTES:
        raise PayloadTooLarge(f"request body is {size} bytes; the limit is {MAX_BODY_BYTES} bytes (1 MiB)")
    if methods and request.method not in methods:
        allowed = ", ".join(sorted(methods))
        path = request.context.get("resourcePath", "")
        raise MethodNotAllowed(
            f"{request.method} is not allowed on {path}; allowed: {allowed}", headers={"Allow": allowed}
        )
    content_type = request.headers.get("content-type")
    if request.method == "POST" and (content_type or "").split(";")[0].strip().lower() != "application/json":
        got = f"got {content_type[:100]!r}" if content_type else "no Content-Type was sent"
        raise UnsupportedMediaType(f"POST bodies must be Content-Type: application/json; {got}")


def body_size(event: Mapping[str, Any]) -> int:
    """Bytes of a proxy event's body, without decoding it."""
    body = event.get("body") or ""
    if event.get("isBase64Encoded") and isinstance(body, str):
        return len(body) * 3 // 4 - body[-2:].count("=")
    return len(body.encode()) if isinstance(body, str) and not body.isascii() else len(body)


def in_api_format(response: Response) -> Response:
    """A Chalice-made error (`{"Code", "Message"}`, its 400, 405, 415 or 500) in this API's format,
    and a dict or list a view returned as JSON, saying so."""
    body = response.body
    if isinstance(body, dict) and set(body) == {"Code", "Message"}:
        code = {"MethodNotAllowedError": "MethodNotAllowed", "InternalServerError": "InternalError"}
        answer = {"error": code.get(body["Code"], body["Code"]), "message": str(body["Message"])}
        others = {k: v for k, v in response.headers.items() if k.lower() != "content-type"}
        return json_response(answer, response.status_code, others)
    if isinstance(body, dict | list) and not any(k.lower() == "content-type" for k in response.headers):
        response.headers.update(JSON_TYPE)
    return response


def bind_log_context(request: Request, stage: str) -> None:
    """Log fields for this request's lines only (Powertools' thread-safe keys: `chalice local`
    serves each request on a thread). A malformed run id or user is not copied into them."""
    context, headers = request.context, request.headers
    keys: dict[str, Any] = {"stage": stage}
    lambda_id = getattr(request.lambda_context, "aws_request_id", None)
    keys["requestId"] = context.get("requestId") or lambda_id
    if lambda_id and lambda_id != keys["requestId"]:
        keys["lambdaRequestId"] = lambda_id
    if route := context.get("resourcePath"):
        keys["route"] = f"{request.method} {route}"
    uri: Mapping[str, str] = request.uri_params or {}
    query: Mapping[str, str] = request.query_params or {}
    candidates = (uri.get("run_id"), headers.get("x-run-id"), query.get("runId"))
    if run_id := next((c.lower() for c in candidates if c and RUN_ID_RE.match(c)), None):
        keys["runId"] = run_id
    if (user := headers.get("x-user")) and USER_RE.match(user):
        keys["user"] = user
    logger.thread_safe_clear_keys()
    logger.thread_safe_append_keys(**{k: v for k, v in keys.items() if v})


def public_base_url(headers: Mapping[str, str], context: Mapping[str, Any]) -> str:
    """`scheme://host[/stage]` where the client reached the API; empty without a usable Host."""
    host = headers.get("host")
    if not host or any(c in host for c in "/\\@ \t\r\n"):
        return ""
    scheme = headers.get("x-forwarded-proto", "http").split(",")[0].strip().lower()
    return f"{scheme if scheme in ('http', 'https') else 'http'}://{host}{stage_prefix(context)}"


def stage_prefix(context: Mapping[str, Any]) -> str:
    """What the path has in front of the route (`/api`, API Gateway's stage): a route segment,
    template or not, is one path segment, so the prefix is the path's extra segments."""
    path = [s for s in (context.get("path") or "").split("/") if s]
    extra = len(path) - len([s for s in (context.get("resourcePath") or "").split("/") if s])
    return "/" + "/".join(path[:extra]) if extra > 0 else ""


# ---- Idempotency-Key -----------------------------------------------------------------------


class Attempt(msgspec.Struct, frozen=True):
    """What every attempt of one keyed request shares: the first attempt's time, and an id from
    which the run it starts, the end it records and the readings it stamps are derived."""

    received_ms: int
    identity: str

    def derived_id(self) -> str:
        return str(uuid.UUID(bytes=hashlib.sha256(self.identity.encode()).digest()[:16], version=4))


def attempt(request: Request) -> Attempt | None:
    """The keyed request's Attempt (set by `once`), None for a request without a key."""
    found = request.context.get("attempt")
    return found if isinstance(found, Attempt) else None


class _NotKept(Exception):
    def __init__(self, response: Response):
        self.response = response


def once(request: Request, key: str, get_response: Callable[[Request], Response], functions: Any) -> Response:
    """A POST with `Idempotency-Key`, through Powertools Idempotency: the key is the caller's
    (`X-User`) and one route's (aliases are one route); a 2xx answer is kept 24 h and replayed
    to every re-send (`Idempotent-Replayed: true`); the same key with another route, body or run
    is a 422; while an attempt runs, a re-send is a 409 with Retry-After. An error answer is not
    kept: the next re-send runs again, as the same Attempt."""
    from aws_lambda_powertools.utilities.idempotency.exceptions import (
        IdempotencyAlreadyInProgressError,
        IdempotencyPersistenceLayerError,
        IdempotencyValidationError,
    )

    if not _KEY.fullmatch(key):
        raise BadRequest(f"{IDEMPOTENCY_HEADER} must be 1-128 printable ASCII characters without spaces")
    resource = request.context.get("resourcePath", "")
    raw = request.raw_body if isinstance(request.raw_body, bytes) else (request.raw_body or "").encode()
    data = {
        "caller": request.headers.get("x-user", ""),
        "key": key,
        "request": [
            ALIASES.get(resource, resource),
            request.uri_params or {},
            request.headers.get("x-run-id", "").lower(),
            hashlib.sha256(raw).hexdigest(),
        ],
    }
    first_attempt, answer_once, configs = functions
    for config in configs:  # how long this attempt may run: an in-progress record lasts as long
        config.register_lambda_context(request.lambda_context)

    def run() -> dict[str, Any]:
        first = first_attempt(request=data)
        request.context["attempt"] = Attempt(first["at"], first["id"])
        response = get_response(request)
        if not 200 <= response.status_code < 300 or not isinstance(response.body, str):
            raise _NotKept(response)
        return {
            "status": response.status_code,
            "body": response.body,
            "type": response.headers.get("Content-Type", "application/json"),
        }

    try:
        kept = answer_once(request=data, run=run)
    except _NotKept as refused:
        return refused.response
    except IdempotencyValidationError:
        raise IdempotencyKeyReused(
            f"this {IDEMPOTENCY_HEADER} was used for a different request; use a new key for a new request"
        ) from None
    except IdempotencyAlreadyInProgressError:
        raise RequestInProgress(
            f"a request with this {IDEMPOTENCY_HEADER} is in progress; retry shortly"
        ) from None
    except IdempotencyPersistenceLayerError as error:
        if isinstance(error.__cause__, ApiError):
            raise error.__cause__ from None  # DynamoDB busy: a 503
        raise
    headers = {"Content-Type": kept["type"], **({REPLAYED_HEADER: "true"} if kept.get("replayed") else {})}
    return Response(body=kept["body"], status_code=kept["status"], headers=headers)


def idempotency(client: Any, table: str) -> tuple[Any, Any, list[Any]]:
    """Powertools' two idempotent functions over the idempotency table, and their configs (built
    on the first keyed request: nothing of Powertools Idempotency loads on a cold start): the
    first attempt's time and id, kept per caller and key; the answer, kept per caller and key
    and validated against the route and request."""
    from aws_lambda_powertools.utilities.idempotency import (
        DynamoDBPersistenceLayer,
        IdempotencyConfig,
        idempotent_function,
    )

    def replayed(response: dict[str, Any], _: Any) -> dict[str, Any]:
        return {**response, "replayed": True}

    def first_attempt(request: dict[str, Any]) -> dict[str, Any]:
        return {"at": now_ms(), "id": uuid.uuid4().hex}

    def answer(request: dict[str, Any], run: Callable[[], dict[str, Any]]) -> dict[str, Any]:
        return run()

    key, seconds = "[caller, key]", IDEMPOTENCY_SECONDS
    configs = [
        IdempotencyConfig(event_key_jmespath=key, expires_after_seconds=seconds),
        IdempotencyConfig(
            event_key_jmespath=key,
            expires_after_seconds=seconds,
            payload_validation_jmespath="request",
            response_hook=replayed,  # type: ignore[arg-type]  # Powertools' Protocol names its arguments
        ),
    ]
    made = [
        idempotent_function(
            data_keyword_argument="request",
            persistence_store=DynamoDBPersistenceLayer(table_name=table, boto3_client=client),
            config=config,
        )(function)
        for config, function in zip(configs, (first_attempt, answer), strict=True)
    ]
    return made[0], made[1], configs


# ---- page tokens ----------------------------------------------------------------------------


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _signature(secret: str, payload: bytes) -> bytes:
    return hmac.new(secret.encode(), payload, hashlib.sha256).digest()[:16]


def encode_token(position: Any, query: Any, secret: str) -> str | None:
    """`nextKey`: where a list goes on, bound to its query (any JSON value naming it) and signed."""
    if not position:
        return None
    payload = msgspec.json.encode([hashlib.sha256(msgspec.json.encode(query)).hexdigest()[:16], position])
    return f"{_b64(payload)}.{_b64(_signature(secret, payload))}"


def decode_token(token: str | None, query: Any, secret: str, into: Any = dict[str, dict[str, str]]) -> Any:
    """The position of a `nextKey` made by `encode_token` for this query; a 400 otherwise."""
    if not token:
        return None
    try:
        payload, signature = (
            base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)) for part in token.split(".")
        )
        if not hmac.compare_digest(signature, _signature(secret, payload)):
            raise ValueError
        bound, position = msgspec.json.decode(payload, type=tuple[str, msgspec.Raw])
    except (ValueError, msgspec.MsgspecError):
        raise BadRequest("nextKey is not a valid pagination token") from None
    if bound != hashlib.sha256(msgspec.json.encode(query)).hexdigest()[:16]:
        raise BadRequest("nextKey belongs to a different query")
    try:
        return msgspec.json.decode(position, type=into)
    except msgspec.MsgspecError:
        raise BadRequest("nextKey is not a valid pagination token for this query") from None
