"""The gateway's MQTT connection (aiomqtt): live state in, configs and HTTP-ingress readings out.

The gateway carries little traffic, so aiomqtt's convenience wins here; ingest, which carries
it all, has its own receive path (docs/ingest.md). Reconnects as every client here does
(:class:`telemetry.backoff.Backoff`: 1 s doubling to ``backoff_max``, jitter, reset after a
session that stayed up 10 s); while disconnected, publishing raises :class:`DependencyUnavailableError` (HTTP 503).
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import time
from collections.abc import Callable

import aiomqtt

from gateway.exceptions import DependencyUnavailableError
from telemetry.backoff import Backoff
from telemetry.contract import SUBSCRIPTION

logger = logging.getLogger(__name__)

HEALTHY_AFTER = 10.0
"""A session up this long (seconds) resets the reconnect backoff."""


class MqttLink:
    """Subscribed to every station topic; publishes at QoS 1 and returns once the broker acknowledged."""

    def __init__(self, *, host: str, port: int, on_message: Callable[[str, bytes], None],
                 username: str | None = None, password: str | None = None, tls: ssl.SSLContext | None = None,
                 client_id: str = "", backoff: Backoff | None = None) -> None:
        self._host, self._port = host, port
        self._on_message = on_message
        self._username, self._password, self._tls = username, password, tls
        self._client_id = client_id
        self._backoff = backoff or Backoff(initial=1.0, cap=30.0, jitter=0.5, healthy_after=HEALTHY_AFTER)
        self._client: aiomqtt.Client | None = None
        self.connected = asyncio.Event()

    async def run(self) -> None:
        """Sessions one after another, with the backoff between them (cancel to stop)."""
        while True:
            up: float | None = None
            reason = "the session ended"
            try:
                async with aiomqtt.Client(self._host, self._port, identifier=self._client_id or None,
                                          username=self._username, password=self._password,
                                          tls_context=self._tls, keepalive=30) as client:
                    await client.subscribe(SUBSCRIPTION, qos=1)
                    self._client = client
                    self.connected.set()
                    up = time.monotonic()
                    logger.info("MQTT connected to %s:%s, subscribed to %s", self._host, self._port, SUBSCRIPTION)
                    async for message in client.messages:
                        payload = message.payload
                        body = payload if isinstance(payload, bytes) else str(payload).encode()
                        self._on_message(str(message.topic), body)
            except aiomqtt.MqttError as exc:
                reason = str(exc)
            finally:
                self._client = None
                self.connected.clear()
            if up is not None:
                self._backoff.succeeded(time.monotonic() - up)
            wait = self._backoff.next()
            logger.warning("MQTT %s:%s: %s; retrying in %.1f s", self._host, self._port, reason, wait)
            await asyncio.sleep(wait)

    async def publish(self, topic: str, payload: bytes, *, retain: bool = False) -> None:
        client = self._client
        if client is None:
            raise DependencyUnavailableError("mqtt", "not connected to the broker")
        try:
            async with asyncio.timeout(10):
                await client.publish(topic, payload, qos=1, retain=retain)
        except (aiomqtt.MqttError, TimeoutError) as exc:
            raise DependencyUnavailableError("mqtt", f"publish to {topic} not acknowledged: {exc}") from exc

