"""The CLI's logic without a server: the frontend's request shapes, loss detection, help.

A fake API behind httpx's MockTransport records every request and can lose or
duplicate readings on purpose, which the real stack never does.
"""

from __future__ import annotations

import asyncio
import io
import itertools
import json
import re
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner
from rich.console import Console

from chalicelib.schemas import format_ms
from iot_playground import clients
from iot_playground.cli import main
from iot_playground.clients import Plan, RunOutcome, api_client, drive_run, speed

API = "http://api.test"


class FakeApi:
    """Just enough of the API for the tools, plus faults on demand."""

    def __init__(
        self,
        *,
        drop: set[tuple[str, int]] | None = None,
        duplicate: set[tuple[str, int]] | None = None,
        busy_starts: int = 0,
        busy_polls: int = 0,
        page_size: int = 4,
    ):
        self.drop = drop or set()  # (sensorId, n-th reading of that sensor in a run) answered but not kept
        self.duplicate = duplicate or set()
        self.busy_starts = busy_starts  # start answers 409 this many times
        self.busy_polls = busy_polls  # can-start answers false this many times
        self.page_size = page_size
        self.requests: list[tuple[float, httpx.Request, Any]] = []
        self.runs: dict[str, dict[str, Any]] = {}
        self.stored: dict[str, list[dict[str, Any]]] = {}
        self._seen: Counter[tuple[str, str]] = Counter()

    def __call__(self, request: httpx.Request) -> httpx.Response:
        body: Any = json.loads(request.content) if request.content else None
        self.requests.append((time.monotonic(), request, body))
        path, method = request.url.path, request.method
        running = sum(run["status"] == "RUNNING" for run in self.runs.values())
        if path == "/api/runs/can-start":
            free = self.busy_polls == 0
            self.busy_polls = max(0, self.busy_polls - 1)
            slots = {"currentRunning": 5 if not free else running, "maxAllowed": 5}
            return httpx.Response(200, json={"canStart": free, "available": 0 if not free else 1, **slots})
        if path == "/api/runs/start":
            if self.busy_starts:
                self.busy_starts -= 1
                return httpx.Response(
                    409, json={"error": "RunLimitReached", "currentRunning": 5, "maxAllowed": 5}
                )
            run_id = str(uuid.uuid4())
            self.runs[run_id] = {"id": run_id, "status": "RUNNING", "user": request.headers["X-User"], **body}
            self.stored[run_id] = []
            return httpx.Response(201, json={"runId": run_id, "id": run_id})
        if path == "/api/sensors/data" and method == "POST":
            run_id = request.headers["X-Run-Id"]
            for reading in body if isinstance(body, list) else [body]:
                key = (run_id, reading["sensorId"])
                self._seen[key] += 1
                fault = (reading["sensorId"], self._seen[key])
                copies = 0 if fault in self.drop else 2 if fault in self.duplicate else 1
                stamp = format_ms(reading["timestamp"]) if "timestamp" in reading else format_ms(0)
                self.stored[run_id] += [{**reading, "timestamp": stamp, "runId": run_id}] * copies
            return httpx.Response(201, json={"ingested": len(body)} if isinstance(body, list) else body)
        if path == "/api/sensors/data":
            items = self.stored[request.url.params["runId"]]
            start = int(request.url.params.get("nextKey") or 0)
            end = start + min(self.page_size, int(request.url.params["limit"]))
            next_key = str(end) if end < len(items) else None
            return httpx.Response(200, json={"items": items[start:end], "nextKey": next_key})
        if path.endswith("/finish"):
            run = self.runs[path.split("/")[3]]
            run.update(status=body["status"], message=body["message"])
            return httpx.Response(200, json={"status": body["status"]})
        return httpx.Response(404, json={"message": "no such route"})

    def posts(self, path: str) -> list[tuple[float, httpx.Request, Any]]:
        return [r for r in self.requests if r[1].method == "POST" and r[1].url.path.endswith(path)]


def _drive(fake: FakeApi, plan: Plan) -> RunOutcome:
    outcome = RunOutcome(plan.user)

    async def go() -> None:
        async with api_client(API, transport=httpx.MockTransport(fake)) as api:
            await drive_run(api, plan, outcome)

    asyncio.run(go())
    return outcome


def test_a_simulated_run_makes_the_frontends_requests():
    fake = FakeApi()
    outcome = _drive(fake, Plan(user="alice", sensors=3, count=4, interval_ms=60))

    paths = [(r.method, r.url.path) for _, r, _ in fake.requests]
    assert paths[:2] == [("GET", "/api/runs/can-start"), ("POST", "/api/runs/start")]
    _, start, start_body = fake.requests[1]
    assert start.headers["X-User"] == "alice" and start.headers["Content-Type"] == "application/json"
    assert start_body == {"sensorIds": ["sensor-1", "sensor-2", "sensor-3"], "duration": 1, "interval": 1}

    readings = fake.posts("/api/sensors/data")
    assert len(readings) == 12 and outcome.sent == 12 and outcome.failed == 0
    for _, request, body in readings:
        assert request.headers["X-User"] == "alice" and request.headers["X-Run-Id"] == outcome.run_id
        assert set(body) == {"sensorId", "reading", "type"} and body["type"] == "temperature"
        assert 15 <= body["reading"] <= 35 and round(body["reading"], 1) == body["reading"]
    # Each round starts one interval after the previous round's answers.
    rounds = [readings[i : i + 3] for i in range(0, 12, 3)]
    for previous, following in itertools.pairwise(rounds):
        assert min(t for t, _, _ in following) - max(t for t, _, _ in previous) >= 0.055
        assert {b["sensorId"] for _, _, b in following} == {"sensor-1", "sensor-2", "sensor-3"}

    [(_, finish, finish_body)] = fake.posts("/finish")
    assert finish.url.path == f"/api/runs/{outcome.run_id}/finish"
    assert "X-User" not in finish.headers
    assert finish_body == {"status": "SUCCESS", "message": "Simulation completed successfully"}
    assert outcome.status == "SUCCESS"


def test_batch_mode_sends_one_array_per_round():
    fake = FakeApi()
    outcome = _drive(fake, Plan(user="alice", sensors=5, count=3, interval_ms=0, batch=True))
    batches = fake.posts("/api/sensors/data")
    assert [len(body) for _, _, body in batches] == [5, 5, 5]
    assert outcome.sent == 15 and outcome.requests == 3 and len(outcome.latencies_ms) == 3


def test_run_parameters_follow_the_frontends_arithmetic():
    plan = Plan(user="alice", sensors=2, count=100, interval_ms=1500)
    assert (plan.duration_s, plan.interval_s, plan.sensor_ids) == (150, 2, ["sensor-1", "sensor-2"])
    assert (Plan("alice", 1, 100, 200).duration_s, Plan("alice", 1, 100, 200).interval_s) == (20, 1)


def _load(fake: FakeApi, tmp_path: Path, monkeypatch, **overrides: Any) -> tuple[int, dict[str, Any], str]:
    """`simulate --runs N --slot-wait S --verify`: several runs at once, each read back."""
    monkeypatch.setattr(clients, "SLOT_POLL_SECONDS", 0.01)
    monkeypatch.setattr(clients, "SETTLE_SECONDS", 0.0)
    settings: dict[str, Any] = {
        "user": "loadtest",
        "sensors": 3,
        "count": 4,
        "interval_ms": 0,
        "runs": 2,
        "slot_wait_s": 30.0,
        "verify": True,
    }
    out = io.StringIO()
    report_path = tmp_path / "report.json"
    code = clients.simulate(
        API,
        Plan(**{**settings, **overrides}),
        report_path=report_path,
        console=Console(file=out, width=150),
        transport=httpx.MockTransport(fake),
    )
    return code, json.loads(report_path.read_text()), out.getvalue()


def test_verify_accounts_for_every_reading_across_pages(tmp_path, monkeypatch):
    code, report, output = _load(FakeApi(page_size=5), tmp_path, monkeypatch)
    assert code == 0, output
    assert report["ok"] is True
    assert report["totals"]["sent"] == report["totals"]["stored"] == 24
    assert [run["sensors"]["sensor-2"] for run in report["runs"]] == [
        {"sent": 4, "stored": 4, "missing": 0, "duplicates": 0, "unexpected": 0}
    ] * 2
    assert "no loss: 24 sent, 24 stored" in output


def test_verify_reports_missing_and_duplicated_readings_and_fails(tmp_path, monkeypatch):
    fake = FakeApi(drop={("sensor-2", 3)}, duplicate={("sensor-1", 1)})
    code, report, output = _load(fake, tmp_path, monkeypatch, runs=1)
    assert code == 1
    assert report["ok"] is False
    assert report["totals"] == dict(sent=12, failed=0, stored=12, missing=1, duplicates=1, unexpected=0)
    sensors = report["runs"][0]["sensors"]
    assert sensors["sensor-1"]["duplicates"] == 1 and sensors["sensor-2"]["missing"] == 1
    assert sensors["sensor-3"] == {"sent": 4, "stored": 4, "missing": 0, "duplicates": 0, "unexpected": 0}
    assert "LOSS DETECTED" in output
    assert "sensor-2: sent 4, stored 3, missing 1" in output


def test_slot_wait_waits_for_a_slot_instead_of_failing(tmp_path, monkeypatch):
    fake = FakeApi(busy_polls=3, busy_starts=2)
    code, report, output = _load(fake, tmp_path, monkeypatch, runs=2, sensors=1, count=2)
    assert code == 0, output
    assert report["totals"]["stored"] == 4
    assert len(fake.posts("/api/runs/start")) == 4  # two refused with 409, then one per run


def test_slot_wait_gives_up_on_a_slot_after_its_wait(tmp_path, monkeypatch):
    code, report, _ = _load(FakeApi(busy_polls=10_000), tmp_path, monkeypatch, runs=1, slot_wait_s=0.1)
    assert code == 1
    assert report["runs"][0]["error"] == "5/5 simulations running, no slot available"


def test_percentiles_are_observed_values():
    def latency(values: list[float]):
        return speed([RunOutcome("alice", latencies_ms=values)])["latencyMs"]

    summary = latency([float(v) for v in range(100, 0, -1)])
    assert (summary["p50"], summary["p95"], summary["p99"], summary["max"]) == (50.0, 95.0, 99.0, 100.0)
    assert latency([7.0])["p99"] == 7.0 and latency([])["p50"] is None


# What the project runs by hand, each a command of its own.
EXPECTED_COMMANDS = {
    "serve", "tables", "package", "policies", "openapi", "capacity", "guards",
    "simulate", "interrupt-all", "migrate", "device",
}  # fmt: skip


def test_one_command_line_runs_everything():
    assert set(main.commands) >= EXPECTED_COMMANDS  # type: ignore[attr-defined]


def test_make_targets_are_aliases_of_existing_commands():
    makefile = (Path(__file__).resolve().parent.parent / "Makefile").read_text()
    aliased = set(re.findall(r"^\t\$\(CLI\) ([a-z-]+)", makefile, flags=re.M))
    assert {"serve", "tables", "package", "policies", "openapi", "guards"} <= aliased
    assert aliased <= set(main.commands)  # type: ignore[attr-defined]
    assert "python -m" not in makefile.replace("$(BIN)/python -m benchmarks.run", "")


@pytest.mark.parametrize("command", [[], *([name] for name in sorted(main.commands))])  # type: ignore[attr-defined]
def test_every_command_has_help(command):
    result = CliRunner().invoke(main, [*command, "--help"])
    assert result.exit_code == 0, result.output
    assert "Usage: main" in result.output or "Usage: iot-playground" in result.output
    # The first line of the help says what the command does, not just its name.
    assert len(result.output.split("\n\n")[1].strip()) > 20
    for option in {"simulate": ["--interval-ms", "--batch", "--runs", "--verify", "--report"]}.get(
        command[0] if command else "", []
    ):
        assert option in result.output


def test_a_user_name_the_frontend_would_refuse_is_refused():
    result = CliRunner().invoke(main, ["simulate", "--user", "a b"])
    assert result.exit_code == 2 and "3-20 characters" in result.output
