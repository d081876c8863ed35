"""Drive one run the way the frontend does; `simulate` runs one, `load` several at once.

The flow: can-start, start, then `count` rounds of one reading per sensor (all
in parallel, or one batch request), each round starting `interval_ms` after the
previous round's answers arrived, then finish. Any refused reading stops the
run, as in the frontend. A cancelled run (Ctrl-C) is finished as FAILED so it
does not hold a slot until the server times it out.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from iot_playground.clients.api_client import (
    SUCCESS_MESSAGE,
    PlaygroundApi,
    RequestFailed,
    RunLimitReached,
    SlotStatus,
)

INTERRUPTED_MESSAGE = "Simulation interrupted from the command line"
SLOT_POLL_SECONDS = 1.0
FINISH_TIMEOUT_SECONDS = 10.0

ReadingFactory = Callable[[str, int], dict[str, Any]]
"""(sensor id, round index) -> the reading's JSON body."""


def frontend_reading(sensor_id: str, round_index: int) -> dict[str, Any]:
    return {"sensorId": sensor_id, "reading": round(random.uniform(15, 35), 1), "type": "temperature"}


@dataclass(frozen=True, slots=True)
class RunPlan:
    user: str
    sensors: int
    count: int
    interval_ms: int
    batch: bool = False

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

    @property
    def total_readings(self) -> int:
        return self.count * self.sensors


@dataclass(slots=True)
class RunOutcome:
    """Filled in as the run goes, so an interrupted run still has its numbers."""

    run_id: str | None = None
    status: str = "NOT_STARTED"
    sent: int = 0
    failed: int = 0
    requests: int = 0
    latencies_ms: list[float] = field(default_factory=list)
    # Round indices the API accepted, per sensor: what `load` expects to read back.
    acknowledged: dict[str, list[int]] = field(default_factory=dict)
    error: str | None = None
    finish_error: str | None = None
    interrupted: bool = False
    first_round_at: float | None = None
    last_round_at: float | None = None

    @property
    def sending_seconds(self) -> float:
        if self.first_round_at is None or self.last_round_at is None:
            return 0.0
        return self.last_round_at - self.first_round_at

    def acknowledge(self, sensor_id: str, round_index: int) -> None:
        self.sent += 1
        self.acknowledged.setdefault(sensor_id, []).append(round_index)


ProgressCallback = Callable[[int], None]
StartedCallback = Callable[[str], None]
WaitingCallback = Callable[[SlotStatus], None]


@dataclass(slots=True)
class RunDriver:
    api: PlaygroundApi
    plan: RunPlan
    outcome: RunOutcome
    reading: ReadingFactory = frontend_reading
    # None: refuse like the frontend when no slot is free; else wait up to this long for one.
    slot_wait_s: float | None = None
    on_progress: ProgressCallback | None = None
    on_started: StartedCallback | None = None
    on_waiting: WaitingCallback | None = None

    async def run(self) -> RunOutcome:
        run_id = await self._start()
        self.outcome.run_id, self.outcome.status = run_id, "RUNNING"
        if self.on_started:
            self.on_started(run_id)
        self.outcome.first_round_at = time.perf_counter()
        try:
            for round_index in range(self.plan.count):
                if round_index:
                    await asyncio.sleep(self.plan.interval_ms / 1000)
                await self._send_round(run_id, round_index)
                self.outcome.last_round_at = time.perf_counter()
                if self.outcome.error:
                    break
        except asyncio.CancelledError:
            self.outcome.last_round_at = time.perf_counter()
            self.outcome.interrupted = True
            await self._finish("FAILED", INTERRUPTED_MESSAGE)
            raise
        if self.outcome.error:
            await self._finish("FAILED", f"Simulation stopped: {self.outcome.error}"[:2000])
        else:
            await self._finish("SUCCESS", SUCCESS_MESSAGE)
        return self.outcome

    async def _start(self) -> str:
        deadline = None if self.slot_wait_s is None else time.monotonic() + self.slot_wait_s
        while True:
            slots = await self.api.can_start()
            if slots.can_start:
                try:
                    return await self._start_once()
                except RunLimitReached as full:  # someone took the last slot meanwhile
                    slots = full.slots
            if deadline is None or time.monotonic() >= deadline:
                raise RunLimitReached(slots)
            if self.on_waiting:
                self.on_waiting(slots)
            await asyncio.sleep(SLOT_POLL_SECONDS)

    async def _start_once(self) -> str:
        start = asyncio.ensure_future(
            self.api.start_run(
                user=self.plan.user,
                sensor_ids=self.plan.sensor_ids,
                duration=self.plan.duration_s,
                interval=self.plan.interval_s,
            )
        )
        try:
            return await asyncio.shield(start)
        except asyncio.CancelledError:
            # The start may already have reached the server: let it answer, then end
            # the run it created, rather than leave that run holding a slot.
            self.outcome.interrupted = True
            with contextlib.suppress(Exception):
                self.outcome.run_id = await asyncio.wait_for(start, FINISH_TIMEOUT_SECONDS)
                await self._finish("FAILED", INTERRUPTED_MESSAGE)
            raise

    async def _send_round(self, run_id: str, round_index: int) -> None:
        sensor_ids = self.plan.sensor_ids
        bodies = [self.reading(sensor_id, round_index) for sensor_id in sensor_ids]
        if self.plan.batch:
            self.outcome.requests += 1
            try:
                latency = await self.api.post_readings(user=self.plan.user, run_id=run_id, body=bodies)
            except RequestFailed as error:
                self.outcome.failed += len(bodies)
                self.outcome.error = error.message
            else:
                self.outcome.latencies_ms.append(latency)
                for sensor_id in sensor_ids:
                    self.outcome.acknowledge(sensor_id, round_index)
        else:
            self.outcome.requests += len(bodies)
            results = await asyncio.gather(
                *(self.api.post_readings(user=self.plan.user, run_id=run_id, body=body) for body in bodies),
                return_exceptions=True,
            )
            for sensor_id, result in zip(sensor_ids, results, strict=True):
                if isinstance(result, RequestFailed):
                    self.outcome.failed += 1
                    self.outcome.error = self.outcome.error or result.message
                elif isinstance(result, BaseException):
                    raise result
                else:
                    self.outcome.latencies_ms.append(result)
                    self.outcome.acknowledge(sensor_id, round_index)
        if self.on_progress:
            self.on_progress(len(bodies))

    async def _finish(self, status: str, message: str) -> None:
        run_id = self.outcome.run_id
        if run_id is None:
            return
        try:
            run = await asyncio.wait_for(
                self.api.finish_run(run_id, status=status, message=message), FINISH_TIMEOUT_SECONDS
            )
        except (RequestFailed, TimeoutError) as error:
            # The frontend only logs a failed finish; the summary shows it instead.
            self.outcome.finish_error = str(error) or type(error).__name__
            self.outcome.status = status
            return
        self.outcome.status = str(run.get("status") or status)
