"""The MQTT tools: the local bridge from MQTT to the app's SQS handler, over the embedded amqtt
broker and over a real mosquitto, and `simulate --mqtt`'s publisher.

Real brokers, real MQTT clients (paho); the only double is the app's handler, which records
the SQS events it is given (and refuses on demand), until `app.ingest_device_messages` exists.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import logging
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from iot_playground.clients import Plan, RunOutcome, api_client, drive_run, mqtt_sender
from iot_playground.common.mqtt_topics import broker_address, device_topic
from iot_playground.local.local_stack import free_port
from iot_playground.local.mqtt import BATCH_SIZE, start_broker, start_mqtt
from tests.test_cli_unit import API, FakeApi

CLI = str(Path(sys.executable).parent / "iot-playground")
RUN = "0b2c6e2e-3f1a-4c3e-9a51-3f7d0c2b1a11"
RECORD_KEYS = {
    "messageId", "receiptHandle", "body", "attributes", "messageAttributes", "md5OfBody",
    "eventSource", "eventSourceARN", "awsRegion",
}  # fmt: skip


class Recorder:
    """Stands in for `app.ingest_device_messages(event, context)`: keeps each event, refuses the
    messages whose payload is in `refuse`, raises on a payload in `crash`."""

    def __init__(self, refuse: set[bytes] = frozenset(), crash: set[bytes] = frozenset()):  # type: ignore[assignment]
        self.events: list[dict[str, Any]] = []
        self.contexts: list[Any] = []
        self.refuse, self.crash = refuse, crash
        self._changed = threading.Condition()

    def __call__(self, event: dict[str, Any], context: Any) -> dict[str, Any]:
        payloads = [payload_of(r) for r in event["Records"]]
        with self._changed:
            self.events.append(event)
            self.contexts.append(context)
            self._changed.notify_all()
        if self.crash & set(payloads):
            raise RuntimeError("handler crashed")
        refused = [r for r, p in zip(event["Records"], payloads, strict=True) if p in self.refuse]
        return {"batchItemFailures": [{"itemIdentifier": r["messageId"]} for r in refused]}

    @property
    def records(self) -> list[dict[str, Any]]:
        return [record for event in self.events for record in event["Records"]]

    def wait_for(self, count: int, timeout: float = 10, settle: float = 0.3) -> list[dict[str, Any]]:
        """The records once `count` came, and `settle` seconds more (for any that should not)."""
        with self._changed:
            self._changed.wait_for(lambda: len(self.records) >= count, timeout)
        time.sleep(settle)
        return self.records


def payload_of(record: dict[str, Any]) -> bytes:
    return base64.b64decode(json.loads(record["body"])["payload"])


def topic_of(record: dict[str, Any]) -> str:
    return str(json.loads(record["body"])["topic"])


def publish(url: str, messages: list[tuple[str, bytes]]) -> None:
    """Publish with paho at QoS 1 and wait for every PUBACK."""
    client = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"test-device-{uuid.uuid4().hex[:6]}")
    client.connect(*broker_address(url))
    client.loop_start()
    try:
        infos = [client.publish(topic, payload, qos=1) for topic, payload in messages]
        for info in infos:
            info.wait_for_publish(10)
            assert info.is_published()
    finally:
        client.disconnect()
        client.loop_stop()


@pytest.fixture(params=["amqtt", pytest.param("mosquitto", marks=pytest.mark.e2e)])
def broker(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[str | None]:
    """None: start_mqtt starts the embedded broker; else the URL of mosquitto, given as MQTT_URL."""
    monkeypatch.delenv("MQTT_URL", raising=False)
    monkeypatch.delenv("MQTT_PORT", raising=False)
    if request.param == "mosquitto":
        monkeypatch.setenv("MQTT_URL", request.getfixturevalue("mosquitto"))
    yield os.environ.get("MQTT_URL")


def test_the_bridge_delivers_each_message_once_in_sqs_batches(broker):
    handler = Recorder()
    url, stop = start_mqtt("local", handler)
    try:
        assert url == (broker or url) and url.startswith("mqtt://127.0.0.1:")
        sent = [
            (device_topic("local", RUN, f"sensor-{n % 3}"), json.dumps({"reading": n, "type": "t"}).encode())
            for n in range(25)
        ]
        publish(url, sent)
        records = handler.wait_for(len(sent))
    finally:
        stop()
    assert sorted((topic_of(r), payload_of(r)) for r in records) == sorted(sent)  # each once
    assert all(len(event["Records"]) <= BATCH_SIZE for event in handler.events)
    assert len(handler.events) < len(sent)  # batched, not one call per message
    for record in records:
        assert set(record) == RECORD_KEYS
        assert record["eventSource"] == "aws:sqs" and record["awsRegion"] == "us-east-1"
        assert record["eventSourceARN"].startswith("arn:aws:sqs:us-east-1:")
        assert record["md5OfBody"] == hashlib.md5(record["body"].encode()).hexdigest()
        assert set(json.loads(record["body"])) == {"topic", "payload"}
        assert record["attributes"]["ApproximateReceiveCount"] == "1"
    assert len({r["messageId"] for r in records}) == len(records)
    context = handler.contexts[0]
    assert context.function_name == "iot-playground-local-ingest_device_messages"
    assert context.get_remaining_time_in_millis() > 0 and context.aws_request_id


def test_only_the_stages_device_topics_reach_the_handler(broker):
    handler = Recorder()
    url, stop = start_mqtt("local", handler)
    try:
        publish(
            url,
            [
                (device_topic("dev", RUN, "s1"), b"other stage"),
                (f"iot-playground/local/runs/{RUN}/sensors/s1/extra", b"deeper topic"),
                (f"iot-playground/local/runs/{RUN}", b"no sensor"),
                (device_topic("local", RUN, "s1"), b"{}"),
            ],
        )
        records = handler.wait_for(1)
    finally:
        stop()
    assert [(topic_of(r), payload_of(r)) for r in records] == [(device_topic("local", RUN, "s1"), b"{}")]


def test_a_lone_message_is_delivered_after_the_batch_window():
    handler = Recorder()
    url, stop = start_mqtt("local", handler)
    try:
        started = time.monotonic()
        publish(url, [(device_topic("local", RUN, "s1"), b"{}")])
        handler.wait_for(1, timeout=5)
        assert handler.events and time.monotonic() - started < 2
    finally:
        stop()
    assert [len(e["Records"]) for e in handler.events] == [1]


def test_refused_messages_are_logged_with_their_topic_and_the_bridge_goes_on(broker, caplog):
    handler = Recorder(refuse={b"not json"}, crash={b"boom"})
    url, stop = start_mqtt("local", handler)
    caplog.set_level(logging.WARNING, logger="iot_playground.local.mqtt")
    try:
        publish(
            url, [(device_topic("local", RUN, "s1"), b"{}"), (device_topic("local", RUN, "s2"), b"not json")]
        )
        handler.wait_for(2, settle=0)
        publish(url, [(device_topic("local", RUN, "s3"), b"boom")])
        handler.wait_for(3, settle=0)
        publish(url, [(device_topic("local", RUN, "s4"), b'{"reading": 1}')])
        records = handler.wait_for(4)
    finally:
        stop()
    assert len(records) == 4
    refused = [r.getMessage() for r in caplog.records if "refused" in r.getMessage()]
    assert len(refused) == 2
    assert device_topic("local", RUN, "s2") in refused[0] and "not json" in refused[0]
    assert device_topic("local", RUN, "s3") in refused[1]
    assert any("failed on a batch" in r.getMessage() for r in caplog.records)
    assert not any(device_topic("local", RUN, s) in m for m in refused for s in ("s1", "s4"))


def test_mqtt_port_fixes_the_embedded_brokers_port(monkeypatch):
    port = free_port()
    monkeypatch.delenv("MQTT_URL", raising=False)
    monkeypatch.setenv("MQTT_PORT", str(port))
    url, stop = start_mqtt("local", Recorder())
    stop()
    assert url == f"mqtt://127.0.0.1:{port}"


def test_a_broker_that_does_not_answer_is_an_error_at_start():
    with pytest.raises(OSError):
        start_mqtt("local", Recorder(), url=f"mqtt://127.0.0.1:{free_port()}")


def test_simulate_mqtt_publishes_each_reading_to_its_sensors_topic_with_the_run_over_http():
    """drive_run with mqtt_sender: start and finish over HTTP (the fake API), readings over MQTT."""
    handler, fake = Recorder(), FakeApi()
    url, stop = start_mqtt("local", handler)
    outcome = RunOutcome("alice")
    plan = Plan(user="alice", sensors=3, count=4, interval_ms=10)

    async def go() -> None:
        async with (
            api_client(API, transport=httpx.MockTransport(fake)) as api,
            mqtt_sender(url, "local") as send,
        ):
            await drive_run(api, plan, outcome, send=send)

    try:
        asyncio.run(go())
        records = handler.wait_for(plan.count * plan.sensors)
    finally:
        stop()
    assert outcome.status == "SUCCESS" and outcome.sent == 12 and outcome.failed == 0
    assert len(outcome.latencies_ms) == 12 and all(ms > 0 for ms in outcome.latencies_ms)
    assert not fake.posts("/api/sensors/data") and fake.posts("/finish")
    assert sorted(topic_of(r) for r in records) == sorted(
        device_topic("local", outcome.run_id or "", f"sensor-{n}") for n in (1, 2, 3) for _ in range(4)
    )
    for record in records:
        reading = json.loads(payload_of(record))
        assert set(reading) == {"reading", "type"} and reading["type"] == "temperature"


def test_simulate_mqtt_without_a_broker_fails_before_starting_a_run(tmp_path):
    from click.testing import CliRunner

    from iot_playground.cli import main

    url = f"mqtt://127.0.0.1:{free_port()}"
    report = tmp_path / "report.json"
    result = CliRunner().invoke(
        main, ["simulate", "--api", API, "--mqtt", "--mqtt-url", url, "--count", "1", "--report", str(report)]
    )
    assert result.exit_code == 1, result.output
    report_json = json.loads(report.read_text())
    [run] = report_json["runs"]
    assert run["runId"] is None and report_json["plan"]["mqtt_url"] == url and "MQTT broker" in run["error"]
    result = CliRunner().invoke(main, ["simulate", "--mqtt", "--batch"])
    assert result.exit_code == 2 and "no --batch" in result.output


def test_the_embedded_broker_stops_and_frees_its_port():
    url, stop = start_broker()
    host, port = broker_address(url)
    socket.create_connection((host, port), timeout=1).close()
    stop()
    with pytest.raises(OSError):
        socket.create_connection((host, port), timeout=1).close()


def test_device_topics_and_their_filter():
    assert device_topic("dev", RUN, "s.1") == f"iot-playground/dev/runs/{RUN}/sensors/s.1"
    with pytest.raises(ValueError):
        broker_address("http://127.0.0.1:1883")
    assert broker_address("mqtt://localhost") == ("localhost", 1883)


@pytest.mark.e2e
def test_simulate_mqtt_runs_over_http_and_publishes_its_readings(local_stack, tmp_path):
    """The command as a user runs it: start and finish on the real local stack, readings to the
    bridge. (Once the app's handler exists, make run's own bridge stores them: the recorder goes.)"""
    handler, report = Recorder(), tmp_path / "simulate.json"
    url, stop = start_mqtt("local", handler)
    try:
        args = ["--api", local_stack.base_url, "--user", "mqtt-sim", "--sensors", "3", "--count", "4"]
        result = subprocess.run(
            [
                CLI,
                "simulate",
                *args,
                "--interval-ms",
                "20",
                "--mqtt",
                "--mqtt-url",
                url,
                "--report",
                str(report),
            ],
            capture_output=True,
            text=True,
            timeout=60,
        )
        records = handler.wait_for(12)
    finally:
        stop()
    assert result.returncode == 0, result.stdout + result.stderr
    report_json = json.loads(report.read_text())
    [summary] = report_json["runs"]
    assert (summary["status"], summary["sent"], summary["failed"]) == ("SUCCESS", 12, 0)
    assert report_json["plan"]["mqtt_url"] == url
    run_id = summary["runId"]
    assert "simulation summary" in result.stdout and run_id in result.stdout
    assert Counter(topic_of(r) for r in records) == {
        device_topic("local", run_id, f"sensor-{n}"): 4 for n in (1, 2, 3)
    }
    with urllib.request.urlopen(f"{local_stack.base_url}/api/runs/{run_id}") as answer:
        assert json.load(answer)["status"] == "SUCCESS"  # finished over HTTP


def test_the_events_pass_through_chalice_and_powertools_as_the_app_will_take_them(caplog):
    """Not the app's handler (still to come) but the same plumbing: a Chalice `on_sqs_message`
    handler with Powertools' batch utility, reached as `make run` reaches it (`handler_map`)."""
    from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
    from aws_lambda_powertools.utilities.parser.models import SqsModel
    from chalice.app import Chalice

    demo, processor, stored = Chalice("demo"), BatchProcessor(event_type=EventType.SQS), []

    def store(record: Any) -> None:
        body = json.loads(record.body)
        reading = json.loads(base64.b64decode(body["payload"]))  # a malformed body raises: refused
        stored.append((body["topic"], reading))

    @demo.on_sqs_message(queue="iot-playground-local-device-messages", batch_size=10)
    def ingest_device_messages(event: Any) -> Any:
        SqsModel.model_validate(event.to_dict())  # every field Powertools' parser requires
        assert event.context.function_name.endswith("ingest_device_messages")
        return process_partial_response(
            event=event.to_dict(), record_handler=store, processor=processor, context=event.context
        )

    url, stop = start_mqtt("local", demo.handler_map["ingest_device_messages"])
    caplog.set_level(logging.WARNING, logger="iot_playground.local.mqtt")
    good, bad = device_topic("local", RUN, "s1"), device_topic("local", RUN, "s2")
    try:
        publish(url, [(good, b'{"temperature": 21.5, "humidity": 40}'), (bad, b"{not json")])
        deadline = time.monotonic() + 5
        while not any("refused" in r.getMessage() for r in caplog.records) and time.monotonic() < deadline:
            time.sleep(0.02)
    finally:
        stop()
    assert stored == [(good, {"temperature": 21.5, "humidity": 40})]
    assert [r.getMessage() for r in caplog.records if "refused" in r.getMessage()] == [
        f"device message refused on {bad}: b'{{not json'"
    ]
