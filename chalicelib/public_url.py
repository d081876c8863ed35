"""Where the client reached the API: its scheme, host and API Gateway stage prefix.

Every request needs this (the run links in answers are absolute), so it lives apart
from the run viewer, whose page and assets only `GET /` and `GET /viewer/{name}` load.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

# The run viewer's assets (chalicelib/viewer); the route is registered at import, the
# viewer itself is imported by its two routes only.
VIEWER_ASSET_ROUTE = "/viewer/{name}"


def stage_prefix(context: Mapping[str, Any]) -> str:
    """The part of the request path in front of the route, e.g. `/api` for API Gateway's stage.

    API Gateway's `requestContext.path` is the path the client asked for
    (`/api/api/runs/1b…`), `resourcePath` the route (`/api/runs/{run_id}`). A
    route segment, template or not, stands for exactly one path segment, so the
    prefix is whatever segments the path has beyond the route's."""
    path = context.get("path") or ""
    route = context.get("resourcePath") or ""
    path_segments = [s for s in path.split("/") if s]
    route_segments = [s for s in route.split("/") if s]
    extra = len(path_segments) - len(route_segments)
    if extra <= 0:
        return ""
    return "/" + "/".join(path_segments[:extra])


def public_base_url(headers: Mapping[str, str], context: Mapping[str, Any]) -> str:
    """`scheme://host[/prefix]` of the API as the client reached it; empty without a Host header."""
    host = headers.get("host")
    if not host or any(c in host for c in "/\\@ \t\r\n"):
        return ""
    # API Gateway sets X-Forwarded-Proto (https); `chalice local` does not, and serves http.
    scheme = headers.get("x-forwarded-proto", "http").split(",")[0].strip().lower()
    if scheme not in ("http", "https"):
        scheme = "http"
    return f"{scheme}://{host}{stage_prefix(context)}"
