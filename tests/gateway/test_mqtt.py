"""The gateway's MQTT link against a real broker: it comes back after the broker does, on the shared backoff."""

from __future__ import annotations

import asyncio
from pathlib import Path

from gateway.mqtt import MqttCluster, Node
from telemetry.backoff import Backoff
from telemetry.contract import Kind, topic
from tests.mqtt import publish
from tests.rig import Mosquitto, until

OCCUPANCY = topic("PL-KT-001", Kind.OCCUPANCY)


async def test_mqtt_link_reconnects_after_broker_restarts_and_a_session_resets_its_backoff(tmp_path: Path) -> None:
    broker = Mosquitto(tmp_path).start()
    got: list[tuple[str, bytes]] = []
    backoff = Backoff(initial=1.0, cap=1.0, jitter=0, healthy_after=0)
    link = MqttCluster(nodes=[Node("127.0.0.1", broker.port)], stations=["PL-KT-001"],
                       on_live=lambda t, b: got.append((t, b)), on_config=lambda _s, _c: None,
                       backoff=lambda: backoff)
    running = asyncio.create_task(link.run(), name="link")
    try:
        await until(link.connected.is_set, what="connected")
        broker.stop()
        await until(lambda: backoff.failures >= 3, timeout=60, what="attempts failing while the broker is down")
        broker.start()
        await until(link.connected.is_set, what="reconnected")
        await asyncio.to_thread(publish, broker.port, [(OCCUPANCY, b"after the restart")])
        await until(lambda: (OCCUPANCY, b"after the restart") in got, what="messages again")
        assert backoff.failures >= 3, "connecting alone must not reset the backoff: the session's end does"
        broker.stop()
        await until(lambda: not link.connected.is_set(), what="the connection lost")
        assert backoff.failures == 1, "the session that came up did not reset the backoff"
    finally:
        running.cancel()
        await asyncio.wait([running])
        broker.stop()
