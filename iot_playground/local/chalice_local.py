"""`chalice local`, with what API Gateway does in front of the app that the stock server lacks.

- **Listen backlog.** The frontend posts one reading per sensor at once (up to 100 in
  parallel), and the stock server's backlog of 5 pending connections resets the rest. API
  Gateway has no such limit, so locally neither should we.
- **Bounded bodies.** The stock server reads whatever `Content-Length` announces into memory
  before the app sees it. Here a body over 1 MiB (`http_surface.MAX_BODY_BYTES`) is a 413 JSON
  answer before it is read: up to 10 MiB (API Gateway's own limit) it is read and discarded
  in small pieces so that the client gets to read the answer, beyond that the connection is
  closed unread, and a `100-continue` request is refused before the client sends its body.
  A chunked body (which the stock server ignores) is read up to the limit.
- **Unknown methods** (TRACE, QUERY, ...) answer 405 `{"error": "MethodNotAllowed"}` like the
  app's own 405, instead of the stock server's HTML 501.
- **Unknown routes** answer 404 `{"error": "NotFound", "message"}` with the API's CORS
  headers, instead of the stock 403 `{"message": "Missing Authentication Token"}`.

Arguments are those of `chalice local`.
"""

from __future__ import annotations

import functools
import re
import sys
from collections.abc import Callable, Mapping
from http.server import BaseHTTPRequestHandler
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

if TYPE_CHECKING:
    from chalice.app import Chalice
    from chalice.config import Config
    from chalice.local import LocalDevServer

    from chalicelib.http_errors import Error as ApiError

LISTEN_BACKLOG = 256
# What API Gateway itself accepts; a bigger body is not read at all.
DRAIN_LIMIT = 10 * 1024 * 1024
_CHUNK = 64 * 1024
_DIGITS = re.compile(r"^[0-9]+(?!\n)$")


class _Refused(Exception):
    def __init__(self, error: ApiError):
        super().__init__(error.message)
        self.error = error


def _header(headers: Mapping[str, Any], name: str) -> str | None:
    return next((str(v) for k, v in headers.items() if k.lower() == name), None)


def error_answer(error: ApiError, request_headers: Mapping[str, Any]) -> tuple[dict[str, Any], bytes]:
    """Headers (with the API's CORS headers for the request's Origin) and JSON body of an error."""
    from chalicelib import http_errors
    from chalicelib.http_surface import CorsPolicy
    from chalicelib.schemas import encode
    from chalicelib.settings import get_settings

    headers: dict[str, Any] = {"Content-Type": "application/json"}
    CorsPolicy(get_settings().cors_origins).apply(headers, _header(request_headers, "origin"))
    return headers, encode(http_errors.body(error)).encode()


def _gateway_class() -> type[Any]:
    from chalice.local import LocalGateway, RouteMatcher

    from chalicelib import http_errors
    from chalicelib.errors import NotFound

    class ApiLocalGateway(LocalGateway):  # type: ignore[misc]
        """Unknown routes answer in the API's error format."""

        def __init__(self, app_object: Chalice, config: Config):
            super().__init__(app_object, config)
            self._routes = RouteMatcher(list(app_object.routes))

        def handle_request(
            self, method: str, path: str, headers: dict[str, Any], body: bytes | None
        ) -> dict[str, Any]:
            try:
                self._routes.match_route(path)
            except ValueError:
                error = NotFound(f"no route {method} {urlsplit(path).path}")
                error_headers, error_body = error_answer(error, headers)
                return {
                    "statusCode": http_errors.status_code(error),
                    "headers": error_headers,
                    "multiValueHeaders": {},
                    "body": error_body,
                }
            response: dict[str, Any] = super().handle_request(method, path, headers, body)
            return response

    return ApiLocalGateway


def _handler_class() -> type[Any]:
    from chalice.local import ChaliceRequestHandler

    from chalicelib import http_errors
    from chalicelib.errors import BadRequest
    from chalicelib.http_surface import MAX_BODY_BYTES, too_large

    gateway_class = _gateway_class()

    class ApiRequestHandler(ChaliceRequestHandler):  # type: ignore[misc]
        """Refuses bodies over the limit before reading them; reads chunked bodies."""

        def __init__(
            self, request: Any, client_address: Any, server: Any, app_object: Chalice, config: Config
        ):
            self.local_gateway = gateway_class(app_object, config)
            self._body: bytes | None = None
            BaseHTTPRequestHandler.__init__(self, request, client_address, server)

        def handle_expect_100(self) -> bool:
            declared = self._declared_length()
            if declared is not None and declared > MAX_BODY_BYTES:
                self._refuse(too_large(declared))  # before the client sends the body
                return False
            result: bool = super().handle_expect_100()
            return result

        def _declared_length(self) -> int | None:
            raw = (self.headers.get("content-length") or "").strip()
            return int(raw) if _DIGITS.match(raw) else None

        def _read_body(self) -> bytes | None:
            if "chunked" in (self.headers.get("transfer-encoding") or "").lower():
                return self._read_chunked()
            raw = (self.headers.get("content-length") or "0").strip()
            if not _DIGITS.match(raw):
                raise _Refused(BadRequest(f"Content-Length must be a number of bytes, got {raw[:40]!r}"))
            length = int(raw)
            if length > MAX_BODY_BYTES:
                if length <= DRAIN_LIMIT:
                    self._discard(length)
                raise _Refused(too_large(length))
            return self.rfile.read(length) if length else None

        def _discard(self, length: int) -> None:
            while length > 0:
                piece = self.rfile.read(min(_CHUNK, length))
                if not piece:
                    return
                length -= len(piece)

        def _read_chunked(self) -> bytes:
            """The body, or a 413 once it passes the limit (read on up to DRAIN_LIMIT and dropped,
            so that the client gets to read the answer)."""
            body = bytearray()
            total = 0
            while True:
                size_line = self.rfile.readline(1024).split(b";", 1)[0].strip()
                try:
                    size = int(size_line, 16)
                except ValueError:
                    raise _Refused(BadRequest("malformed chunked body")) from None
                if size == 0:
                    while self.rfile.readline(1024).strip():
                        pass  # trailers
                    if total > MAX_BODY_BYTES:
                        raise _Refused(too_large(total))
                    return bytes(body)
                total += size
                if total > DRAIN_LIMIT:
                    raise _Refused(too_large())
                if total > MAX_BODY_BYTES:
                    body.clear()
                    self._discard(size)
                else:
                    body += self.rfile.read(size)
                self.rfile.readline(1024)  # the CRLF after the chunk

        def _refuse(self, error: ApiError) -> None:
            headers, body = error_answer(error, dict(self.headers))
            headers["Connection"] = "close"
            self.close_connection = True
            self._send_http_response(http_errors.status_code(error), headers, body)

        def _generic_handle(self) -> None:
            try:
                self._body = self._read_body()
            except _Refused as refused:
                self._refuse(refused.error)
                return
            super()._generic_handle()

        def _parse_payload(self) -> tuple[dict[str, Any], bytes | None]:
            return dict(self.headers), self._body

        def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
            # http.server answers a method it has no do_<METHOD> for (TRACE, QUERY...) with an
            # HTML 501 before the app sees it: answer it as the app answers a method it does not serve.
            if code != 501:
                super().send_error(code, message, explain)
                return
            from chalicelib.http_errors import MethodNotAllowed

            self._refuse(MethodNotAllowed(f"method {self.command} is not allowed"))

        do_GET = do_PUT = do_POST = do_HEAD = do_DELETE = do_PATCH = do_OPTIONS = _generic_handle

    return ApiRequestHandler


def install() -> None:
    """Make `chalice local` (in this process) serve with the handler and gateway above."""
    from chalice import local

    original = local.create_local_server
    if getattr(original, "iot_playground", False):
        return

    def create_local_server(app_obj: Chalice, config: Config, host: str, port: int) -> LocalDevServer:
        server: LocalDevServer = original(app_obj, config, host, port)
        handler_class: Callable[..., Any] = _handler_class()
        server.server.RequestHandlerClass = functools.partial(
            handler_class, app_object=app_obj, config=config
        )
        return server

    create_local_server.iot_playground = True  # type: ignore[attr-defined]
    local.create_local_server = create_local_server
    local.ThreadedHTTPServer.request_queue_size = LISTEN_BACKLOG


def main() -> int:
    args = sys.argv[1:]
    # Chalice's autoreloader restarts the server with sys.argv: make that this module again.
    sys.argv = [sys.executable, "-m", "iot_playground.local.chalice_local", *args]

    from chalice.cli import cli

    install()
    result: int = cli.main(args=["local", *args], obj={}, standalone_mode=False) or 0
    return result


if __name__ == "__main__":
    sys.exit(main())
