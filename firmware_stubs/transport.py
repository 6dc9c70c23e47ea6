"""The transport: how a paho client reaches the broker (TCP, TLS, the CONNECT packet).

The connection asks its :class:`Transport` to open each new client and never looks behind it:
on a device that is :class:`TcpTransport`; the simulator wraps it to cut and restore a station's
network (``simulator/network.py``) without the agent knowing.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Protocol

import paho.mqtt.client as mqtt
from paho.mqtt.enums import MQTTErrorCode

from firmware_stubs.exceptions import ConnectError


class Transport(Protocol):
    """Opens a client's connection to the broker."""

    async def open(self, client: mqtt.Client, host: str, port: int, keepalive: int) -> None:
        """Connect ``client`` (its socket open, CONNECT sent); raise :class:`ConnectError` when it cannot.

        Cancelled, it closes whatever socket the attempt still opens.
        """
        ...


class TcpTransport:
    """The real network. paho's connect blocks (DNS, TCP, TLS): it runs in a worker thread."""

    async def open(self, client: mqtt.Client, host: str, port: int, keepalive: int) -> None:
        loop = asyncio.get_running_loop()
        fut = loop.run_in_executor(None, client.connect, host, port, keepalive)
        try:
            await asyncio.shield(fut)
        except asyncio.CancelledError:
            fut.add_done_callback(lambda f: _abandon(f, client))
            raise
        except (OSError, ValueError) as exc:
            raise ConnectError(f"cannot connect: {exc or type(exc).__name__}") from exc


TCP = TcpTransport()
"""The transport every agent uses unless told otherwise (it holds no state)."""


def _abandon(fut: asyncio.Future[MQTTErrorCode], client: mqtt.Client) -> None:
    if not fut.cancelled():
        fut.exception()  # retrieved: the connect of a cancelled session may have failed
    close_socket(client)


def close_socket(client: mqtt.Client) -> None:
    """Close the client's socket without a DISCONNECT (the broker then publishes the will)."""
    sock = client.socket()
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.close()
