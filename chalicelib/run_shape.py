"""A run, whole: its statuses, the `Run` the code passes around, its DynamoDB item and its
JSON view. A new field of a run is a change here (and in what sets it: a request shape in
`schemas.py`, a state change in `runs.py`).

The runs table's keys are attributes named here too (`tables.RUNS` takes them from `Attr`);
`runs.py` moves runs through their states, `openapi.py` documents the structs below.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any

import msgspec

from chalicelib import clock
from chalicelib.grafana import run_dashboard_url
from chalicelib.settings import Settings

RUNNING = "RUNNING"
TERMINAL_STATUSES = ("SUCCESS", "FAILED", "INTERRUPTED", "TIMEOUT")
RUN_STATUSES: tuple[str, ...] = (RUNNING, *TERMINAL_STATUSES)
# Partition value shared by all run items in the runs-by-start index (runs are few:
# the whole history of the playground is one time-ordered list).
RUN_ENTITY = "RUN"


class Attr:
    """The run item's attribute names."""

    ID = "id"
    ENTITY = "entity"  # RUN_ENTITY: what tells a run item from the other items of the table
    USERNAME = "username"
    STATUS = "status"
    STARTED_AT = "startedAt"
    DURATION = "duration"
    INTERVAL = "interval"
    SENSOR_IDS = "sensorIds"
    FINISHED_AT = "finishedAt"
    ERROR_MESSAGE = "errorMessage"
    # The widest span of the run's reading chunks, as a level of readings.SPAN_LEVELS_MS
    # (see `ReadingRepository.prepare`): newest-first queries read that far past a page.
    READING_SPAN = "readingSpanMs"


@dataclass(frozen=True, slots=True)
class Run:
    id: str
    username: str
    status: str
    started_ms: int
    duration: int
    interval: int
    sensor_ids: tuple[str, ...]
    finished_ms: int | None = None
    error_message: str | None = None
    # None: not recorded (runs from before it was, imported runs): any span up to the largest.
    reading_span_ms: int | None = None

    def deadline_ms(self, grace_seconds: int) -> int:
        return self.started_ms + (self.duration + grace_seconds) * 1000

    def is_overdue(self, grace_seconds: int, now_ms: int) -> bool:
        return self.status == RUNNING and now_ms > self.deadline_ms(grace_seconds)


# ---- the item ----------------------------------------------------------------


def run_to_item(run: Run) -> dict[str, Any]:
    item: dict[str, Any] = {
        Attr.ID: {"S": run.id},
        Attr.ENTITY: {"S": RUN_ENTITY},
        Attr.USERNAME: {"S": run.username},
        Attr.STATUS: {"S": run.status},
        Attr.STARTED_AT: {"S": clock.format_ms(run.started_ms)},
        Attr.DURATION: {"N": str(run.duration)},
        Attr.INTERVAL: {"N": str(run.interval)},
        Attr.SENSOR_IDS: {"L": [{"S": s} for s in run.sensor_ids]},
    }
    if run.finished_ms is not None:
        item[Attr.FINISHED_AT] = {"S": clock.format_ms(run.finished_ms)}
    if run.error_message is not None:
        item[Attr.ERROR_MESSAGE] = {"S": run.error_message}
    if run.reading_span_ms is not None:
        item[Attr.READING_SPAN] = {"N": str(run.reading_span_ms)}
    return item


def item_to_run(item: dict[str, Any]) -> Run:
    finished = item.get(Attr.FINISHED_AT)
    error = item.get(Attr.ERROR_MESSAGE)
    return Run(
        id=item[Attr.ID]["S"],
        username=item[Attr.USERNAME]["S"],
        status=item[Attr.STATUS]["S"],
        started_ms=clock.parse_iso_ms(item[Attr.STARTED_AT]["S"]),
        duration=int(item[Attr.DURATION]["N"]),
        interval=int(item[Attr.INTERVAL]["N"]),
        sensor_ids=tuple(v["S"] for v in item.get(Attr.SENSOR_IDS, {}).get("L", [])),
        finished_ms=clock.parse_iso_ms(finished["S"]) if finished else None,
        error_message=error["S"] if error else None,
        reading_span_ms=_reading_span(item),
    )


def _reading_span(item: dict[str, Any]) -> int | None:
    span = item.get(Attr.READING_SPAN)
    return int(span["N"]) if span else None


# ---- the view ------------------------------------------------------------------


class RunParamsView(msgspec.Struct):
    runId: str
    sensorIds: list[str]
    duration: int
    interval: int


class RunView(msgspec.Struct):
    id: str
    runId: str
    username: str
    status: Annotated[str, msgspec.Meta(extra_json_schema={"enum": list(RUN_STATUSES)})]
    startedAt: str
    finishedAt: str | None
    duration: int
    interval: int
    params: RunParamsView
    grafanaUrl: str
    errorMessage: str | None


def run_view(run: Run, settings: Settings) -> RunView:
    return RunView(
        id=run.id,
        runId=run.id,
        username=run.username,
        status=run.status,
        startedAt=clock.format_ms(run.started_ms),
        finishedAt=clock.format_ms(run.finished_ms) if run.finished_ms is not None else None,
        duration=run.duration,
        interval=run.interval,
        params=RunParamsView(
            runId=run.id, sensorIds=list(run.sensor_ids), duration=run.duration, interval=run.interval
        ),
        grafanaUrl=run_dashboard_url(
            settings.grafana_url,
            run_id=run.id,
            user=run.username,
            started_ms=run.started_ms,
            duration_s=run.duration,
        ),
        errorMessage=run.error_message,
    )
