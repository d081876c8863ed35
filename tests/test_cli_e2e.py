"""`iot-playground simulate` as a user runs it, against the real local stack: one run, or several
at once read back and accounted for (`--runs`, `--verify`).

What they print and report is compared with what the API stores.
"""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import LocalStack
from tests.helpers import http

pytestmark = pytest.mark.e2e

CLI = str(Path(sys.executable).parent / "iot-playground")


def _cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([CLI, *args], capture_output=True, text=True, timeout=timeout)


def _user() -> str:
    return f"cli-{uuid.uuid4().hex[:10]}"


def _summary_row(output: str, run_id: str) -> list[str]:
    """The run's row of the summary table: run, status, sent, failed (and with --verify the rest)."""
    for line in output.splitlines():
        cells = [cell.strip() for cell in line.replace("│", "|").split("|") if cell.strip()]
        if cells and cells[0] == run_id:
            return cells
    raise AssertionError(f"no row for {run_id} in:\n{output}")


def _stored(api: str, run_id: str) -> list[dict[str, Any]]:
    readings: list[dict[str, Any]] = []
    next_key = ""
    while True:
        query = f"runId={run_id}&limit=7" + (f"&nextKey={next_key}" if next_key else "")
        status, page, _ = http("GET", f"{api}/api/sensors/data?{query}")
        assert status == 200, page
        readings.extend(page["items"])
        next_key = page["nextKey"]
        if not next_key:
            return readings


def _run(api: str, run_id: str) -> dict[str, Any]:
    status, run, _ = http("GET", f"{api}/api/runs/{run_id}")
    assert status == 200, run
    return dict(run)


@pytest.mark.parametrize("batch", [False, True], ids=["per-sensor", "batch"])
def test_simulate_sends_what_the_api_stores(local_stack, tmp_path, batch):
    api, user, report = local_stack.base_url, _user(), tmp_path / "simulate.json"
    args = ["simulate", "--api", api, "--user", user, "--sensors", "3", "--count", "5", "--interval-ms", "60"]
    result = _cli(*args, *(["--batch"] if batch else []), "--report", str(report))
    assert result.returncode == 0, result.stdout + result.stderr

    [summary] = json.loads(report.read_text())["runs"]
    run_id = summary["runId"]
    assert _summary_row(result.stdout, run_id) == [run_id, "SUCCESS", "15", "0"]
    assert summary["sent"] == 15 and summary["failed"] == 0
    assert re.search(r"latency p50 \d+\.\d ms, p95 \d+\.\d ms, p99 \d+\.\d ms", result.stdout)
    assert summary["requests"] == (5 if batch else 15)

    run = _run(api, run_id)
    assert run["status"] == "SUCCESS" and run["username"] == user
    assert run["params"]["sensorIds"] == ["sensor-1", "sensor-2", "sensor-3"]
    assert (run["duration"], run["interval"]) == (1, 1)  # ceil(5*60/1000), ceil(60/1000)
    stored = _stored(api, run_id)
    assert len(stored) == 15
    assert Counter(r["sensorId"] for r in stored) == {"sensor-1": 5, "sensor-2": 5, "sensor-3": 5}
    for reading in stored:
        assert reading["type"] == "temperature" and reading["user"] == user
        assert 15 <= reading["reading"] <= 35 and round(reading["reading"], 1) == reading["reading"]


def test_simulate_interrupted_by_ctrl_c_finishes_the_run_as_failed(local_stack):
    api, user = local_stack.base_url, _user()
    process = subprocess.Popen(
        [
            CLI,
            "simulate",
            "--api",
            api,
            "--user",
            user,
            "--sensors",
            "2",
            "--count",
            "500",
            "--interval-ms",
            "50",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    run_id = None
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            runs = http("GET", f"{api}/api/runs?user={user}")[1]["items"]
            if runs and len(_stored(api, runs[0]["id"])) >= 4:
                run_id = runs[0]["id"]
                break
            time.sleep(0.1)
        assert run_id, "the simulation did not get going"
        process.send_signal(signal.SIGINT)
        stdout, stderr = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == 130, stdout + stderr
    assert "interrupted: every run still going was finished as FAILED" in stdout
    run = _run(api, run_id)
    assert run["status"] == "FAILED"
    assert "interrupted" in run["errorMessage"]
    # Readings in flight at Ctrl-C may have landed without their answer arriving.
    _, status, sent_cell, _ = _summary_row(stdout, run_id)
    sent, stored = int(sent_cell), len(_stored(api, run_id))
    assert status == "FAILED"
    assert 4 <= sent <= stored <= sent + 2


def test_runs_verified_read_back_exactly_what_was_sent(local_stack, tmp_path):
    api, report_path = local_stack.base_url, tmp_path / "load.json"
    args = ["--runs", "2", "--sensors", "3", "--count", "5", "--interval-ms", "50", "--slot-wait", "60"]
    result = _cli(
        "simulate", "--api", api, *args, "--verify", "--user", _user(), "--report", str(report_path)
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no loss: 30 sent, 30 stored" in result.stdout

    report = json.loads(report_path.read_text())
    assert report["ok"] is True
    assert report["totals"] == dict(sent=30, failed=0, stored=30, missing=0, duplicates=0, unexpected=0)
    assert report["latencyMs"]["count"] == 30
    assert report["latencyMs"]["p50"] <= report["latencyMs"]["p95"] <= report["latencyMs"]["p99"]
    assert report["throughput"]["readingsPerSecond"] > 0
    assert len({run["runId"] for run in report["runs"]}) == 2
    for run in report["runs"]:
        assert run["runId"] in result.stdout
        assert _run(api, run["runId"])["status"] == "SUCCESS"
        stored = _stored(api, run["runId"])
        assert len(stored) == run["stored"] == 15
        assert Counter(r["sensorId"] for r in stored) == {"sensor-1": 5, "sensor-2": 5, "sensor-3": 5}
        assert {s: v["stored"] for s, v in run["sensors"].items()} == {f"sensor-{n}": 5 for n in (1, 2, 3)}
        # Each reading carries its round: timestamps are distinct per sensor.
        assert len({(r["sensorId"], r["timestamp"]) for r in stored}) == 15


@pytest.fixture(scope="module")
def one_slot_stack() -> Iterator[LocalStack]:
    with LocalStack(MAX_CONCURRENT_RUNS="1") as stack:
        yield stack


def test_simulate_refuses_and_with_slot_wait_waits_when_no_slot_is_free(one_slot_stack, tmp_path):
    api = one_slot_stack.base_url
    status, blocker, _ = http(
        "POST",
        f"{api}/api/runs/start",
        {"sensorIds": ["s-1"], "duration": 60, "interval": 1},
        **{"X-User": "blocker"},
    )
    assert status == 201, blocker
    load: subprocess.Popen[str] | None = None
    try:
        result = _cli("simulate", "--api", api, "--sensors", "1", "--count", "1")
        assert result.returncode == 1
        assert "1/1 simulations running, no slot available" in result.stdout

        report_path = tmp_path / "load.json"
        load_args = ["--runs", "2", "--sensors", "2", "--count", "3", "--interval-ms", "50", "--verify"]
        load = subprocess.Popen(
            [CLI, "simulate", "--api", api, *load_args, "--slot-wait", "600", "--report", str(report_path)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        time.sleep(1.5)  # long enough to find no slot and start polling
        assert load.poll() is None, "simulate --slot-wait gave up instead of waiting for a slot"
    finally:
        http("POST", f"{api}/api/runs/{blocker['runId']}/finish", {"status": "SUCCESS"})
    stdout, stderr = load.communicate(timeout=60)
    assert load.returncode == 0, stdout + stderr
    report = json.loads(report_path.read_text())
    assert report["totals"]["sent"] == report["totals"]["stored"] == 12
    assert [run["status"] for run in report["runs"]] == ["SUCCESS", "SUCCESS"]
