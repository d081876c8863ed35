"""Readings from devices over MQTT, into the same ingest as over HTTP.

The handler on Lambda's SQS events (as the IoT rule and the queue deliver them), and end to end
through `make run`'s stack: devices publish to the embedded broker (or Debian's mosquitto, given
as MQTT_URL) and the API serves what they sent, each reading once."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from typing import Any

import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from iot_playground.local.mqtt import sqs_record
from tests.conftest import LocalStack
from tests.helpers import T0, finish, http, start_run, stored_readings

ARN = "arn:aws:sqs:us-east-1:123456789012:iot-playground-test-device-messages"


def invoke(records: list[dict[str, Any]]) -> set[str]:
    """The app's SQS handler on these records, as Lambda calls it: the refused message ids."""
    import app

    class Context:
        function_name, memory_limit_in_mb, aws_request_id = "ingest", 256, "sqs-1"
        invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:ingest"

        def get_remaining_time_in_millis(self) -> int:
            return 60_000

    answer = app.ingest_device_messages({"Records": records}, Context())
    return {failure["itemIdentifier"] for failure in answer["batchItemFailures"]}


def record(run_id: str, sensor: str, payload: Any, stage: str = "test") -> dict[str, Any]:
    raw = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    return sqs_record(f"iot-playground/{stage}/runs/{run_id}/sensors/{sensor}", raw, ARN)


def test_each_payload_shape_is_stored_as_over_http_with_the_run_and_sensor_of_the_topic(client, capsys):
    run = start_run(client, user="owner")
    messages = [
        record(run["id"], "sensor-1", {"reading": 21.5, "timestamp": T0}),
        record(run["id"], "sensor-2", {"temperature": 20.0, "humidity": 40.0, "timestamp": T0}),
        record(run["id"], "sensor-1", [{"reading": 22.5, "timestamp": T0 + 1}, {"reading": 23.0}]),
    ]
    assert invoke(messages) == set()
    assert invoke(messages[:1]) == set()  # delivered again (QoS 1): stored once
    stored = {(r["sensorId"], r["type"], r["reading"], r["user"]) for r in stored_readings(client, run["id"])}
    assert stored == {
        ("sensor-1", "temperature", 21.5, "owner"),
        ("sensor-2", "temperature", 20.0, "owner"),
        ("sensor-2", "humidity", 40.0, "owner"),
        ("sensor-1", "temperature", 22.5, "owner"),
        ("sensor-1", "temperature", 23.0, "owner"),
    }
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines() if '"_aws"' in line]
    assert {line["Channel"] for line in lines} == {"mqtt"} and len(lines) == 6


@pytest.mark.parametrize(
    ("case", "reason"),
    [
        ("ended run", "is SUCCESS: it no longer accepts readings"),
        ("undeclared sensor", "declared no sensor intruder"),
        ("malformed body", "payload must be JSON"),
        ("another sensor in the body", "a reading of sensor sensor-2 on the topic of sensor sensor-1"),
        ("another stage's topic", "topic must be iot-playground/test/runs/"),
    ],
)
def test_a_refused_message_is_reported_and_logged_with_its_reason_and_the_others_are_stored(
    client, log_lines, case, reason
):
    run, ended = start_run(client), start_run(client, user="bob")
    finish(client, ended["id"])
    refused = {
        "ended run": record(ended["id"], "sensor-1", {"reading": 1.0}),
        "undeclared sensor": record(run["id"], "intruder", {"reading": 1.0}),
        "malformed body": record(run["id"], "sensor-1", b"{reading: 1"),
        "another sensor in the body": record(run["id"], "sensor-1", {"sensorId": "sensor-2", "reading": 1.0}),
        "another stage's topic": record(run["id"], "sensor-1", {"reading": 1.0}, stage="prod"),
    }[case]
    good = record(run["id"], "sensor-1", {"reading": 2.5, "timestamp": T0})
    assert invoke([refused, good]) == {refused["messageId"]}
    assert [r["reading"] for r in stored_readings(client, run["id"])] == [2.5]
    (logged,) = [line for line in log_lines() if line.get("message") == "device message refused"]
    assert logged["level"] == "WARNING" and reason in logged["reason"]
    assert logged["topic"] == json.loads(refused["body"])["topic"]


# ---- end to end, through `make run`'s broker and bridge ------------------------------------


def publish_all(url: str, messages: list[tuple[str, bytes]]) -> None:
    """Publish at QoS 1 and wait until the broker has acknowledged every message."""
    host, port = re.match(r"mqtt://([^:]+):(\d+)", url).groups()  # type: ignore[union-attr]
    device = paho.Client(CallbackAPIVersion.VERSION2, client_id="e2e-device")
    device.max_inflight_messages_set(100)
    device.connect(host, int(port))
    device.loop_start()
    try:
        for info in [device.publish(topic, payload, qos=1) for topic, payload in messages]:
            info.wait_for_publish(30)
            assert info.is_published()
    finally:
        device.disconnect()
        device.loop_stop()


def readings_when_settled(api: str, run_id: str, expected: int, timeout: float = 60) -> list[Any]:
    deadline, items = time.monotonic() + timeout, []
    while time.monotonic() < deadline:
        _, page, _ = http("GET", f"{api}/api/sensors/data?runId={run_id}&limit=1000")
        items = page["items"]
        if len(items) >= expected:
            time.sleep(1.0)  # anything still on its way arrives too: then the count is final
            return http("GET", f"{api}/api/sensors/data?runId={run_id}&limit=1000")[1]["items"]  # type: ignore[no-any-return]
        time.sleep(1.0)  # each look reads up to 1000 items: not so often that it slows the writes
    raise AssertionError(f"{len(items)} of {expected} readings arrived")


@pytest.fixture(params=["embedded", "mosquitto"], scope="module")
def mqtt_stack(request: pytest.FixtureRequest) -> Iterator[tuple[LocalStack, str]]:
    env = {} if request.param == "embedded" else {"MQTT_URL": request.getfixturevalue("mosquitto")}
    with LocalStack(**env) as stack:
        url = re.search(r"MQTT broker on (mqtt://[0-9.:]+)", stack.log())
        assert url, stack.log()
        yield stack, url.group(1)


@pytest.mark.e2e
def test_a_thousand_readings_published_once_or_twice_are_each_stored_once(mqtt_stack):
    stack, url = mqtt_stack
    sensors = [f"d-{i}" for i in range(10)]
    for copies in (1, 2):
        status, run, _ = http(
            "POST", f"{stack.base_url}/api/runs/start", {"sensorIds": sensors, "duration": 600, "interval": 1}
        )
        assert status == 201, run
        topic = "iot-playground/local/runs/{}/sensors/{}"
        # 100 messages of 10 readings each, as a device sends a burst; each published once or twice.
        bursts = [
            [{"reading": i / 10, "timestamp": T0 + i} for i in range(n, n + 10)] for n in range(0, 1000, 10)
        ]
        messages = [
            (topic.format(run["id"], sensors[b % 10]), json.dumps(burst).encode())
            for b, burst in enumerate(bursts)
        ]
        publish_all(url, [message for message in messages for _ in range(copies)])
        stored = readings_when_settled(stack.base_url, run["id"], 1000)
        assert len(stored) == 1000 and len({(r["sensorId"], r["timestamp"]) for r in stored}) == 1000
        assert http("POST", f"{stack.base_url}/api/runs/{run['id']}/finish", {"status": "SUCCESS"})[0] == 200
