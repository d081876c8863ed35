"""Domain objects as the API shows them."""

from __future__ import annotations

from chalicelib import clock
from chalicelib.grafana import run_dashboard_url
from chalicelib.readings import Reading
from chalicelib.runs import Run
from chalicelib.schemas import ReadingView, RunParamsView, RunView
from chalicelib.settings import Settings


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


def reading_view(reading: Reading) -> ReadingView:
    return ReadingView(
        sensorId=reading.sensor_id,
        type=reading.type,
        reading=reading.value,
        timestamp=clock.format_ms(reading.timestamp_ms),
        runId=reading.run_id,
        user=reading.user,
    )
