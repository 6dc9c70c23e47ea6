"""Malformed payloads, one kind per reject reason of ingest, and the client that sends them.

Each payload is built to get exactly one reject of its kind from ingest's decoder, so the
simulator's count of what it sent, by kind, must equal ``ingest_rejects`` by reason. A payload
counts as sent when the broker acknowledges it (QoS 1): from then on it is ingest's.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass
from typing import Any, Final

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from firmware_stubs.exceptions import ConnectError
from telemetry.contract import MAX_AGE_MS, MAX_PAYLOAD_BYTES, TOPIC_ROOT, Kind, RejectReason, topic

_DAY_MS: Final = 86_400_000


def malformed_message(kind: RejectReason, station_id: str, *, now_ms: int) -> tuple[str, bytes]:
    """A (topic, payload) that ingest rejects with reason ``kind`` (``now_ms``: the real clock)."""
    occupancy = topic(station_id, Kind.OCCUPANCY)
    match kind:
        case RejectReason.BAD_JSON:
            return occupancy, b'{"ts": %d, "seq": ' % now_ms
        case RejectReason.SCHEMA:
            return occupancy, json.dumps({"ts": now_ms, "seq": 0, "people": -1}).encode()
        case RejectReason.UNKNOWN_KIND:
            return f"{TOPIC_ROOT}/{station_id}/humidity", b"{}"
        case RejectReason.UNKNOWN_STATION:
            return topic(f"{station_id}X", Kind.OCCUPANCY), b"{}"
        case RejectReason.TOO_LARGE:
            return occupancy, b"[" + b" " * MAX_PAYLOAD_BYTES + b"]"
        case RejectReason.TS_OUT_OF_RANGE:
            old = now_ms - MAX_AGE_MS - _DAY_MS
            return occupancy, json.dumps({"ts": old, "seq": 0, "people": 0}).encode()
        case RejectReason.BAD_TOPIC:
            return f"{TOPIC_ROOT}//{Kind.OCCUPANCY.value}", b"{}"
    raise ValueError(f"no malformed payload for {kind}")


@dataclass(slots=True, frozen=True)
class _Pending:
    station: str
    kind: RejectReason


class MalformedSender:
    """One MQTT client (on its own network thread) that sends malformed payloads and counts them.

    Args:
        host, port, username, password, tls: the broker.
    """

    def __init__(self, *, host: str, port: int, username: str | None = None, password: str | None = None,
                 tls: Any = None) -> None:
        self._host, self._port = host, port
        self._lock = threading.Lock()
        self._connected = threading.Event()
        self._pending: dict[int, _Pending] = {}
        self._early: set[int] = set()
        self._acked: dict[str, Counter[str]] = {}
        self._client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"simulator-faults-{uuid.uuid4().hex[:8]}")
        self._client.max_inflight_messages_set(1000)
        self._client.max_queued_messages_set(0)
        if username is not None:
            self._client.username_pw_set(username, password)
        if tls is not None:
            self._client.tls_set_context(tls)
        self._client.on_connect = self._on_connect
        self._client.on_publish = self._on_publish

    def start(self, timeout: float = 10.0) -> None:
        try:
            self._client.connect(self._host, self._port)
        except OSError as exc:
            raise ConnectError(f"malformed-payload client: cannot connect to {self._host}:{self._port}: {exc}") from exc
        self._client.loop_start()
        if not self._connected.wait(timeout):
            self.close()
            raise ConnectError(f"malformed-payload client: no CONNACK from {self._host}:{self._port}")

    def send(self, station_id: str, kind: RejectReason) -> None:
        """Publish one malformed payload of ``kind`` on behalf of ``station_id``."""
        name, payload = malformed_message(kind, station_id, now_ms=int(time.time() * 1000))
        info = self._client.publish(name, payload, qos=1)  # never under our lock: paho calls
        if info.rc != MQTTErrorCode.MQTT_ERR_SUCCESS:      # on_publish holding its own
            return
        sent = _Pending(station_id, kind)
        with self._lock:
            if info.mid in self._early:  # the PUBACK came before we knew the mid
                self._early.discard(info.mid)
                self._count(sent)
            else:
                self._pending[info.mid] = sent

    def acked(self) -> dict[str, Counter[str]]:
        """Acknowledged payloads by station and kind."""
        with self._lock:
            return {station: Counter(kinds) for station, kinds in self._acked.items()}

    def pending(self) -> int:
        with self._lock:
            return len(self._pending)

    def wait_acked(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while self.pending():
            if time.monotonic() > deadline:
                return False
            time.sleep(0.02)
        return True

    def close(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()

    def _on_connect(self, _client: mqtt.Client, _userdata: Any, _flags: mqtt.ConnectFlags, reason: ReasonCode,
                    _properties: Properties | None) -> None:
        if not reason.is_failure:
            self._connected.set()

    def _on_publish(self, _client: mqtt.Client, _userdata: Any, mid: int, _reason: ReasonCode,
                    _properties: Properties | None) -> None:
        with self._lock:
            sent = self._pending.pop(mid, None)
            if sent is None:
                self._early.add(mid)
            else:
                self._count(sent)

    def _count(self, sent: _Pending) -> None:
        self._acked.setdefault(sent.station, Counter())[sent.kind.value] += 1
