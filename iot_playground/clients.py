"""Clients of the API, calling it as the frontend does: `simulate` drives runs (and with --verify reads
every reading back), `interrupt-all` ends them all."""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import random
import signal
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from chalicelib.schemas import now_ms, parse_iso_ms
from iot_playground.common.console import EXIT_INTERRUPTED, progress_bar
from iot_playground.common.mqtt_topics import device_topic

SUCCESS_MESSAGE = "Simulation completed successfully"
INTERRUPTED_MESSAGE = "Simulation interrupted from the command line"
SLOT_POLL_SECONDS = 1.0
# A Query may lag a write it follows (eventually consistent reads): --verify re-reads a run this long.
SETTLE_SECONDS = 5.0
FINISH_TIMEOUT_SECONDS = 10.0
CHECKED = ("sent", "stored", "missing", "duplicates", "unexpected")

Key = tuple[str, int | None, float]  # a reading as sent and as read back: sensor, timestamp (ms), value
Send = Callable[[str, Any], Awaitable[float]]  # (run id, one reading or a batch) -> latency in ms
Transport = httpx.AsyncBaseTransport  # in place of the network, e.g. an in-process fake API


class RequestFailed(Exception):
    """A non-2xx answer (`body` its JSON) or none at all."""

    def __init__(self, message: str, body: Any = None):
        super().__init__(message)
        self.body = body


def api_client(api_url: str, connections: int = 100, transport: Transport | None = None) -> httpx.AsyncClient:
    limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
    return httpx.AsyncClient(base_url=api_url.rstrip("/"), timeout=15.0, limits=limits, transport=transport)


async def call(api: httpx.AsyncClient, method: str, path: str, **request: Any) -> tuple[Any, float]:
    """The answer's JSON body and its latency in milliseconds; RequestFailed unless it is a 2xx."""
    started = time.perf_counter()
    try:
        response = await api.request(method, path, **request)
    except httpx.HTTPError as error:
        raise RequestFailed(f"{method} {path}: {type(error).__name__}: {error}") from error
    latency_ms = (time.perf_counter() - started) * 1000
    body = None
    with contextlib.suppress(ValueError):
        body = response.json()
    if not response.is_success:
        # The frontend shows the error body's `message`; so do we.
        detail = body.get("message") if isinstance(body, dict) else None
        detail = detail or response.text[:200] or response.reason_phrase
        raise RequestFailed(f"{method} {path}: HTTP {response.status_code}: {detail}", body)
    return body, latency_ms


@contextlib.asynccontextmanager
async def mqtt_sender(url: str, stage: str = "local", timeout_s: float = 15.0) -> AsyncIterator[Send]:
    """`simulate --mqtt`: each reading published (QoS 1) to its sensor's topic instead of POSTed;
    the latency is PUBLISH to PUBACK."""
    from amqtt.client import ClientError, MQTTClient
    from amqtt.mqtt.constants import QOS_1

    client = MQTTClient(f"simulate-{uuid.uuid4().hex[:8]}", {"auto_reconnect": False})
    try:
        await asyncio.wait_for(client.connect(url), timeout_s)
    except (ClientError, OSError, TimeoutError) as error:
        raise RequestFailed(f"MQTT broker {url}: {error}") from error

    async def publish(run_id: str, body: Any) -> float:
        reading = dict(body)
        topic = device_topic(stage, run_id, str(reading.pop("sensorId")))
        started = time.perf_counter()
        try:
            await asyncio.wait_for(client.publish(topic, json.dumps(reading).encode(), QOS_1), timeout_s)
        except (ClientError, TimeoutError) as error:
            raise RequestFailed(f"publish to {topic}: {error or 'no PUBACK in time'}") from error
        return (time.perf_counter() - started) * 1000

    try:
        yield publish
    finally:
        await client.disconnect()


@dataclass(frozen=True, slots=True)
class Plan:
    user: str
    sensors: int
    count: int
    interval_ms: int
    batch: bool = False
    runs: int = 1
    slot_wait_s: float | None = None  # None: refuse like the frontend when no slot is free
    # Read each run back and account for every reading. The readings then name their round (reading
    # `i` of a sensor is taken at start + i * interval, its value derived from `i`), so the check
    # tells exactly which are missing, stored twice, or stored but never sent.
    verify: bool = False
    mqtt_url: str | None = None

    @property
    def sensor_ids(self) -> list[str]:
        return [f"sensor-{n}" for n in range(1, self.sensors + 1)]

    @property
    def duration_s(self) -> int:
        # The frontend's arithmetic; at least 1 because the API refuses 0.
        return max(1, math.ceil(self.count * self.interval_ms / 1000))

    @property
    def interval_s(self) -> int:
        return max(1, math.ceil(self.interval_ms / 1000))

    def reading(self, sensor_id: str, round_index: int, numbered_from_ms: int) -> dict[str, Any]:
        if not self.verify:  # the frontend's reading, stamped on arrival
            return {"sensorId": sensor_id, "reading": round(random.uniform(15, 35), 1), "type": "temperature"}
        value = round(15 + round_index % 201 / 10, 1)  # 15.0-35.0, one decimal, as the frontend's
        timestamp = numbered_from_ms + round_index * max(1, self.interval_ms)
        return {"sensorId": sensor_id, "reading": value, "type": "temperature", "timestamp": timestamp}


@dataclass(slots=True)
class RunOutcome:
    """Filled in as the run goes, so an interrupted run still has its numbers."""

    user: str
    run_id: str | None = None
    status: str = "NOT_STARTED"
    failed: int = 0
    requests: int = 0
    latencies_ms: list[float] = field(default_factory=list)
    acknowledged: list[Key] = field(default_factory=list)  # the readings the API accepted
    error: str | None = None
    finish_error: str | None = None
    sending: list[float] = field(default_factory=list)  # when the first round began, when the last ended
    stored: list[dict[str, Any]] | None = None  # with --verify, the run's readings as read back

    @property
    def sent(self) -> int:
        return len(self.acknowledged)


async def drive_run(
    api: httpx.AsyncClient,
    plan: Plan,
    outcome: RunOutcome,
    *,
    send: Send | None = None,
    progress: Progress | None = None,
) -> None:
    """One run as the frontend drives it: can-start, start, `count` rounds of one reading per sensor
    (all at once, or one batch), each `interval_ms` after the previous round's answers, finish. A
    refused reading stops the run, as in the frontend; a cancelled one (Ctrl-C) is finished as FAILED
    so that it holds no slot until the server times it out. `progress` has one task."""

    async def post(run_id: str, body: Any) -> float:
        headers = {"X-User": outcome.user, "X-Run-Id": run_id}
        return (await call(api, "POST", "/api/sensors/data", headers=headers, json=body))[1]

    send = send or post
    try:
        run_id = outcome.run_id = await _start(api, plan, outcome, progress)
    except RequestFailed as error:
        outcome.error = str(error)
        return
    outcome.status, numbered_from_ms = "RUNNING", now_ms()
    if progress is not None:
        progress.console.print(f"run {run_id} started")
    outcome.sending = [time.perf_counter()] * 2
    try:
        for round_index in range(plan.count):
            if round_index:
                await asyncio.sleep(plan.interval_ms / 1000)
            readings = [plan.reading(sensor, round_index, numbered_from_ms) for sensor in plan.sensor_ids]
            groups = [readings] if plan.batch else [[reading] for reading in readings]
            outcome.requests += len(groups)
            answers = await asyncio.gather(
                *(send(run_id, group if plan.batch else group[0]) for group in groups), return_exceptions=True
            )
            for group, answer in zip(groups, answers, strict=True):
                if isinstance(answer, RequestFailed):
                    outcome.failed += len(group)
                    outcome.error = outcome.error or str(answer)
                elif isinstance(answer, BaseException):
                    raise answer
                else:
                    outcome.latencies_ms.append(answer)
                    outcome.acknowledged += [(r["sensorId"], r.get("timestamp"), r["reading"]) for r in group]
            outcome.sending[1] = time.perf_counter()
            if progress is not None:
                progress.update(progress.task_ids[0], advance=plan.sensors, description="readings")
            if outcome.error:
                break
    except asyncio.CancelledError:
        outcome.sending[1] = time.perf_counter()
        await _finish(api, outcome, "FAILED", INTERRUPTED_MESSAGE)
        raise
    if outcome.error:
        await _finish(api, outcome, "FAILED", f"Simulation stopped: {outcome.error}"[:2000])
    else:
        await _finish(api, outcome, "SUCCESS", SUCCESS_MESSAGE)


async def _start(api: httpx.AsyncClient, plan: Plan, outcome: RunOutcome, progress: Progress | None) -> str:
    deadline = time.monotonic() + (plan.slot_wait_s or 0)
    params = {"sensorIds": plan.sensor_ids, "duration": plan.duration_s, "interval": plan.interval_s}
    while True:
        slots, _ = await call(api, "GET", "/api/runs/can-start")
        if slots["canStart"]:
            start = asyncio.ensure_future(
                call(api, "POST", "/api/runs/start", headers={"X-User": outcome.user}, json=params)
            )
            try:
                return str((await asyncio.shield(start))[0]["runId"])
            except RequestFailed as refused:  # someone took the last slot meanwhile
                if not (isinstance(refused.body, dict) and "currentRunning" in refused.body):
                    raise
                slots = refused.body
            except asyncio.CancelledError:
                # The start may already have reached the server: let it answer, then end the run
                # it created rather than leave that run holding a slot.
                with contextlib.suppress(Exception):
                    outcome.run_id = str((await asyncio.wait_for(start, FINISH_TIMEOUT_SECONDS))[0]["runId"])
                    await _finish(api, outcome, "FAILED", INTERRUPTED_MESSAGE)
                raise
        # The frontend's wording when it refuses to start.
        full = f"{slots['currentRunning']}/{slots['maxAllowed']} simulations running, no slot available"
        if plan.slot_wait_s is None or time.monotonic() >= deadline:
            raise RequestFailed(full)
        if progress is not None:
            progress.update(progress.task_ids[0], description=f"waiting: {full}")
        await asyncio.sleep(SLOT_POLL_SECONDS)


async def _finish(api: httpx.AsyncClient, outcome: RunOutcome, status: str, message: str) -> None:
    # Like the frontend: no X-User here (its preflight asks only for content-type).
    body = {"status": status, "message": message}
    try:
        run, _ = await asyncio.wait_for(
            call(api, "POST", f"/api/runs/{outcome.run_id}/finish", json=body), FINISH_TIMEOUT_SECONDS
        )
        outcome.status = str(run.get("status") or status)
    except (RequestFailed, TimeoutError) as error:
        # The frontend only logs a failed finish; the summary shows it instead.
        outcome.finish_error, outcome.status = str(error) or type(error).__name__, status


async def read_back(api: httpx.AsyncClient, outcome: RunOutcome) -> list[dict[str, Any]]:
    """Every stored reading of the run, page by page; read again (for SETTLE_SECONDS at most)
    while some acknowledged reading is not there yet."""
    deadline = time.monotonic() + SETTLE_SECONDS
    while True:
        stored, query = [], {"runId": outcome.run_id, "limit": 1000, "order": "asc"}
        while True:
            page, _ = await call(api, "GET", "/api/sensors/data", params=query)
            stored += page["items"]
            if not page.get("nextKey"):
                break
            query["nextKey"] = page["nextKey"]
        if check(outcome.acknowledged, stored)[0]["missing"] == 0 or time.monotonic() >= deadline:
            return stored
        await asyncio.sleep(0.5)


def check(sent: list[Key], stored: list[dict[str, Any]]) -> tuple[dict[str, int], dict[str, dict[str, int]]]:
    """In all and per sensor: readings sent, stored, missing (acknowledged, not stored), stored
    more than once (duplicates) and stored but never acknowledged (unexpected)."""
    acknowledged = Counter(sent)
    found = Counter[Key]((str(r["sensorId"]), parse_iso_ms(r["timestamp"]), r["reading"]) for r in stored)
    sensors: dict[str, dict[str, int]] = {}
    for key in sorted(acknowledged.keys() | found.keys(), key=lambda k: (len(k[0]), k[0])):
        counts = sensors.setdefault(key[0], dict.fromkeys(CHECKED, 0))
        counts["sent"] += acknowledged[key]
        counts["stored"] += found[key]
        if acknowledged[key]:
            counts["missing"] += found[key] == 0
            counts["duplicates"] += max(0, found[key] - 1)
        else:
            counts["unexpected"] += found[key]
    return {what: sum(s[what] for s in sensors.values()) for what in CHECKED}, sensors


def simulate(
    url: str, plan: Plan, *, report_path: Path | None, console: Console, transport: Transport | None = None
) -> int:
    """Drive `plan.runs` runs at once (run n as `<user>-<n>` when there are several: the API lets
    one user hold only MAX_RUNS_PER_USER runs), print the summary and write the report. The exit
    code: 0, 1 on any refused reading, failed run or (verified) loss, 130 on Ctrl-C or SIGTERM."""
    users = [f"{plan.user}-{n}" for n in range(1, plan.runs + 1)] if plan.runs > 1 else [plan.user]
    outcomes = [RunOutcome(user) for user in users]
    progress = progress_bar()
    progress.add_task("readings", total=plan.runs * plan.count * plan.sensors)

    async def drive() -> None:
        task = asyncio.current_task()
        assert task is not None
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)  # as Ctrl-C does
        connections = min(500, plan.runs * (1 if plan.batch else plan.sensors) + 4)
        async with api_client(url, connections, transport) as api, contextlib.AsyncExitStack() as stack:
            # With --mqtt the runs still start and finish over HTTP; their readings go to the broker.
            send = await stack.enter_async_context(mqtt_sender(plan.mqtt_url)) if plan.mqtt_url else None
            await asyncio.gather(*(drive_run(api, plan, o, send=send, progress=progress) for o in outcomes))
            for outcome in outcomes if plan.verify else ():
                try:
                    outcome.stored = await read_back(api, outcome) if outcome.run_id else []
                except RequestFailed as error:
                    outcome.error = outcome.error or f"reading it back: {error}"

    interrupted = False
    with progress:
        try:
            asyncio.run(drive())
        except (KeyboardInterrupt, asyncio.CancelledError):  # its runs were finished as FAILED
            interrupted = True
        except RequestFailed as error:  # the broker
            outcomes[0].error = str(error)
    report = _report(url, plan, outcomes, interrupted)
    if report_path is not None:
        report_path.write_text(json.dumps(report, indent=2) + "\n")
    _render(console, report)
    return EXIT_INTERRUPTED if interrupted else 0 if report["ok"] else 1


def _report(api_url: str, plan: Plan, outcomes: list[RunOutcome], interrupted: bool) -> dict[str, Any]:
    runs = []
    for outcome in outcomes:
        readings = None if interrupted else outcome.stored  # an interrupted run is not checked
        run: dict[str, Any] = {"runId": outcome.run_id, "user": outcome.user, "status": outcome.status}
        run |= {"sent": outcome.sent, "failed": outcome.failed, "requests": outcome.requests}
        if plan.verify:
            totals, sensors = check(outcome.acknowledged, readings) if readings is not None else ({}, {})
            run |= {what: totals.get(what) for what in CHECKED[1:]} | {"sensors": sensors}
        losses = [run.get(what, 0) for what in ("failed", *CHECKED[2:])]
        lossless = bool(outcome.run_id) and not outcome.error and losses == [0] * len(losses)
        runs.append(run | {"error": outcome.error, "finishError": outcome.finish_error, "ok": lossless})
    counted = ("sent", "failed", *(CHECKED[1:] if plan.verify else ()))
    columns = {what: [run[what] for run in runs] for what in counted}
    return {
        "api": api_url,
        "plan": asdict(plan),
        "totals": {what: None if None in values else sum(values) for what, values in columns.items()},
        **speed(outcomes),
        "runs": runs,
        "ok": all(run["ok"] for run in runs),
        "interrupted": interrupted,
    }


def speed(outcomes: list[RunOutcome]) -> dict[str, Any]:
    latencies = sorted(ms for outcome in outcomes for ms in outcome.latencies_ms)
    sending = [outcome.sending for outcome in outcomes if outcome.sending]
    seconds = max(end for _, end in sending) - min(start for start, _ in sending) if sending else 0.0

    def rate(count: int) -> float:
        return round(count / seconds, 1) if seconds > 0 else 0.0

    def observed(share: float) -> float | None:  # nearest rank: a latency that was observed
        return round(latencies[max(1, math.ceil(share * len(latencies))) - 1], 1) if latencies else None

    return {
        "sendingSeconds": round(seconds, 3),
        "throughput": {
            "readingsPerSecond": rate(sum(outcome.sent for outcome in outcomes)),
            "requestsPerSecond": rate(sum(outcome.requests for outcome in outcomes)),
        },
        "latencyMs": {
            "count": len(latencies),
            **{f"p{p}": observed(p / 100) for p in (50, 95, 99)},
            "max": observed(1),
            "mean": round(sum(latencies) / len(latencies), 1) if latencies else None,
        },
    }


def _render(console: Console, report: dict[str, Any]) -> None:
    def cell(value: Any) -> str:
        return "-" if value is None else str(value)

    counted = list(report["totals"])
    table = Table(title="simulation summary", title_justify="left")
    for column in ("run", "status", *counted):
        table.add_column(column, justify="right" if column in counted else "left")
    for run in report["runs"]:
        table.add_row(cell(run["runId"]), run["status"], *(cell(run[what]) for what in counted))
    if len(report["runs"]) > 1:
        table.add_section()
        table.add_row("total", "", *(cell(report["totals"][what]) for what in counted))
    console.print(table)
    for run in report["runs"]:
        for what, error in (("error", run["error"]), ("finishing it failed", run["finishError"])):
            if error:
                console.print(f"run {cell(run['runId'])}: {what}: {error}")
        for sensor_id, counts in run.get("sensors", {}).items():
            if any(counts[what] for what in CHECKED[2:]):
                counted_here = ", ".join(f"{what} {number}" for what, number in counts.items())
                console.print(f"run {run['runId']} {sensor_id}: {counted_here}")
    rates, latency = report["throughput"], report["latencyMs"]
    if latency["count"]:
        console.print(
            f"throughput {rates['readingsPerSecond']:.1f} readings/s ({rates['requestsPerSecond']:.1f} "
            f"requests/s over {report['sendingSeconds']:.1f} s); latency "
            + ", ".join(f"{p} {latency[p]} ms" for p in ("p50", "p95", "p99"))
        )
    totals = report["totals"]
    if report["interrupted"]:
        console.print("interrupted: every run still going was finished as FAILED")
    elif "stored" in totals:
        verdict = "no loss" if report["ok"] else "LOSS DETECTED"
        console.print(f"{verdict}: {cell(totals['sent'])} sent, {cell(totals['stored'])} stored")


async def interrupt_all(api_url: str, admin_key: str, transport: Transport | None = None) -> str:
    """POST /api/runs/interrupt-all with the admin key (in API Gateway's header for API keys,
    which `make run` checks too); the API's message."""
    async with api_client(api_url, transport=transport) as api:
        headers = {"Content-Type": "application/json", "x-api-key": admin_key}
        body, _ = await call(api, "POST", "/api/runs/interrupt-all", headers=headers)
    return str(body.get("message") or body)
