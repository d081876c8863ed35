"""Where a run can be watched: the Grafana dashboard, or the built-in viewer.

The dashboard file in `grafana/dashboards/` must use these uid and variable
names; a test checks it against this module.
"""

from __future__ import annotations

from urllib.parse import urlencode

DASHBOARD_UID = "iot-serverless"
DASHBOARD_SLUG = "iot-playground-serverless"
RUN_VARIABLE = "RunId"
USER_VARIABLE = "User"
SENSOR_VARIABLE = "SensorId"
TYPE_VARIABLE = "Type"
# Dashboard time range around the run: a little before start, a little after the end.
_LEAD_MS = 60_000
_TRAIL_MS = 300_000


def run_dashboard_url(grafana_url: str, *, run_id: str, user: str, started_ms: int, duration_s: int) -> str:
    """Link to the run: Grafana when configured, the built-in run viewer otherwise."""
    if not grafana_url:
        return "/?" + urlencode({"runId": run_id})
    query = urlencode(
        {
            "orgId": 1,
            f"var-{RUN_VARIABLE}": run_id,
            f"var-{USER_VARIABLE}": user,
            "from": started_ms - _LEAD_MS,
            "to": started_ms + duration_s * 1000 + _TRAIL_MS,
        }
    )
    return f"{grafana_url}/d/{DASHBOARD_UID}/{DASHBOARD_SLUG}?{query}"
