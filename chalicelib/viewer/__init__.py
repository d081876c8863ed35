"""The run viewer: one page, served by the API itself, for when there is no Grafana.

`GET /` returns `assets/index.html`, whose `<base href>` is where the request reached the API
(the root under `make run`, the stage under API Gateway), so that the page's relative URLs
(`viewer/viewer.js`, `api/runs`...) work under both. No build step, no library: the charts are
plain SVG. Only `GET /` and `GET /viewer/{name}` import this module.
"""

from __future__ import annotations

import hashlib
import html
from functools import cache
from pathlib import Path

from chalice.app import Response

from chalicelib.schemas import NotFound

_ASSETS = Path(__file__).resolve().parent / "assets"
CONTENT_TYPES = {"viewer.js": "text/javascript; charset=utf-8", "viewer.css": "text/css; charset=utf-8"}
# The page and its assets come only from this API, and the script talks only to it.
_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
    "img-src 'self' data:; base-uri 'self'; form-action 'none'; frame-ancestors 'none'"
)
_HEADERS = {"X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer"}


@cache
def _read(name: str) -> tuple[str, str]:
    """The file's text and a hash of it, part of the asset's URL so it can be cached for long."""
    body = (_ASSETS / name).read_text(encoding="utf-8")
    return body, hashlib.sha256(body.encode()).hexdigest()[:12]


def page(stage_prefix: str) -> Response:
    body = _read("index.html")[0].replace("{{BASE_HREF}}", html.escape(stage_prefix + "/", quote=True))
    for name in CONTENT_TYPES:
        body = body.replace(f'"viewer/{name}"', f'"viewer/{name}?v={_read(name)[1]}"')
    headers = {
        "Content-Type": "text/html; charset=utf-8",
        "Cache-Control": "no-cache",
        "Content-Security-Policy": _CSP,
    }
    return Response(body=body, status_code=200, headers={**headers, **_HEADERS})


def asset(name: str) -> Response:
    if name not in CONTENT_TYPES:
        raise NotFound("no such viewer asset")
    headers = {"Content-Type": CONTENT_TYPES[name], "Cache-Control": "public, max-age=86400"}
    return Response(body=_read(name)[0], status_code=200, headers={**headers, **_HEADERS})
