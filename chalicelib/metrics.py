"""Sensor metrics as CloudWatch Embedded Metric Format (EMF) log lines.

Writing a JSON line to stdout costs no API call; CloudWatch Logs extracts the
metrics. One document per distinct (sensor, user, run, type) in a request, the
request's values carried as an EMF value array, so a batch of 500 readings is a
handful of lines, not 500. Powertools Metrics cannot express two metrics with
different dimension sets in one document, so the documents follow the EMF
specification directly.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import msgspec

NAMESPACE = "IoTPlayground/Sensors"
SENSOR_READING = "SensorReading"
DATA_INGESTED = "DataIngested"
SENSOR_DIMENSION = "SensorId"
USER_DIMENSION = "User"
RUN_DIMENSION = "RunId"
TYPE_DIMENSION = "Type"
READING_DIMENSIONS = (SENSOR_DIMENSION, USER_DIMENSION, RUN_DIMENSION, TYPE_DIMENSION)
INGESTED_DIMENSIONS = (SENSOR_DIMENSION, USER_DIMENSION, RUN_DIMENSION)
# A dimension value may not be empty: readings sent without a run get this one.
NO_RUN_DIMENSION_VALUE = "none"
# Each distinct dimension value is a new custom metric, billed monthly: types outside this
# list (any client may send any) are counted together.
METRIC_TYPES = frozenset({"temperature", "humidity", "pressure"})
OTHER_TYPE = "other"
# EMF allows at most 100 values in one metric's array.
MAX_VALUES_PER_DOCUMENT = 100


@dataclass(frozen=True, slots=True)
class MeasuredReading:
    sensor_id: str
    user: str
    run_id: str | None
    type: str
    value: float


def emf_documents(readings: Iterable[MeasuredReading], timestamp_ms: int) -> Iterator[dict[str, Any]]:
    groups: dict[tuple[str, str, str, str], list[float]] = {}
    for r in readings:
        key = (r.sensor_id, r.user, r.run_id or NO_RUN_DIMENSION_VALUE, r.type)
        groups.setdefault(key, []).append(r.value)
    for (sensor_id, user, run_id, reading_type), values in groups.items():
        for start in range(0, len(values), MAX_VALUES_PER_DOCUMENT):
            chunk = values[start : start + MAX_VALUES_PER_DOCUMENT]
            yield {
                "_aws": {
                    "Timestamp": timestamp_ms,
                    "CloudWatchMetrics": [
                        {
                            "Namespace": NAMESPACE,
                            "Dimensions": [list(READING_DIMENSIONS)],
                            "Metrics": [{"Name": SENSOR_READING, "Unit": "None"}],
                        },
                        {
                            "Namespace": NAMESPACE,
                            "Dimensions": [list(INGESTED_DIMENSIONS)],
                            "Metrics": [{"Name": DATA_INGESTED, "Unit": "Count"}],
                        },
                    ],
                },
                SENSOR_DIMENSION: sensor_id,
                USER_DIMENSION: user,
                RUN_DIMENSION: run_id,
                TYPE_DIMENSION: reading_type,
                SENSOR_READING: chunk[0] if len(chunk) == 1 else chunk,
                DATA_INGESTED: len(chunk),
            }


_encoder = msgspec.json.Encoder()


def publish(
    readings: Iterable[MeasuredReading],
    timestamp_ms: int,
    write: Callable[[str], Any] | None = None,
) -> int:
    """Write the EMF lines for these readings; returns how many documents were written."""
    out = write or sys.stdout.write
    count = 0
    for document in emf_documents(readings, timestamp_ms):
        out(_encoder.encode(document).decode() + "\n")
        count += 1
    return count
