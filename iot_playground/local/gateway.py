"""A small layer in front of `chalice local` for what API Gateway answers itself (README.md, "What
`make run` does not emulate"): bodies over 1 MiB (413), unknown routes (404) and methods (405) in
the API's JSON error format with its CORS headers, and the admin API key (403). `make run` serves
it on the public port, `chalice local` behind it on a port of its own: the frontend fires up to 100
readings at once, and `chalice local`'s accept queue of 5 would drop the rest, so the gateway has a
wide one and keeps a few connections to `chalice local` open.
"""

from __future__ import annotations

import hmac
import http.client
import json
import queue
from collections.abc import Iterable, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

from chalice.local import RouteMatcher

from chalicelib.http import MAX_BODY_BYTES, apply_cors
from chalicelib.schemas import ApiError, Forbidden, MethodNotAllowed, NotFound, PayloadTooLarge

GATEWAY_LIMIT = 10 * 1024 * 1024  # what API Gateway itself accepts
ADMIN_KEY_MESSAGE = "this route needs the admin API key in the x-api-key header"
UPSTREAM_CONNECTIONS = 16
Routes = Mapping[str, Mapping[str, Any]]  # path -> method -> Chalice's RouteEntry: app.routes
_HOP_BY_HOP = ("connection", "keep-alive", "expect", "te", "upgrade", "transfer-encoding", "content-length")


class Upstream:
    """A few kept-open connections to `chalice local`, shared by the gateway's threads."""

    def __init__(self, host: str, port: int):
        self._idle: queue.Queue[http.client.HTTPConnection] = queue.Queue()
        for _ in range(UPSTREAM_CONNECTIONS):
            self._idle.put(http.client.HTTPConnection(host, port, timeout=60))

    def send(
        self, method: str, path: str, body: bytes | None, headers: dict[str, str]
    ) -> tuple[int, list[tuple[str, str]], bytes]:
        connection = self._idle.get()
        try:
            for attempt in (1, 2):
                try:
                    connection.request(method, path, body=body, headers=headers)
                    answer = connection.getresponse()
                    return answer.status, answer.getheaders(), answer.read()
                except (ConnectionError, http.client.HTTPException):
                    connection.close()  # chalice local restarted (autoreload): a new connection
                    if attempt == 2:
                        raise
            raise AssertionError("unreachable")
        finally:
            self._idle.put(connection)


def gateway(
    upstream: Upstream, routes: Routes, origins: tuple[str, ...], admin_key: str
) -> type[BaseHTTPRequestHandler]:
    matcher = RouteMatcher(list(routes))
    keyed = {(m, path) for path, entries in routes.items() for m, e in entries.items() if e.api_key_required}

    class Gateway(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            pass  # the API's own log says what happened

        def handle_expect_100(self) -> bool:
            if self._declared() > MAX_BODY_BYTES:
                self._refuse(_too_large(self._declared()))
                return False
            return super().handle_expect_100()

        def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
            if code != 501:  # http.server has no do_<METHOD> for it: as API Gateway, a 405
                return super().send_error(code, message, explain)
            self._refuse(MethodNotAllowed(f"method {self.command} is not allowed"))

        def _declared(self) -> int:
            raw = (self.headers.get("content-length") or "0").strip()
            return int(raw) if raw.isascii() and raw.isdigit() else 0

        def _body(self) -> bytes | None:
            if "chunked" in (self.headers.get("transfer-encoding") or "").lower():
                return self._chunked()
            length = self._declared()
            if length > MAX_BODY_BYTES:
                if length <= GATEWAY_LIMIT:  # read and dropped: the client gets to read the 413
                    self._drop(length)
                raise _too_large(length)
            return self.rfile.read(length) if length else None

        def _drop(self, length: int) -> None:
            while length > 0 and (piece := self.rfile.read(min(65536, length))):
                length -= len(piece)

        def _chunked(self) -> bytes:
            body, total = bytearray(), 0
            while size := int(self.rfile.readline(1024).split(b";")[0].strip() or b"0", 16):
                total += size
                if total > GATEWAY_LIMIT:
                    raise _too_large(None)
                if total > MAX_BODY_BYTES:
                    body.clear()
                    self._drop(size)
                else:
                    body += self.rfile.read(size)
                self.rfile.readline(1024)  # the CRLF after the chunk
            while self.rfile.readline(1024).strip():
                pass  # trailers
            if total > MAX_BODY_BYTES:
                raise _too_large(total)
            return bytes(body)

        def _serve(self) -> None:
            try:
                body = self._body()
                try:
                    route = matcher.match_route(self.path).route
                except ValueError:
                    raise NotFound(f"no route {self.command} {urlsplit(self.path).path}") from None
                if (self.command, route) in keyed:
                    given = (self.headers.get("x-api-key") or "").encode()
                    if not admin_key or not hmac.compare_digest(given, admin_key.encode()):
                        raise Forbidden(ADMIN_KEY_MESSAGE)
            except ApiError as refused:
                self._refuse(refused)
                return
            headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP_BY_HOP}
            if body is not None:
                headers["Content-Length"] = str(len(body))
            status, answer_headers, answer = upstream.send(self.command, self.path, body, headers)
            dropped = (*_HOP_BY_HOP, "date", "server")
            self._answer(status, [(k, v) for k, v in answer_headers if k.lower() not in dropped], answer)

        def _refuse(self, refused: ApiError) -> None:
            headers: dict[str, Any] = {"Content-Type": "application/json"}
            apply_cors(headers, origins, self.headers.get("origin"))
            if refused.status == 413:
                headers["Connection"] = "close"
                self.close_connection = True
            self._answer(refused.status, headers.items(), json.dumps(refused.body()).encode())

        def _answer(self, status: int, headers: Iterable[tuple[str, Any]], body: bytes) -> None:
            self.send_response(status)
            for name, value in [*headers, ("Content-Length", str(len(body)))]:
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(body)

        do_GET = do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = do_OPTIONS = _serve

    return Gateway


def _too_large(size: int | None) -> ApiError:
    said = f"{size} bytes" if size is not None else f"more than {MAX_BODY_BYTES} bytes"
    return PayloadTooLarge(f"request body is {said}; the limit is {MAX_BODY_BYTES} bytes (1 MiB)")


def start(
    host: str, port: int, upstream_port: int, routes: Routes, origins: tuple[str, ...], admin_key: str
) -> ThreadingHTTPServer:
    handler = gateway(Upstream("127.0.0.1", upstream_port), routes, origins, admin_key)
    server = ThreadingHTTPServer((host, port), handler, bind_and_activate=False)
    server.request_queue_size = 256  # API Gateway has no accept queue to overflow
    server.daemon_threads = True
    server.server_bind()
    server.server_activate()
    return server
