"""A plain paho-mqtt 2.x client for tests: publish and wait for every PUBACK, or collect messages."""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Iterable
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion


def client(port: int, *, client_id: str | None = None, username: str | None = None,
           password: str | None = None, **kwargs: Any) -> mqtt.Client:
    c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id or f"test-{uuid.uuid4().hex[:8]}", **kwargs)
    if username:
        c.username_pw_set(username, password)
    return c


def publish(port: int, messages: Iterable[tuple[str, bytes | str | dict[str, Any] | list[Any]]], *,
            qos: int = 1, retain: bool = False, timeout: float = 30.0, window: int = 10_000,
            username: str | None = None, password: str | None = None) -> int:
    """Publish every message, waiting until the broker has acknowledged each one."""
    c = client(port, username=username, password=password)
    c.max_inflight_messages_set(1000)
    c.max_queued_messages_set(0)
    c.connect("127.0.0.1", port)
    c.loop_start()
    infos: list[mqtt.MQTTMessageInfo] = []
    total = 0
    try:
        deadline = time.monotonic() + timeout  # a publish before the CONNACK fails (a loaded broker is slow to answer)
        while not c.is_connected():
            if time.monotonic() > deadline:
                raise AssertionError(f"no CONNACK from the broker on port {port} in {timeout} s")
            time.sleep(0.01)
        for topic, payload in messages:
            body = payload if isinstance(payload, bytes | str) else json.dumps(payload)
            infos.append(c.publish(topic, body, qos=qos, retain=retain))
            total += 1
            if len(infos) >= window:  # paho hangs past 65,535 unacknowledged messages
                wait_all(infos, timeout)
        wait_all(infos, timeout)
    finally:
        c.disconnect()
        c.loop_stop()
    return total


def wait_all(infos: list[mqtt.MQTTMessageInfo], timeout: float) -> None:
    """Wait for the PUBACK of every message; empties ``infos``."""
    for info in infos:
        info.wait_for_publish(timeout)
        if not info.is_published():
            raise AssertionError(f"message {info.mid} was not acknowledged in {timeout} s")
    infos.clear()


def reading_seqs(messages: Iterable[mqtt.MQTTMessage]) -> dict[str, set[int]]:
    """station -> the seq of every reading in ``messages`` (batches flattened)."""
    out: dict[str, set[int]] = {}
    for m in messages:
        if m.topic.endswith(("/occupancy", "/charger", "/temperature")):
            doc = json.loads(m.payload)
            out.setdefault(m.topic.split("/")[2], set()).update(r["seq"] for r in (doc if isinstance(doc, list)
                                                                                   else [doc]))
    return out


class Collector:
    """Subscribes and records every message it receives."""

    def __init__(self, port: int, topic: str, **kwargs: Any) -> None:
        self.messages: list[mqtt.MQTTMessage] = []
        self._subscribed = threading.Event()
        self.client = client(port, **kwargs)
        self.client.on_connect = lambda c, *_: c.subscribe(topic, qos=1)
        self.client.on_subscribe = lambda *_: self._subscribed.set()
        self.client.on_message = lambda _c, _u, msg: self.messages.append(msg)
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        if not self._subscribed.wait(10):
            raise AssertionError(f"no SUBACK for {topic}")

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()
