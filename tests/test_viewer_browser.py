"""The run viewer in headless Chromium against the local stack: it loads without
console errors from the link a run hands out, shows the running run, and its
charts gain points as readings arrive. Leaves a screenshot in test-artifacts/.

Needs Debian's `chromium` and `chromium-driver` (`.ci/run` installs them); without
them the test is skipped locally and fails in CI.
"""

from __future__ import annotations

import json
import math
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from tests.browser import wait_for

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parent.parent
SCREENSHOT = ROOT / "test-artifacts" / "run-viewer.png"
SENSORS = ["sensor-1", "sensor-2", "sensor-3"]


def call(
    base_url: str, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None
) -> Any:
    request = urllib.request.Request(
        base_url + path,
        method=method,
        data=None if body is None else json.dumps(body).encode(),
        headers={"Content-Type": "application/json", **(headers or {})},
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())


def chart_points(driver: Any, reading_type: str) -> int:
    from selenium.webdriver.common.by import By

    figure = driver.find_element(By.CSS_SELECTOR, f'figure.chart[data-type="{reading_type}"]')
    return int(figure.get_attribute("data-points"))


def post_rounds(base_url: str, run_id: str, first: int, count: int) -> None:
    headers = {"X-User": "viewer-demo", "X-Run-Id": run_id}
    for index in range(first, first + count):
        for position, sensor in enumerate(SENSORS):
            value = round(24 + 4 * math.sin(index / 3 + position) + position, 1)
            call(
                base_url,
                "POST",
                "/api/sensors/data",
                {"sensorId": sensor, "reading": value, "type": "temperature"},
                headers,
            )
        call(
            base_url,
            "POST",
            "/api/sensors/data",
            [
                {
                    "sensorId": sensor,
                    "humidity": round(45 + 5 * math.cos(index / 4 + p), 1),
                    "pressure": 1010 + p + index % 3,
                }
                for p, sensor in enumerate(SENSORS[:2])
            ],
            headers,
        )


def test_viewer_shows_a_running_run_and_its_readings_as_they_arrive(local_stack, browser):
    from selenium.webdriver.common.by import By

    base = local_stack.base_url
    run = call(
        base,
        "POST",
        "/api/runs/start",
        {"sensorIds": SENSORS, "duration": 600, "interval": 1},
        {"X-User": "viewer-demo"},
    )
    run_id = run["runId"]
    try:
        post_rounds(base, run_id, 0, 12)
        # Without GRAFANA_URL, the run's link is the viewer, absolute on this API.
        assert run["grafanaUrl"] == f"{base}/?runId={run_id}"
        browser.get(run["grafanaUrl"])

        wait_for(lambda: browser.find_element(By.ID, "run-status").text == "RUNNING", "the run's status")
        wait_for(lambda: chart_points(browser, "temperature") == 12 * len(SENSORS), "the first readings")
        assert chart_points(browser, "humidity") == 12 * 2
        assert chart_points(browser, "pressure") == 12 * 2
        listed = browser.find_elements(By.CSS_SELECTOR, f'#runs li[data-run-id="{run_id}"]')
        assert len(listed) == 1 and "RUNNING" in listed[0].text
        legend = browser.find_element(By.CSS_SELECTOR, 'figure.chart[data-type="temperature"] .legend').text
        assert all(sensor in legend for sensor in SENSORS)

        post_rounds(base, run_id, 12, 4)
        wait_for(lambda: chart_points(browser, "temperature") == 16 * len(SENSORS), "new readings to appear")
        wait_for(
            lambda: browser.find_element(By.ID, "reading-count").text == str(16 * 7), "the reading count"
        )
        polylines = browser.find_elements(By.CSS_SELECTOR, 'figure.chart[data-type="temperature"] polyline')
        assert len(polylines) == len(SENSORS)
        SCREENSHOT.parent.mkdir(exist_ok=True)
        assert browser.save_screenshot(str(SCREENSHOT))

        call(base, "POST", f"/api/runs/{run_id}/finish", {"status": "SUCCESS"})
        wait_for(lambda: browser.find_element(By.ID, "run-status").text == "SUCCESS", "the finished status")
        assert not browser.find_element(By.ID, "run-live").is_displayed()

        problems = [e for e in browser.get_log("browser") if e["level"] in ("SEVERE", "ERROR")]
        assert problems == [], problems
    finally:
        try:
            call(base, "POST", f"/api/runs/{run_id}/finish", {"status": "SUCCESS"})
        except urllib.error.HTTPError as error:
            assert error.code == 409  # already finished above
