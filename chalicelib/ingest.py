"""Sensor readings from request body to table and metrics."""

from __future__ import annotations

from dataclasses import dataclass

from chalicelib import clock, metrics
from chalicelib.errors import ValidationFailed
from chalicelib.readings import Chunk, Reading, ReadingRepository, new_nonce
from chalicelib.run_shape import Run
from chalicelib.run_status import RunStatusCache
from chalicelib.schemas import DEFAULT_READING_TYPE, MEASUREMENT_FIELDS, ReadingIn
from chalicelib.values import run_id_value, timestamp_value

# DynamoDB numbers cannot be closer to zero than 1e-130; nothing a sensor sends is.
_SMALLEST_MAGNITUDE = 1e-100


@dataclass(frozen=True, slots=True)
class Ingested:
    readings: list[Reading]
    single: bool  # the request was one `{sensorId, reading}` object


def parse_readings(
    body: ReadingIn | list[ReadingIn],
    *,
    user: str,
    header_run_id: str | None,
    received_ms: int,
    request_identity: str | None = None,
) -> Ingested:
    """`request_identity` is the same for every attempt of one keyed request (Idempotency-Key):
    readings stamped on arrival then get the same keys on a re-send, instead of random ones."""
    items = body if isinstance(body, list) else [body]
    readings: list[Reading] = []
    for position, item in enumerate(items):
        where = f"$[{position}]" if isinstance(body, list) else "$"
        nonce = f"{request_identity}:{position}" if request_identity else new_nonce()
        readings.extend(_readings_of(item, where, user, header_run_id, received_ms, nonce))
    single = not isinstance(body, list) and body.reading is not None
    return Ingested(readings, single)


def _readings_of(
    item: ReadingIn, where: str, user: str, header_run_id: str | None, received_ms: int, nonce: str
) -> list[Reading]:
    run_id = run_id_value(item.runId, source=f"{where}.runId") if item.runId else header_run_id
    timestamp = timestamp_value(item.timestamp, name=f"{where}.timestamp")
    at = received_ms if timestamp is None else timestamp
    # A reading with a timestamp of its own is identified by its content: sent twice, stored once.
    nonce = nonce if timestamp is None else ""
    sensor_id = str(item.sensorId)
    measured = [(name, getattr(item, name)) for name in MEASUREMENT_FIELDS if getattr(item, name) is not None]
    if item.reading is not None and measured:
        raise ValidationFailed(
            f"{where}: send either `reading` (with `type`) or measurement fields, not both"
        )
    if item.reading is not None:
        measured = [(item.type or DEFAULT_READING_TYPE, item.reading)]
    elif item.type is not None:
        raise ValidationFailed(f"{where}: `type` goes with `reading`, which is missing")
    if not measured:
        raise ValidationFailed(
            f"{where}: a reading needs `reading` or at least one of {', '.join(MEASUREMENT_FIELDS)}"
        )
    for name, value in measured:
        if value != 0 and abs(value) < _SMALLEST_MAGNITUDE:
            raise ValidationFailed(f"{where}: {name} {value!r} is too close to zero to store")
    return [Reading(sensor_id, kind, float(value), at, run_id, user, nonce) for kind, value in measured]


def store(ingested: Ingested, repository: ReadingRepository, runs: RunStatusCache) -> int:
    """Check the runs, write the readings, publish their metrics; returns how many were stored.

    Equal readings (same run, sensor, type, value, user and timestamp of their own)
    are one reading: stored and counted once."""
    readings = list(dict.fromkeys(ingested.readings))
    running: dict[str, Run] = {}
    for run_id in sorted({r.run_id for r in readings if r.run_id}):
        run = runs.require_running(run_id)
        _require_declared_sensors(run, readings)
        running[run_id] = run
    chunks = repository.prepare(readings)
    for run_id, span in _widest_spans(chunks).items():
        run = running[run_id]
        # Recorded before the chunks exist, so a query never meets a chunk wider than its run says.
        if run.reading_span_ms is not None and span > run.reading_span_ms:
            runs.widen_reading_span(run, span)
    repository.write(chunks)
    owners: dict[str | None, str] = {run_id: run.username for run_id, run in running.items()}
    metrics.publish((_measured(r, owners.get(r.run_id)) for r in readings), clock.now_ms())
    return len(readings)


def _widest_spans(chunks: list[Chunk]) -> dict[str, int]:
    widest: dict[str, int] = {}
    for chunk in chunks:
        if chunk.run_id is not None:
            widest[chunk.run_id] = max(widest.get(chunk.run_id, 0), chunk.span_ms)
    return widest


def _require_declared_sensors(run: Run, readings: list[Reading]) -> None:
    """A run's readings come from the sensors it declared: that also bounds the metrics
    (one dimension value per sensor) a run can create."""
    sent = {r.sensor_id for r in readings if r.run_id == run.id}
    unknown = sorted(sent.difference(run.sensor_ids))
    if unknown:
        shown = ", ".join(unknown[:10]) + (f" and {len(unknown) - 10} more" if len(unknown) > 10 else "")
        raise ValidationFailed(
            f"run {run.id} declared no sensor {shown}; its sensors are {', '.join(run.sensor_ids[:10])}"
            + (" ..." if len(run.sensor_ids) > 10 else ""),
            details={"unknownSensorIds": unknown[:100]},
        )


def _measured(reading: Reading, owner: str | None) -> metrics.MeasuredReading:
    """The reading as a metric, with dimension values the caller cannot multiply: a run's
    declared sensor and its owner (not the free-text X-User), a known type or "other"; a
    reading without a run counts under "none" for all three."""
    if owner is None:
        sensor = owner = metrics.NO_RUN_DIMENSION_VALUE
    else:
        sensor = reading.sensor_id
    kind = reading.type if reading.type in metrics.METRIC_TYPES else metrics.OTHER_TYPE
    return metrics.MeasuredReading(sensor, owner, reading.run_id, kind, reading.value)
