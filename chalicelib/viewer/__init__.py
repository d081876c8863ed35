"""The run viewer: a single page, served by the API itself, for when Grafana is not there.

`GET /` returns `assets/index.html`; the page loads `viewer.js` and `viewer.css`
from `GET /viewer/{name}` and calls the JSON API (GET /api/runs, GET
/api/sensors/data) with URLs relative to a `<base href>` filled in per request,
so it works at the root of `chalice local` as well as under an API Gateway stage
(`https://…/api/`) or a custom domain's base path. No build step, no CDN, no
library: the charts are plain SVG drawn by the script.

The files ship inside the Lambda package (everything under `chalicelib/` does)
and are read on first use. The module itself is imported by its two routes only, so
neither costs a cold start anything; what every request needs (the base URL) is in
`chalicelib.public_url`.
"""

from __future__ import annotations

import hashlib
import html
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from chalice.app import Response

from chalicelib.public_url import VIEWER_ASSET_ROUTE, public_base_url, stage_prefix

ASSET_ROUTE = VIEWER_ASSET_ROUTE
__all__ = ["ASSET_ROUTE", "asset_names", "asset_response", "page_response", "public_base_url", "stage_prefix"]
_ASSET_DIR = Path(__file__).resolve().parent / "assets"
_CONTENT_TYPES = {
    "viewer.js": "text/javascript; charset=utf-8",
    "viewer.css": "text/css; charset=utf-8",
}
_PAGE = "index.html"
# The page and its assets come only from this API; the script talks only to it.
_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
    "img-src 'self' data:; base-uri 'self'; form-action 'none'; frame-ancestors 'none'"
)
_COMMON_HEADERS = {"X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer"}


@dataclass(frozen=True, slots=True)
class _Asset:
    body: str
    version: str  # content hash: part of the asset's URL, so it can be cached for long


@cache
def _read(name: str) -> _Asset:
    body = (_ASSET_DIR / name).read_text(encoding="utf-8")
    return _Asset(body, hashlib.sha256(body.encode()).hexdigest()[:12])


def asset_names() -> tuple[str, ...]:
    return tuple(_CONTENT_TYPES)


def page_response(context: Mapping[str, Any]) -> Response:
    """The HTML page, its `<base href>` pointing at where this request reached the API."""
    base = stage_prefix(context) + "/"
    body = _read(_PAGE).body
    for name in _CONTENT_TYPES:
        body = body.replace(f'"viewer/{name}"', f'"viewer/{name}?v={_read(name).version}"')
    body = body.replace("{{BASE_HREF}}", html.escape(base, quote=True))
    return Response(
        body=body,
        status_code=200,
        headers={
            "Content-Type": "text/html; charset=utf-8",
            "Cache-Control": "no-cache",
            "Content-Security-Policy": _CSP,
            **_COMMON_HEADERS,
        },
    )


def asset_response(name: str) -> Response:
    content_type = _CONTENT_TYPES.get(name)
    if content_type is None:
        return Response(
            body='{"error":"NotFound","message":"no such viewer asset"}',
            status_code=404,
            headers={"Content-Type": "application/json"},
        )
    return Response(
        body=_read(name).body,
        status_code=200,
        headers={"Content-Type": content_type, "Cache-Control": "public, max-age=86400", **_COMMON_HEADERS},
    )
