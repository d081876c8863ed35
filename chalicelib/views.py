"""A reading as the API shows it (a run's view is in run_shape.py, next to its item)."""

from __future__ import annotations

from chalicelib import clock
from chalicelib.readings import Reading
from chalicelib.schemas import ReadingView


def reading_view(reading: Reading) -> ReadingView:
    return ReadingView(
        sensorId=reading.sensor_id,
        type=reading.type,
        reading=reading.value,
        timestamp=clock.format_ms(reading.timestamp_ms),
        runId=reading.run_id,
        user=reading.user,
    )
