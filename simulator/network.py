"""A station's network in the simulation: the agent's transport, wrapped so a fault can cut it.

Cut, the connection drops without DISCONNECT (the broker publishes the last will) and every
attempt to reconnect fails, until the network is restored; the agent only sees a transport that
fails, as it would on a device whose uplink went down.
"""

from __future__ import annotations

import contextlib
import socket

import paho.mqtt.client as mqtt

from firmware_stubs.exceptions import ConnectError
from firmware_stubs.transport import TCP, Transport, close_socket


class SimNetwork:
    """A transport that can be cut and restored (it outlives the agent's reboots).

    Args:
        inner: the transport it wraps (default TCP).
    """

    __slots__ = ("_client", "_inner", "up")

    def __init__(self, inner: Transport = TCP) -> None:
        self._inner = inner
        self._client: mqtt.Client | None = None
        self.up = True

    async def open(self, client: mqtt.Client, host: str, port: int, keepalive: int) -> None:
        if not self.up:
            raise ConnectError("network down")
        await self._inner.open(client, host, port, keepalive)
        if not self.up:  # cut while connecting
            close_socket(client)
            raise ConnectError("network down")
        self._client = client

    def cut(self) -> None:
        """Lose the network: the connection drops without DISCONNECT and reconnecting fails."""
        self.up = False
        client, self._client = self._client, None
        sock = client.socket() if client is not None else None
        if isinstance(sock, socket.socket):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def restore(self) -> None:
        """The network is back: the next reconnect attempt (on the backoff schedule) succeeds."""
        self.up = True
