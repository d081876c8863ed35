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
from typing import Any

import pytest

from tests.browser import wait_for
from tests.helpers import ROOT

pytestmark = pytest.mark.e2e

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


def posted_values(rounds: int) -> dict[tuple[str, str], list[float]]:
    """What post_rounds sends, per (sensor, type), in order."""
    values: dict[tuple[str, str], list[float]] = {}
    for index in range(rounds):
        for position, sensor in enumerate(SENSORS):
            values.setdefault((sensor, "temperature"), []).append(
                round(24 + 4 * math.sin(index / 3 + position) + position, 1)
            )
        for p, sensor in enumerate(SENSORS[:2]):
            values.setdefault((sensor, "humidity"), []).append(round(45 + 5 * math.cos(index / 4 + p), 1))
            values.setdefault((sensor, "pressure"), []).append(1010 + p + index % 3)
    return values


def stats_rows(driver: Any) -> dict[tuple[str, str], list[str]]:
    from selenium.webdriver.common.by import By

    rows = driver.find_elements(By.CSS_SELECTOR, "#stats-table tbody tr")
    return {
        (row.get_attribute("data-sensor-id"), row.get_attribute("data-type")): [
            cell.text for cell in row.find_elements(By.TAG_NAME, "td")
        ]
        for row in rows
    }


def assert_stats_table(driver: Any, rounds: int) -> None:
    """The stats table against the values posted: count, min, max, mean, last value."""
    from selenium.common.exceptions import StaleElementReferenceException

    expected = posted_values(rounds)
    for _ in range(10):  # each poll redraws the table
        try:
            rows = stats_rows(driver)
            break
        except StaleElementReferenceException:
            continue
    assert sorted(rows) == sorted(expected)
    for key, values in expected.items():
        cells = rows[key]
        shown = [
            f"{v:.2f}" if not float(v).is_integer() else str(int(v))
            for v in (min(values), max(values), sum(values) / len(values), values[-1])
        ]
        assert cells[:3] == [key[0], key[1], str(len(values))], cells
        assert [cells[3], cells[4], cells[5], cells[6]] == shown, (key, cells)


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
        wait_for(
            lambda: browser.find_element(By.ID, "stats-table").get_attribute("data-readings") == str(16 * 7),
            "the stats table",
        )
        assert_stats_table(browser, 16)
        polylines = browser.find_elements(By.CSS_SELECTOR, 'figure.chart[data-type="temperature"] polyline')
        assert len(polylines) == len(SENSORS)
        SCREENSHOT.parent.mkdir(exist_ok=True)
        assert browser.save_screenshot(str(SCREENSHOT))

        call(base, "POST", f"/api/runs/{run_id}/finish", {"status": "SUCCESS"})
        wait_for(lambda: browser.find_element(By.ID, "run-status").text == "SUCCESS", "the finished status")
        assert not browser.find_element(By.ID, "run-live").is_displayed()
        assert browser.find_element(By.ID, "stats-table").get_attribute("data-complete") == "true"
        assert_stats_table(browser, 16)
        assert "112 reading(s) from 3 of 3 sensor(s)" in browser.find_element(By.ID, "stats-totals").text

        problems = [e for e in browser.get_log("browser") if e["level"] in ("SEVERE", "ERROR")]
        assert problems == [], problems
    finally:
        try:
            call(base, "POST", f"/api/runs/{run_id}/finish", {"status": "SUCCESS"})
        except urllib.error.HTTPError as error:
            assert error.code == 409  # already finished above
