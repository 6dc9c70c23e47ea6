"""The gateway's MQTT connection (aiomqtt): live state in, configs and HTTP-ingress readings out.

The gateway carries little traffic, so aiomqtt's convenience wins here; ingest, which carries
it all, has its own receive path (docs/ingest.md). Reconnects with capped exponential backoff
and jitter; while disconnected, publishing raises :class:`DependencyUnavailableError` (HTTP 503).
"""

from __future__ import annotations

import asyncio
import logging
import random
import ssl
from collections.abc import Callable

import aiomqtt

from gateway.exceptions import DependencyUnavailableError
from telemetry.contract import SUBSCRIPTION

logger = logging.getLogger(__name__)


class MqttLink:
    """Subscribed to every station topic; publishes at QoS 1 and returns once the broker acknowledged."""

    def __init__(self, *, host: str, port: int, on_message: Callable[[str, bytes], None],
                 username: str | None = None, password: str | None = None, tls: ssl.SSLContext | None = None,
                 client_id: str = "", backoff_max: float = 30.0) -> None:
        self._host, self._port = host, port
        self._on_message = on_message
        self._username, self._password, self._tls = username, password, tls
        self._client_id = client_id
        self._backoff_max = backoff_max
        self._client: aiomqtt.Client | None = None
        self.connected = asyncio.Event()

    async def run(self) -> None:
        delay = 1.0
        while True:
            try:
                async with aiomqtt.Client(self._host, self._port, identifier=self._client_id or None,
                                          username=self._username, password=self._password,
                                          tls_context=self._tls, keepalive=30) as client:
                    await client.subscribe(SUBSCRIPTION, qos=1)
                    self._client = client
                    self.connected.set()
                    logger.info("MQTT connected to %s:%s, subscribed to %s", self._host, self._port, SUBSCRIPTION)
                    delay = 1.0
                    async for message in client.messages:
                        payload = message.payload
                        body = payload if isinstance(payload, bytes) else str(payload).encode()
                        self._on_message(str(message.topic), body)
            except aiomqtt.MqttError as exc:
                logger.warning("MQTT %s:%s: %s; retrying in up to %.0f s", self._host, self._port, exc, delay)
            finally:
                self._client = None
                self.connected.clear()
            await asyncio.sleep(delay * random.uniform(0.5, 1.0))  # noqa: S311 - jitter
            delay = min(delay * 2, self._backoff_max)

    async def publish(self, topic: str, payload: bytes, *, retain: bool = False) -> None:
        client = self._client
        if client is None:
            raise DependencyUnavailableError("mqtt", "not connected to the broker")
        try:
            async with asyncio.timeout(10):
                await client.publish(topic, payload, qos=1, retain=retain)
        except (aiomqtt.MqttError, TimeoutError) as exc:
            raise DependencyUnavailableError("mqtt", f"publish to {topic} not acknowledged: {exc}") from exc

