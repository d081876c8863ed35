"""Sensor readings from a request body to the readings table and CloudWatch.

The rules: a run's readings are accepted while it is RUNNING and come from the sensors it
declared; a reading has `reading` (with its `type`) or measurement fields, not both. Equal
readings (same content and a timestamp of their own) are one reading: stored and counted once.

Metrics go out as Embedded Metric Format lines on stdout (no API call), one line per reading:

    {"_aws": {"Timestamp": 1767225600000, "CloudWatchMetrics": [{"Namespace": "IoTPlayground/Sensors",
      "Dimensions": [["Stage"]], "Metrics": [{"Name": "DataIngested", "Unit": "Count"}]}]},
     "Stage": "dev", "DataIngested": 1, "SensorReading": 21.5, "RunId": "…uuid…",
     "SensorId": "sensor-1", "Type": "temperature", "User": "alice", "Channel": "http"}

Its one metric, `DataIngested` by `Stage`, is one custom metric per stage (each dimension value
would be billed per metric-month). The rest are plain properties, which the Grafana dashboard
(grafana/dashboards/, tests/test_dashboard.py) reads with CloudWatch Logs Insights: one number per
line (Logs Insights splits an array into `SensorReading.0`, `.1`, ...), `RunId` `none` without a
run, `User` the run's owner (X-User without a run), `Channel` http or mqtt.
"""

from __future__ import annotations

import base64
import binascii
import re
import secrets
import sys
from collections.abc import Sequence
from typing import Any

import msgspec

from chalicelib import schemas
from chalicelib.readings import Reading, ReadingRepository
from chalicelib.runs import RunService
from chalicelib.schemas import (
    DEFAULT_READING_TYPE,
    MEASUREMENT_FIELDS,
    ApiError,
    ReadingIn,
    ReadingsBody,
    ValidationFailed,
)
from chalicelib.settings import logger

NAMESPACE = "IoTPlayground/Sensors"
DATA_INGESTED, STAGE_DIMENSION = "DataIngested", "Stage"  # the metric and its one dimension
SENSOR_READING, RUN_FIELD, SENSOR_FIELD, TYPE_FIELD = "SensorReading", "RunId", "SensorId", "Type"
USER_FIELD, CHANNEL_FIELD, NO_RUN = "User", "Channel", "none"
PROPERTIES = (SENSOR_READING, RUN_FIELD, SENSOR_FIELD, TYPE_FIELD, USER_FIELD, CHANNEL_FIELD)
# DynamoDB numbers cannot be closer to zero than 1e-130; nothing a sensor sends is.
_SMALLEST_MAGNITUDE = 1e-100
_encoder = msgspec.json.Encoder()


def parse(
    body: ReadingIn | list[ReadingIn],
    *,
    user: str,
    run_id: str | None,
    received_ms: int,
    nonce: str | None = None,
) -> list[Reading]:
    """The readings of a body. `run_id`: the run named outside the body (X-Run-Id, the topic).
    Readings without a timestamp are stamped `received_ms` and get a nonce of their own:
    `nonce` when the caller must make the same ones again (a keyed request sent again)."""
    items = body if isinstance(body, list) else [body]
    base = nonce or secrets.token_hex(8)
    readings: list[Reading] = []
    for position, item in enumerate(items):
        where = f"$[{position}]" if isinstance(body, list) else "$"
        run = schemas.run_id_value(item.runId, source=f"{where}.runId") or run_id
        timestamp = schemas.timestamp_value(item.timestamp, name=f"{where}.timestamp")
        measured = [
            (name, getattr(item, name)) for name in MEASUREMENT_FIELDS if getattr(item, name) is not None
        ]
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
        at, own = (received_ms, f"{base}:{position}") if timestamp is None else (timestamp, "")
        readings += [Reading(str(item.sensorId), kind, float(v), at, run, user, own) for kind, v in measured]
    return readings


def store(
    readings: Sequence[Reading],
    runs: RunService,
    repository: ReadingRepository,
    *,
    stage: str,
    channel: str = "http",
) -> int:
    """Check the runs, write the readings, write their metrics; how many readings were stored."""
    unique = list({reading.sk: reading for reading in readings}.values())
    owners: dict[str, str] = {}
    for run_id in sorted({r.run_id for r in unique if r.run_id}):
        run = runs.require_running(run_id)
        unknown = sorted({r.sensor_id for r in unique if r.run_id == run_id}.difference(run.sensor_ids))
        if unknown:
            more = f" and {len(unknown) - 10} more" if len(unknown) > 10 else ""
            raise ValidationFailed(
                f"run {run_id} declared no sensor {', '.join(unknown[:10])}{more}; its sensors are "
                + ", ".join(run.sensor_ids[:10])
                + (" ..." if len(run.sensor_ids) > 10 else ""),
                details={"unknownSensorIds": unknown[:100]},
            )
        owners[run_id] = run.username
    stored = repository.write(unique)
    write_metrics(unique, owners, stage=stage, channel=channel)
    return stored


# ---- readings from devices, over MQTT: AWS IoT Core's rule, then SQS (docs/mqtt.md) --------------

TOPIC = re.compile(r"^iot-playground/(?P<stage>[^/]+)/runs/(?P<run>[^/]+)/sensors/(?P<sensor>[^/]+)(?!\n)$")


class DeviceMessage(msgspec.Struct):
    """What the IoT rule (`SELECT encode(*, 'base64') AS payload, topic() AS topic`) puts in SQS."""

    topic: str
    payload: str


def device_messages(
    event: dict[str, Any], context: Any, runs: RunService, repository: ReadingRepository, stage: str
) -> dict[str, Any]:
    """A batch of device messages (an SQS event): each stored or refused on its own, the refused
    ones reported (ReportBatchItemFailures), so that one never holds back or repeats the others."""
    from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response

    def one(record: Any) -> int:
        sent_ms = int(record.attributes.sent_timestamp)
        return device_message(record.body, record.message_id, sent_ms, runs, repository, stage=stage)

    processor = BatchProcessor(event_type=EventType.SQS)
    return dict(
        process_partial_response(event=event, record_handler=one, processor=processor, context=context)
    )


def device_message(
    body: str, message_id: str, sent_ms: int, runs: RunService, repository: ReadingRepository, *, stage: str
) -> int:
    """One device's message, stored by the rules of `POST /api/sensors/data` (run and sensor from
    the topic); readings stamped on arrival take the message's time and id, the same on every
    delivery of it. A refusal is logged with its reason and raised (the queue retries the message,
    then puts it in its dead-letter queue)."""
    topic = "?"
    try:
        message: DeviceMessage = schemas.decode(body.encode(), DeviceMessage)
        topic = message.topic
        found = TOPIC.match(topic)
        if found is None or found["stage"] != stage:
            raise ValidationFailed(f"topic must be iot-playground/{stage}/runs/<runId>/sensors/<sensorId>")
        run_id = schemas.run_id_value(found["run"], source="the topic's run id")
        sensor = schemas.sensor_id_value(found["sensor"])
        try:
            sent: Any = msgspec.json.decode(base64.b64decode(message.payload, validate=True))
        except (binascii.Error, msgspec.DecodeError, RecursionError):
            raise ValidationFailed(
                "payload must be JSON: one reading, a measurement object or an array"
            ) from None
        for item in sent if isinstance(sent, list) else [sent]:
            if isinstance(item, dict) and item.setdefault("sensorId", sensor) != sensor:
                raise ValidationFailed(
                    f"a reading of sensor {item['sensorId']} on the topic of sensor {sensor}"
                )
        try:
            readings_body = msgspec.convert(sent, ReadingsBody)
        except msgspec.ValidationError as exc:
            raise ValidationFailed(f"invalid payload: {exc}") from None
        owner = runs.require_running(run_id or "").username
        readings = parse(readings_body, user=owner, run_id=run_id, received_ms=sent_ms, nonce=message_id)
        return store(readings, runs, repository, stage=stage, channel="mqtt")
    except ApiError as error:
        logger.warning(
            "device message refused", extra={"topic": topic, "error": error.code, "reason": error.message}
        )
        raise


def write_metrics(readings: Sequence[Reading], owners: dict[str, str], *, stage: str, channel: str) -> None:
    at = schemas.now_ms()
    lines = (
        metric_line(
            at, stage, r.value, r.run_id, r.sensor_id, r.type, owners.get(r.run_id or "", r.user), channel
        )
        for r in readings
    )
    sys.stdout.write("".join(_encoder.encode(line).decode() + "\n" for line in lines))


def metric_line(
    timestamp_ms: int,
    stage: str,
    value: float,
    run_id: str | None,
    sensor_id: str,
    kind: str,
    user: str,
    channel: str,
) -> dict[str, Any]:
    """The EMF line of one reading."""
    metric = {
        "Namespace": NAMESPACE,
        "Dimensions": [[STAGE_DIMENSION]],
        "Metrics": [{"Name": DATA_INGESTED, "Unit": "Count"}],
    }
    return {
        "_aws": {"Timestamp": timestamp_ms, "CloudWatchMetrics": [metric]},
        STAGE_DIMENSION: stage,
        DATA_INGESTED: 1,
        SENSOR_READING: value,
        RUN_FIELD: run_id or NO_RUN,
        SENSOR_FIELD: sensor_id,
        TYPE_FIELD: kind,
        USER_FIELD: user,
        CHANNEL_FIELD: channel,
    }
