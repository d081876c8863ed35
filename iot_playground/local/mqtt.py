"""`make run`'s MQTT (docs/mqtt.md): an embedded broker, and a bridge that does what
AWS does with the IoT rule, the SQS queue and its batches of up to 10 for `ingest_device_messages`.
Locally there is no dead-letter queue: the messages that handler refuses are logged."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import logging
import os
import queue
import threading
import time
import uuid
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

from iot_playground.common.mqtt_topics import broker_address, device_topic

log = logging.getLogger(__name__)
Handler = Callable[[dict[str, Any], Any], Any]  # (SQS event, context) -> {"batchItemFailures": [...]}
BATCH_SIZE, BATCH_WINDOW_S = 10, 0.1  # SQS's largest batch for a Lambda, and a batching window
ACCOUNT = "123456789012"


def start_broker(port: int = 0) -> tuple[str, Callable[[], None]]:
    """amqtt's broker on loopback, anonymous, its event loop in a thread: (URL, stop)."""
    from amqtt.broker import Broker

    from iot_playground.local.local_stack import free_port

    port, loop = port or free_port(), asyncio.new_event_loop()
    auth = {"amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": True}}
    config = {"listeners": {"default": {"type": "tcp", "bind": f"127.0.0.1:{port}"}}, "plugins": auth}

    async def started() -> Broker:  # amqtt takes the running loop for its internals
        broker = Broker(config, loop=loop)
        await broker.start()
        return broker

    broker = loop.run_until_complete(started())  # listening, then served by the thread
    thread = threading.Thread(target=loop.run_forever, name="mqtt-broker", daemon=True)
    thread.start()

    def stop() -> None:
        asyncio.run_coroutine_threadsafe(broker.shutdown(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()

    return f"mqtt://127.0.0.1:{port}", stop


def sqs_record(topic: str, payload: bytes | bytearray, queue_arn: str) -> dict[str, Any]:
    """A record of Lambda's SQS event, as `SELECT encode(*, 'base64') AS payload, topic() AS topic`."""
    body = json.dumps({"payload": base64.b64encode(payload).decode(), "topic": topic}, separators=(",", ":"))
    now = str(int(time.time() * 1000))
    attributes = {"ApproximateReceiveCount": "1", "SentTimestamp": now, "SenderId": ACCOUNT}
    return {
        "messageId": str(uuid.uuid4()),
        "receiptHandle": uuid.uuid4().hex,
        "body": body,
        "attributes": {**attributes, "ApproximateFirstReceiveTimestamp": now},
        "messageAttributes": {},
        "md5OfBody": hashlib.md5(body.encode(), usedforsecurity=False).hexdigest(),
        "eventSource": "aws:sqs",
        "eventSourceARN": queue_arn,
        "awsRegion": queue_arn.split(":")[3],
    }


class Bridge:
    """A stage's device topics to `handler`; each message acknowledged once its batch is handled."""

    def __init__(self, url: str, stage: str, handler: Handler, stop_broker: Callable[[], None] | None = None):
        self.url, self.handler, self.stop_broker = url, handler, stop_broker
        region = os.environ.get("AWS_DEFAULT_REGION", "us-east-1")
        self.queue_arn = f"arn:aws:sqs:{region}:{ACCOUNT}:iot-playground-{stage}-device-messages"
        name = f"iot-playground-{stage}-ingest_device_messages"
        arn = f"arn:aws:lambda:{region}:{ACCOUNT}:function:{name}"  # the context, as Powertools reads it
        self.context = SimpleNamespace(function_name=name, invoked_function_arn=arn, memory_limit_in_mb=256)
        self.context.get_remaining_time_in_millis = lambda: 60_000
        self._messages: queue.Queue[paho.MQTTMessage | None] = queue.Queue()
        self._subscribed = threading.Event()
        self._worker = threading.Thread(target=self._deliver_batches, name="mqtt-bridge", daemon=True)
        self._client = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"bridge-{uuid.uuid4().hex[:8]}")
        self._client.manual_ack_set(True)
        # A clean session on each (re)connect: subscribe again.
        self._client.on_connect = lambda c, *_: c.subscribe(device_topic(stage, "+", "+"), qos=1)
        self._client.on_subscribe = lambda *_: self._subscribed.set()
        self._client.on_message = lambda _client, _userdata, message: self._messages.put(message)

    def start(self, timeout: float = 10) -> None:
        self._client.connect(*broker_address(self.url))
        self._worker.start()
        self._client.loop_start()
        if not self._subscribed.wait(timeout):
            self.stop()
            raise TimeoutError(f"no subscription on {self.url} within {timeout:.0f}s")

    def stop(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()
        self._messages.put(None)
        self._worker.join(10)
        if self.stop_broker:
            self.stop_broker()

    def _deliver_batches(self) -> None:
        while (first := self._messages.get()) is not None:
            batch, deadline = [first], time.monotonic() + BATCH_WINDOW_S
            while len(batch) < BATCH_SIZE and (left := deadline - time.monotonic()) > 0:
                try:
                    message = self._messages.get(timeout=left)
                except queue.Empty:
                    break
                if message is None:  # stopping: deliver this batch, then end
                    self._messages.put(None)
                    break
                batch.append(message)
            self._deliver(batch)

    def _deliver(self, batch: list[paho.MQTTMessage]) -> None:
        records = [sqs_record(message.topic, message.payload, self.queue_arn) for message in batch]
        self.context.aws_request_id = str(uuid.uuid4())
        try:
            answer = self.handler({"Records": records}, self.context)
            refused = {failure["itemIdentifier"] for failure in (answer or {}).get("batchItemFailures", [])}
        except Exception:
            log.exception("%s failed on a batch of %d messages", self.context.function_name, len(batch))
            refused = {record["messageId"] for record in records}
        for record, message in zip(records, batch, strict=True):
            if record["messageId"] in refused:
                log.warning("device message refused on %s: %r", message.topic, message.payload[:200])
            self._client.ack(message.mid, message.qos)


def start_mqtt(stage: str, handler: Handler, url: str | None = None) -> tuple[str, Callable[[], None]]:
    """`stage`'s device topics to `handler`, on `url`, MQTT_URL, or an embedded broker (on
    MQTT_PORT, or a free port): (broker URL, stop)."""
    url, stop_broker = url or os.environ.get("MQTT_URL"), None
    if not url:
        url, stop_broker = start_broker(int(os.environ.get("MQTT_PORT") or 0))
    bridge = Bridge(url, stage, handler, stop_broker)
    bridge.start()
    return url, bridge.stop
