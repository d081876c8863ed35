"""`iot-playground load`: several runs at once, then every reading read back and accounted for.

Each reading names its round: reading `i` of a sensor carries the timestamp
``origin + i * step`` and a value derived from `i`. Reading a run back through
the API therefore tells, per sensor, exactly which acknowledged readings are
missing, which are stored twice, and what is stored that was never sent.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx
from rich.console import Console
from rich.table import Table

from chalicelib.clock import now_ms, parse_iso_ms
from iot_playground.clients.api_client import PlaygroundApi, RequestFailed, SlotStatus
from iot_playground.clients.run_driver import (
    ProgressCallback,
    RunDriver,
    RunOutcome,
    RunPlan,
    WaitingCallback,
)
from iot_playground.clients.simulate import cancel_on_sigterm
from iot_playground.clients.stats import format_ms, latency_summary, rate
from iot_playground.common.console import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK, progress_bar

SETTLE_POLL_SECONDS = 0.5


@dataclass(frozen=True, slots=True)
class LoadPlan:
    runs: int
    sensors: int
    data_points: int
    interval_ms: int
    concurrency: int
    batch: bool
    user: str
    slot_wait_s: float
    settle_s: float

    def run_plan(self, index: int) -> RunPlan:
        # One user per run: the API lets one user hold only MAX_RUNS_PER_USER runs at once.
        user = f"{self.user}-{index + 1}" if self.runs > 1 else self.user
        return RunPlan(user, self.sensors, self.data_points, self.interval_ms, self.batch)


@dataclass(frozen=True, slots=True)
class NumberedReadings:
    """Readings that say which round they belong to (see the module docstring)."""

    origin_ms: int
    step_ms: int

    def value(self, index: int) -> float:
        # One decimal between 15.0 and 35.0, like the frontend's readings.
        return round(15 + (index % 201) / 10, 1)

    def body(self, sensor_id: str, index: int) -> dict[str, Any]:
        return {
            "sensorId": sensor_id,
            "reading": self.value(index),
            "type": "temperature",
            "timestamp": self.origin_ms + index * self.step_ms,
        }

    def index_of(self, item: dict[str, Any]) -> int | None:
        """The round a stored reading came from, or None if it is none of ours."""
        try:
            offset = parse_iso_ms(str(item["timestamp"])) - self.origin_ms
            value = float(item["reading"])
        except (KeyError, TypeError, ValueError):
            return None
        index, remainder = divmod(offset, self.step_ms)
        if remainder or index < 0 or value != self.value(index):
            return None
        return index


@dataclass(slots=True)
class SensorCheck:
    sent: int = 0
    stored: int = 0
    missing: int = 0
    duplicates: int = 0
    unexpected: int = 0


@dataclass(slots=True)
class RunCheck:
    run_id: str | None
    status: str
    sent: int
    failed: int
    stored: int = 0
    missing: int = 0
    duplicates: int = 0
    unexpected: int = 0
    sensors: dict[str, SensorCheck] = field(default_factory=dict)
    error: str | None = None

    @property
    def lossless(self) -> bool:
        return (
            self.run_id is not None
            and self.error is None
            and self.failed == self.missing == self.duplicates == self.unexpected == 0
        )


def check_run(outcome: RunOutcome, numbering: NumberedReadings, stored: list[dict[str, Any]]) -> RunCheck:
    """Compare what the API acknowledged with what it returns, per sensor and round."""
    check = RunCheck(outcome.run_id, outcome.status, outcome.sent, outcome.failed, error=outcome.error)
    counts: Counter[tuple[str, int]] = Counter()
    for item in stored:
        sensor_id = str(item.get("sensorId"))
        sensor = check.sensors.setdefault(sensor_id, SensorCheck())
        sensor.stored += 1
        index = numbering.index_of(item)
        if index is None:
            sensor.unexpected += 1
        else:
            counts[(sensor_id, index)] += 1
    for sensor_id, rounds in outcome.acknowledged.items():
        sensor = check.sensors.setdefault(sensor_id, SensorCheck())
        sensor.sent = len(rounds)
    for sensor_id, sensor in check.sensors.items():
        acknowledged = set(outcome.acknowledged.get(sensor_id, ()))
        seen = {index for (sid, index) in counts if sid == sensor_id}
        sensor.missing = len(acknowledged - seen)
        sensor.unexpected += sum(counts[(sensor_id, index)] for index in seen - acknowledged)
        sensor.duplicates = sum(counts[(sensor_id, index)] - 1 for index in seen & acknowledged)
    check.sensors = dict(sorted(check.sensors.items(), key=lambda kv: _natural(kv[0])))
    check.stored = len(stored)
    check.missing = sum(s.missing for s in check.sensors.values())
    check.duplicates = sum(s.duplicates for s in check.sensors.values())
    check.unexpected = sum(s.unexpected for s in check.sensors.values())
    return check


def _natural(sensor_id: str) -> tuple[str, int]:
    prefix, _, number = sensor_id.rpartition("-")
    return (prefix, int(number)) if number.isdigit() else (sensor_id, -1)


@dataclass(slots=True)
class LoadState:
    """Everything the report needs, kept outside the event loop so Ctrl-C still has it."""

    outcomes: list[RunOutcome]
    numberings: list[NumberedReadings]
    checks: list[RunCheck] = field(default_factory=list)
    verify_seconds: float = 0.0


async def _drive(
    api: PlaygroundApi,
    plan: LoadPlan,
    state: LoadState,
    progress_advance: ProgressCallback,
    on_waiting: WaitingCallback,
) -> None:
    slots = asyncio.Semaphore(plan.concurrency)

    async def one(index: int) -> None:
        async with slots:
            driver = RunDriver(
                api,
                plan.run_plan(index),
                state.outcomes[index],
                reading=state.numberings[index].body,
                slot_wait_s=plan.slot_wait_s,
                on_progress=progress_advance,
                on_waiting=on_waiting,
            )
            try:
                await driver.run()
            except RequestFailed as error:
                state.outcomes[index].error = error.message

    async with asyncio.TaskGroup() as group:
        for index in range(plan.runs):
            group.create_task(one(index))


async def _read_back(api: PlaygroundApi, plan: LoadPlan, state: LoadState) -> None:
    async def one(outcome: RunOutcome, numbering: NumberedReadings) -> RunCheck:
        if outcome.run_id is None:
            return check_run(outcome, numbering, [])
        # On DynamoDB the by-run index is eventually consistent: give stragglers a moment.
        deadline = time.monotonic() + plan.settle_s
        while True:
            check = check_run(outcome, numbering, await api.run_readings(outcome.run_id))
            if check.missing == 0 or time.monotonic() >= deadline:
                return check
            await asyncio.sleep(SETTLE_POLL_SECONDS)

    started = time.perf_counter()
    state.checks = list(
        await asyncio.gather(*(one(o, n) for o, n in zip(state.outcomes, state.numberings, strict=True)))
    )
    state.verify_seconds = time.perf_counter() - started


async def _load(
    api_url: str,
    plan: LoadPlan,
    state: LoadState,
    progress_advance: ProgressCallback,
    on_waiting: WaitingCallback,
    transport: httpx.AsyncBaseTransport | None,
) -> None:
    cancel_on_sigterm()
    connections = min(500, plan.concurrency * (1 if plan.batch else plan.sensors) + 4)
    async with PlaygroundApi(api_url, max_connections=connections, transport=transport) as api:
        await _drive(api, plan, state, progress_advance, on_waiting)
        await _read_back(api, plan, state)


def run_load(
    api_url: str,
    plan: LoadPlan,
    *,
    report_path: Path | None,
    console: Console,
    transport: httpx.AsyncBaseTransport | None = None,
) -> int:
    """Drive the runs, verify them, print and write the report; returns the exit code.

    `transport` replaces the network (httpx), e.g. with an in-process fake API."""
    origin = now_ms()
    step = max(1, plan.interval_ms)
    state = LoadState(
        outcomes=[RunOutcome() for _ in range(plan.runs)],
        numberings=[NumberedReadings(origin, step) for _ in range(plan.runs)],
    )
    progress = progress_bar(Console(stderr=True))
    task = progress.add_task("readings", total=plan.runs * plan.sensors * plan.data_points, note="")

    def waiting(slots: SlotStatus) -> None:
        progress.update(
            task, note=f"waiting for a slot ({slots.current_running}/{slots.max_allowed} running)"
        )

    def advance(count: int) -> None:
        progress.update(task, advance=count, note="")

    interrupted = False
    with progress:
        try:
            asyncio.run(_load(api_url, plan, state, advance, waiting, transport))
        except (KeyboardInterrupt, asyncio.CancelledError):
            interrupted = True
    report = load_report(api_url, plan, state, interrupted=interrupted)
    render_report(console, report)
    if report_path is not None:
        report_path.write_text(json.dumps(report, indent=2) + "\n")
        console.print(f"report written to {report_path}")
    if interrupted:
        return EXIT_INTERRUPTED
    return EXIT_OK if report["ok"] else EXIT_FAILED


def load_report(api_url: str, plan: LoadPlan, state: LoadState, *, interrupted: bool) -> dict[str, Any]:
    outcomes = state.outcomes
    checks = state.checks or [check_run(o, n, []) for o, n in zip(outcomes, state.numberings, strict=True)]
    verified = bool(state.checks) and not interrupted
    starts = [o.first_round_at for o in outcomes if o.first_round_at is not None]
    ends = [o.last_round_at for o in outcomes if o.last_round_at is not None]
    sending_seconds = max(ends) - min(starts) if starts and ends else 0.0
    sent = sum(o.sent for o in outcomes)
    requests = sum(o.requests for o in outcomes)
    totals = {
        "sent": sent,
        "failed": sum(o.failed for o in outcomes),
        "stored": sum(c.stored for c in checks) if verified else None,
        "missing": sum(c.missing for c in checks) if verified else None,
        "duplicates": sum(c.duplicates for c in checks) if verified else None,
        "unexpected": sum(c.unexpected for c in checks) if verified else None,
    }
    return {
        "api": api_url,
        "plan": asdict(plan),
        "planned": plan.runs * plan.sensors * plan.data_points,
        "totals": totals,
        "sendingSeconds": round(sending_seconds, 3),
        "verifySeconds": round(state.verify_seconds, 3),
        "throughput": {
            "readingsPerSecond": rate(sent, sending_seconds),
            "requestsPerSecond": rate(requests, sending_seconds),
        },
        "latencyMs": latency_summary([ms for o in outcomes for ms in o.latencies_ms]),
        "runs": [
            {
                "runId": c.run_id,
                "status": c.status,
                "sent": c.sent,
                "failed": c.failed,
                "stored": c.stored if verified else None,
                "missing": c.missing if verified else None,
                "duplicates": c.duplicates if verified else None,
                "unexpected": c.unexpected if verified else None,
                "error": c.error,
                "sensors": {sid: asdict(s) for sid, s in c.sensors.items()} if verified else {},
            }
            for c in checks
        ],
        "interrupted": interrupted,
        "ok": verified and all(c.lossless for c in checks),
    }


def _cell(value: Any) -> str:
    return "-" if value is None else str(value)


def render_report(console: Console, report: dict[str, Any]) -> None:
    table = Table(title="load: sent vs stored", title_justify="left")
    for column in ("run", "status", "sent", "failed", "stored", "missing", "duplicates", "unexpected"):
        table.add_column(column, justify="left" if column in ("run", "status") else "right")
    for run in report["runs"]:
        table.add_row(
            _cell(run["runId"]),
            run["status"],
            *(_cell(run[k]) for k in ("sent", "failed", "stored", "missing", "duplicates", "unexpected")),
        )
    totals = report["totals"]
    table.add_section()
    table.add_row(
        "total",
        "",
        *(_cell(totals[k]) for k in ("sent", "failed", "stored", "missing", "duplicates", "unexpected")),
    )
    console.print(table)
    for run in report["runs"]:
        if run["error"]:
            console.print(f"run {_cell(run['runId'])}: {run['error']}")
        for sensor_id, sensor in run["sensors"].items():
            if (
                sensor["missing"]
                or sensor["duplicates"]
                or sensor["unexpected"]
                or sensor["sent"] != sensor["stored"]
            ):
                console.print(
                    f"run {run['runId']} {sensor_id}: sent {sensor['sent']}, stored {sensor['stored']}, "
                    f"missing {sensor['missing']}, duplicates {sensor['duplicates']}, "
                    f"unexpected {sensor['unexpected']}"
                )
    latency = report["latencyMs"]
    throughput = report["throughput"]
    console.print(
        f"throughput {throughput['readingsPerSecond']:.1f} readings/s "
        f"({throughput['requestsPerSecond']:.1f} requests/s over {report['sendingSeconds']:.1f} s); "
        f"latency p50 {format_ms(latency['p50'])}, p95 {format_ms(latency['p95'])}, "
        f"p99 {format_ms(latency['p99'])}"
    )
    if report["interrupted"]:
        console.print("interrupted: running runs were finished as FAILED; nothing was verified")
    else:
        verdict = "no loss" if report["ok"] else "LOSS DETECTED"
        console.print(f"{verdict}: {_cell(totals['sent'])} sent, {_cell(totals['stored'])} stored")
