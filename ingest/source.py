"""What the pipeline consumes: a source of messages acknowledged once their points are durable.

Two implementations: :class:`ingest.subscriber.Subscriber` (an MQTT 3.1.1 persistent session,
``MQTT_URL``) and :class:`ingest.amqp_consumer.AmqpConsumer` (a RabbitMQ quorum queue over AMQP
0-9-1, ``AMQP_URL``). Validation, batching, the spool and the rollups are the same code for both:
they see only this interface and the :data:`Message` tuples it hands over.

A source hands over the messages of each read in order, through ``on_messages``; the pipeline
acknowledges them with :meth:`Source.ack` once a batch is written (or spooled), always in the
order they came. Tokens carry the connection they came from, so that a source drops the tokens of
an earlier connection (the broker redelivers what was not acknowledged on it). ``pause`` holds
messages back while the pipeline is full; a source keeps reading its connection meanwhile (its
heartbeats, a close by the broker).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable, Sequence
from typing import Final, Protocol

AckToken = tuple[int, int]
"""(connection number, the message's id on that connection: MQTT packet id, AMQP delivery tag)."""

Message = tuple[str, bytes, AckToken | None, int]
"""Topic, payload, the token to acknowledge (None: nothing to acknowledge), and flags (:data:`DUP`...)."""

OnMessages = Callable[[Sequence[Message]], None]
"""Called with the messages of each read, in order (one call per read: decoding can batch)."""

DUP: Final = 0x08
"""Flag: a redelivery of a message delivered before (MQTT's DUP bit, AMQP's ``redelivered``)."""
RETAINED: Final = 0x01
"""Flag: a retained message redelivered by a new subscription on a resumed session (not stored)."""
OVERSIZE: Final = 0x100
"""Flag: a message over the size bound; its payload was skipped, and the message's payload is the
skipped payload's size in ASCII digits."""


class Source(Protocol):
    """A stream of messages with acknowledgements under the pipeline's control."""

    on_messages: OnMessages
    """Set before :meth:`run`; called synchronously with each read's messages."""
    on_state: Callable[[bool], None]
    """Called with True once messages can flow (subscribed, consuming), False when that ends."""
    connected: asyncio.Event
    """Set while messages can flow."""

    @property
    def paused(self) -> bool: ...

    def ack(self, tokens: Iterable[AckToken]) -> int:
        """Acknowledge ``tokens`` (in the order they came) that belong to the current connection."""
        ...

    def pause(self) -> None:
        """Hold messages back; the connection is still read and watched."""
        ...

    def resume(self) -> None:
        """Hand messages over again, those held meanwhile first."""
        ...

    async def run(self) -> None:
        """Connect and receive until :meth:`stop`, reconnecting with backoff."""
        ...

    async def stop(self) -> None:
        """Send the acknowledgements queued so far, close cleanly, wait until :meth:`run` ends."""
        ...
