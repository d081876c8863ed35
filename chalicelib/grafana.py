"""Where a run can be watched: the Grafana dashboard, or the built-in run viewer.

The dashboard file in `grafana/dashboards/` uses these uid and variable names;
`iot_playground/deploy/dashboard_builder.py` imports them and a test checks the committed file.

Without GRAFANA_URL a run links to the viewer page this API serves at `/`. The
link is absolute when the request being answered says where the API is (its
Host header and API Gateway stage prefix, recorded per request by
`set_viewer_base`), relative otherwise (a scheduled invocation, a unit test).
"""

from __future__ import annotations

from contextvars import ContextVar
from urllib.parse import urlencode

from chalicelib.settings import get_settings

DASHBOARD_UID = "iot-serverless"
DASHBOARD_TITLE = "IoT Playground serverless"
DASHBOARD_SLUG = "iot-playground-serverless"  # Grafana's slug of DASHBOARD_TITLE
RUN_VARIABLE = "RunId"
USER_VARIABLE = "User"
SENSOR_VARIABLE = "SensorId"
TYPE_VARIABLE = "Type"
STAGE_VARIABLE = "Stage"
# The viewer reads the run from this query parameter.
VIEWER_RUN_PARAMETER = "runId"
# Dashboard time range around the run: a little before start, a little after the end.
_LEAD_MS = 60_000
_TRAIL_MS = 300_000

# A context variable, not a global: `chalice local` serves requests on threads.
_viewer_base: ContextVar[str] = ContextVar("viewer_base", default="")


def set_viewer_base(base_url: str) -> None:
    """Record where the current request reached the API, e.g. `https://host/api` (no trailing slash)."""
    _viewer_base.set(base_url.rstrip("/"))


def run_viewer_url(run_id: str) -> str:
    return f"{_viewer_base.get()}/?{urlencode({VIEWER_RUN_PARAMETER: run_id})}"


def run_dashboard_url(grafana_url: str, *, run_id: str, user: str, started_ms: int, duration_s: int) -> str:
    """Link to the run: Grafana when configured, the built-in run viewer otherwise."""
    if not grafana_url:
        return run_viewer_url(run_id)
    query = urlencode(
        {
            "orgId": 1,
            # The dashboard finds this stage's functions and tables by name.
            f"var-{STAGE_VARIABLE}": get_settings().stage,
            f"var-{RUN_VARIABLE}": run_id,
            f"var-{USER_VARIABLE}": user,
            "from": started_ms - _LEAD_MS,
            "to": started_ms + duration_s * 1000 + _TRAIL_MS,
        }
    )
    return f"{grafana_url}/d/{DASHBOARD_UID}/{DASHBOARD_SLUG}?{query}"
