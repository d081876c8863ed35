"""What every HTTP request meets before its route, and what every answer leaves with.

- **Bounded bodies**: more than MAX_BODY_BYTES (by `Content-Length` or by the body itself)
  is a 413, decided before anything reads the body as JSON.
- **JSON only on POST**: a POST without `Content-Type: application/json` (parameters such as
  `; charset=utf-8` allowed) is a 415. Form and `text/plain` bodies are what a page on any
  site may POST without a CORS preflight; refusing them means every state change from a
  browser is preflighted, and CORS decides.
- **One error format**: a method the route does not serve is a 405 with `Allow`, and what
  Chalice itself answers (`{"Code", "Message"}`) is rewritten to `{"error", "message"}`.
- **CORS for a list of origins** (`CORS_ORIGIN=https://a.example,https://b.example`): each
  answer carries the request's `Origin` in `Access-Control-Allow-Origin` when it is listed
  (none otherwise) and `Vary: Origin`; `*` answers `*`. Chalice's CORSConfig holds a single
  origin, which API Gateway's generated preflight (a mock integration) repeats as is: with
  one origin (or `*`) that preflight stays; with several, routes get no CORSConfig and an
  OPTIONS method of their own, so the preflight reaches the app and is answered here.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, MutableMapping
from typing import Any

from chalice.app import CORSConfig, Request, Response

from chalicelib.http_errors import (
    INTERNAL_ERROR_BODY,
    Error,
    MethodNotAllowed,
    PayloadTooLarge,
    UnsupportedMediaType,
)
from chalicelib.logs import logger
from chalicelib.schemas import encode

MAX_BODY_BYTES = 1024 * 1024
JSON_MEDIA_TYPE = "application/json"
ALLOW_ORIGIN = "Access-Control-Allow-Origin"
EXPOSE_HEADERS = "Access-Control-Expose-Headers"

# Chalice's own error codes (its 405, 415, binary-Accept 400 and 500) in this API's words.
_CHALICE_CODES = {
    "MethodNotAllowedError": "MethodNotAllowed",
    "InternalServerError": "InternalError",
}


class CorsPolicy:
    """Which origins may read the answers, and the CORS headers that say so."""

    def __init__(self, origins: tuple[str, ...], config: CORSConfig | None = None):
        self.origins = origins
        self._any = origins == ("*",)
        # Allow-Headers, Max-Age (and whatever else the config sets) for preflights answered here.
        fixed = (config or CORSConfig()).get_access_control_headers()
        self._preflight_headers = {
            name: value for name, value in fixed.items() if name not in (ALLOW_ORIGIN, EXPOSE_HEADERS)
        }
        # Headers a page on an allowed origin may read from answers (the download's file name,
        # the export's continuation, Retry-After): browsers hide all but a few otherwise.
        self._expose = fixed.get(EXPOSE_HEADERS)

    @property
    def gateway_preflight(self) -> bool:
        """Whether one fixed Allow-Origin serves every allowed origin, so that Chalice's CORSConfig
        (API Gateway's mock preflight, `chalice local`'s own) can answer preflights."""
        return len(self.origins) == 1

    def route_config(self, config: CORSConfig) -> CORSConfig | bool:
        """`app.api.cors`: the config when the gateway answers preflights, else none (False)."""
        return config if self.gateway_preflight else False

    def allow_origin(self, origin: str | None) -> str | None:
        if self._any:
            return "*"
        return origin if origin in self.origins else None

    def apply(self, headers: MutableMapping[str, Any], origin: str | None) -> None:
        """Set this answer's Allow-Origin for the request's `Origin` (replacing the fixed one
        Chalice's CORSConfig may have put there), and `Vary: Origin` when it depends on it."""
        for name in [n for n in headers if n.lower() == ALLOW_ORIGIN.lower()]:
            del headers[name]
        allowed = self.allow_origin(origin)
        if allowed is not None:
            headers[ALLOW_ORIGIN] = allowed
            if self._expose:
                headers[EXPOSE_HEADERS] = self._expose
        if not self._any:
            vary_name = next((n for n in headers if n.lower() == "vary"), "Vary")
            vary = str(headers.get(vary_name, ""))
            if "origin" not in vary.lower():
                headers[vary_name] = f"{vary}, Origin" if vary else "Origin"

    def preflight(self, origin: str | None, methods: Iterable[str]) -> Response:
        """The answer to a preflight the app answers itself (several origins): as API Gateway's
        mock answers it, 200 with an empty body, and no Allow-Origin for an origin not listed."""
        allowed = [*sorted({m for m in methods if m != "OPTIONS"}), "OPTIONS"]
        headers: dict[str, str | list[str]] = {
            "Access-Control-Allow-Methods": ",".join(allowed),
            **self._preflight_headers,
        }
        response = Response(body="", status_code=200, headers=headers)
        self.apply(response.headers, origin)
        return response


def media_type(content_type: str | None) -> str:
    return (content_type or "").split(";", 1)[0].strip().lower()


def body_size(event: Mapping[str, Any]) -> int:
    """Bytes of the request body in a proxy event, without decoding it."""
    body = event.get("body")
    if not body:
        return 0
    if event.get("isBase64Encoded") and isinstance(body, str):
        return len(body) * 3 // 4 - body[-2:].count("=")
    if isinstance(body, str):
        # Characters never outnumber UTF-8 bytes: only count bytes when it can matter.
        return len(body) if len(body) > MAX_BODY_BYTES or body.isascii() else len(body.encode())
    return len(body)


_DIGITS = re.compile(r"^[0-9]+(?!\n)$")


def declared_size(headers: Mapping[str, str]) -> int | None:
    value = (headers.get("content-length") or "").strip()
    return int(value) if _DIGITS.match(value) else None


def too_large(size: int | None = None) -> PayloadTooLarge:
    """`size` when known (a stream cut short at the limit has no size)."""
    said = f"{size} bytes" if size is not None else f"more than {MAX_BODY_BYTES} bytes"
    return PayloadTooLarge(f"request body is {said}; the limit is {MAX_BODY_BYTES} bytes (1 MiB)")


def refusal(request: Request, methods: Iterable[str]) -> tuple[Error, dict[str, str]] | None:
    """Why this request must not reach its route (and the headers that go with it), if it must not."""
    declared = declared_size(request.headers)
    if declared is not None and declared > MAX_BODY_BYTES:
        return too_large(declared), {}
    size = body_size(request.to_original_event())
    if size > MAX_BODY_BYTES:
        return too_large(size), {}
    served = sorted(methods)
    if request.method not in served:
        path = request.context.get("resourcePath", "")
        message = f"{request.method} is not allowed on {path}; allowed: {', '.join(served)}"
        return MethodNotAllowed(message), {"Allow": ", ".join(served)}
    if request.method == "POST":
        content_type = request.headers.get("content-type")
        if media_type(content_type) != JSON_MEDIA_TYPE:
            got = f"got {content_type[:100]!r}" if content_type else "no Content-Type was sent"
            return UnsupportedMediaType(f"POST bodies must be Content-Type: {JSON_MEDIA_TYPE}; {got}"), {}
    return None


def in_error_format(response: Response) -> Response:
    """A Chalice-made error (`{"Code", "Message"}`) as this API's `{"error", "message"}`."""
    body = response.body
    if isinstance(body, dict) and set(body) == {"Code", "Message"}:
        code = str(body["Code"])
        response.body = encode({"error": _CHALICE_CODES.get(code, code), "message": str(body["Message"])})
        for name in [n for n in response.headers if n.lower() == "content-type"]:
            del response.headers[name]
        response.headers["Content-Type"] = "application/json"
    return response


class HttpSurface:
    """The `http` middleware: refusals before the route, error format and CORS after it."""

    def __init__(
        self,
        routes: Mapping[str, Mapping[str, Any]],
        cors: CorsPolicy,
        answer_error: Callable[[Error], Response],
    ):
        self._routes = routes
        self._cors = cors
        self._answer_error = answer_error

    def __call__(self, request: Request, get_response: Callable[[Request], Response]) -> Response:
        origin = request.headers.get("origin")
        resource = request.context.get("resourcePath", "")
        methods = list(self._routes[resource]) if resource in self._routes else []
        if request.method == "OPTIONS" and not self._cors.gateway_preflight:
            return self._cors.preflight(origin, methods)
        refused = refusal(request, methods)
        if refused is not None:
            error, headers = refused
            response = self._answer_error(error)
            response.headers.update(headers)
        else:
            try:
                response = in_error_format(get_response(request))
            except Exception:
                logger.exception("unhandled error")
                response = Response(
                    body=encode(INTERNAL_ERROR_BODY),
                    status_code=500,
                    headers={"Content-Type": "application/json"},
                )
        self._cors.apply(response.headers, origin)
        return response
