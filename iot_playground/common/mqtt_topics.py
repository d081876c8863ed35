"""The MQTT topics, `iot-playground/<stage>/runs/<runId>/sensors/<sensorId>`, and brokers."""

from __future__ import annotations

from urllib.parse import urlsplit


def device_topic(stage: str, run_id: str, sensor_id: str) -> str:
    return f"iot-playground/{stage}/runs/{run_id}/sensors/{sensor_id}"


def broker_address(url: str) -> tuple[str, int]:
    parts = urlsplit(url)
    if parts.scheme != "mqtt" or not parts.hostname:
        raise ValueError(f"not an mqtt://host[:port] URL: {url!r}")
    return parts.hostname, parts.port or 1883
