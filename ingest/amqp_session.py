"""Ingest's AMQP 0-9-1 consumer session, without IO: every state and every transition, in one place.

The caller (``ingest/amqp_consumer.py``) feeds in what happens, and takes out what to do::

    in:  receive_data(bytes), receive_eof(), tick(now), ack(tokens), pause(), resume(), disconnect()
    out: data_to_send() -> bytes, next_events() -> [Consuming | Closed], the messages returned by
         receive_data() and resume(), deadline (when to call tick next)

One connection, one channel (1), one consumer on a quorum queue. The handshake, each step waiting
for the broker's answer: protocol header, ``connection.start`` / ``start-ok`` (PLAIN),
``connection.tune`` / ``tune-ok`` (heartbeat, frame size), ``connection.open`` (the vhost),
``channel.open``, ``basic.qos`` (the prefetch: how many deliveries may be unacknowledged, the
in-flight bound), ``queue.declare`` (durable, ``x-queue-type: quorum``) and ``queue.bind`` to
``amq.topic`` (idempotent, at every connect: a queue deleted meanwhile is made again), then
``basic.consume``. The life of the connection is the table :data:`TRANSITIONS`
(``docs/ingest.md`` draws it from the same table, checked by a test).

Deliveries become :data:`ingest.source.Message` tuples: the routing key
``stations.v1.PL-KT-001.occupancy`` becomes the topic ``stations/v1/PL-KT-001/occupancy`` (the
MQTT plugin's mapping inverted: ``.`` and ``/`` swap), the token is (connection, delivery tag),
``redelivered`` is the :data:`DUP` flag. A body over ``max_body`` is never buffered: its frames
are skipped as they come and it is handed over with :data:`OVERSIZE` and its size, to become a
``too_large`` reject that is acknowledged. Acknowledgements go as one ``basic.ack`` with
``multiple`` set for the last delivery tag of each call (the pipeline acknowledges in delivery
order, once per written batch). Tags of another connection are dropped: the broker requeued them
when that connection ended.

Pausing is not a state: deliveries are held back (the prefetch bounds how many) while every frame
is still read, heartbeats, ``connection.close`` and EOF included.

The broker ends things three ways, each handled: ``connection.close`` (answered with
``close-ok``: a refusal such as 403 ACCESS_REFUSED after ``start-ok``, 320 CONNECTION_FORCED when a
node stops), ``channel.close`` (answered, then the connection is closed: 404 NOT_FOUND, 406
PRECONDITION_FAILED at the declare, when the queue exists with other arguments) and
``basic.cancel`` (the consumer cancelled: the queue was deleted or its leader moved; the
connection is closed and the caller reconnects, declaring and consuming again).

The hot frames (``basic.deliver``, the content header, the body) are decoded here with ``struct``;
every other method is encoded and decoded by ``pamqp`` (tests hold the two to the same results).
"""

from __future__ import annotations

import re
import struct
from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum
from typing import Final

from pamqp import commands
from pamqp import frame as pamqp_frame
from pamqp.base import Frame
from pamqp.exceptions import PAMQPException
from pamqp.header import ProtocolHeader

from ingest.exceptions import AmqpClosedError, AmqpError, AmqpProtocolError
from ingest.sansio import SessionOutput, state_diagram
from ingest.source import DUP, OVERSIZE, AckToken, Message
from telemetry.contract import MAX_PAYLOAD_BYTES

EXCHANGE: Final = "amq.topic"
"""Where the MQTT plugin publishes (its ``mqtt.exchange`` default)."""
ROUTING_KEY: Final = "stations.v1.#"
"""The binding: every station topic, as the MQTT plugin maps ``stations/v1/+/+``."""
CHANNEL: Final = 1
FRAME_MAX: Final = 131_072
"""The largest frame we take (RabbitMQ's default; a body over it comes in several frames)."""


class State(StrEnum):
    AWAIT_START = "awaiting start"
    """Protocol header sent, waiting for ``connection.start``."""
    AWAIT_TUNE = "awaiting tune"
    """``start-ok`` (credentials) sent, waiting for ``connection.tune`` (or a refusal)."""
    OPENING = "opening"
    """``tune-ok`` and ``connection.open`` sent."""
    CHANNEL = "opening channel"
    """``channel.open`` sent."""
    QOS = "setting prefetch"
    """``basic.qos`` sent."""
    DECLARING = "declaring"
    """``queue.declare`` sent."""
    BINDING = "binding"
    """``queue.bind`` sent."""
    SUBSCRIBING = "subscribing"
    """``basic.consume`` sent."""
    ACTIVE = "active"
    """Consuming: deliveries come."""
    CLOSING = "closing"
    """``connection.close`` sent (ours, or after a ``channel.close`` or ``basic.cancel``): waiting
    for ``close-ok``; deliveries are not handed over (the broker requeues them)."""
    CLOSED = "closed"
    """The end of this connection."""


class Input(StrEnum):
    START = "connection.start"
    TUNE = "connection.tune"
    OPEN_OK = "connection.open-ok"
    CHANNEL_OPEN_OK = "channel.open-ok"
    QOS_OK = "basic.qos-ok"
    DECLARE_OK = "queue.declare-ok"
    BIND_OK = "queue.bind-ok"
    CONSUME_OK = "basic.consume-ok"
    DELIVER = "basic.deliver"
    HEARTBEAT = "heartbeat"
    CLOSE = "connection.close"
    CLOSE_OK = "connection.close-ok"
    CHANNEL_CLOSE = "channel.close"
    CANCEL = "basic.cancel"
    HANDSHAKE_TIMEOUT = "not consuming in time"
    SILENCE = "silent for two heartbeats"
    CLOSE_TIMEOUT = "no close-ok in time"
    PROTOCOL_ERROR = "protocol error"
    EOF = "EOF"
    DISCONNECT = "disconnect()"


_S, _I = State, Input
_HANDSHAKE: Final = (_S.AWAIT_START, _S.AWAIT_TUNE, _S.OPENING, _S.CHANNEL, _S.QOS, _S.DECLARING, _S.BINDING,
                     _S.SUBSCRIBING)
_TUNED: Final = (_S.OPENING, _S.CHANNEL, _S.QOS, _S.DECLARING, _S.BINDING, _S.SUBSCRIBING, _S.ACTIVE)
_STEPS: Final = {
    (_S.AWAIT_START, _I.START): _S.AWAIT_TUNE,
    (_S.AWAIT_TUNE, _I.TUNE): _S.OPENING,
    (_S.OPENING, _I.OPEN_OK): _S.CHANNEL,
    (_S.CHANNEL, _I.CHANNEL_OPEN_OK): _S.QOS,
    (_S.QOS, _I.QOS_OK): _S.DECLARING,
    (_S.DECLARING, _I.DECLARE_OK): _S.BINDING,
    (_S.BINDING, _I.BIND_OK): _S.SUBSCRIBING,
    (_S.SUBSCRIBING, _I.CONSUME_OK): _S.ACTIVE,
}
TRANSITIONS: Final[dict[tuple[State, Input], State]] = {
    **_STEPS,
    (_S.ACTIVE, _I.DELIVER): _S.ACTIVE,
    **{(s, _I.HEARTBEAT): s for s in (*_TUNED, _S.CLOSING)},
    **{(s, _I.CLOSE): _S.CLOSED for s in (*_HANDSHAKE, _S.ACTIVE, _S.CLOSING)},
    **{(s, _I.CHANNEL_CLOSE): _S.CLOSING for s in (_S.QOS, _S.DECLARING, _S.BINDING, _S.SUBSCRIBING, _S.ACTIVE)},
    (_S.ACTIVE, _I.CANCEL): _S.CLOSING,
    **{(s, _I.HANDSHAKE_TIMEOUT): _S.CLOSED for s in _HANDSHAKE},
    (_S.ACTIVE, _I.SILENCE): _S.CLOSED,
    **{(s, _I.DISCONNECT): _S.CLOSED for s in (_S.AWAIT_START, _S.AWAIT_TUNE)},
    **{(s, _I.DISCONNECT): _S.CLOSING for s in _TUNED},
    (_S.CLOSING, _I.DELIVER): _S.CLOSING,
    (_S.CLOSING, _I.CHANNEL_CLOSE): _S.CLOSING,
    (_S.CLOSING, _I.CANCEL): _S.CLOSING,
    (_S.CLOSING, _I.CLOSE_OK): _S.CLOSED,
    (_S.CLOSING, _I.CLOSE_TIMEOUT): _S.CLOSED,
    **{(s, _I.EOF): _S.CLOSED for s in (*_HANDSHAKE, _S.ACTIVE, _S.CLOSING)},
    **{(s, _I.PROTOCOL_ERROR): _S.CLOSED for s in (*_HANDSHAKE, _S.ACTIVE, _S.CLOSING)},
}
"""(state, input) -> next state. An input missing for a state is a protocol error (a delivery before
``consume-ok``, a second ``connection.tune``...); every input in CLOSED is ignored."""


def diagram() -> str:
    """The state diagram of :data:`TRANSITIONS`, as Mermaid, one arrow per pair of states (``docs/ingest.md``)."""
    return state_diagram(TRANSITIONS, State.AWAIT_START, "protocol header sent", State.CLOSED)


class ProtocolErrorKind(StrEnum):
    """Why the broker's frames were refused (label of ``ingest_amqp_protocol_errors_total``)."""

    MALFORMED = "malformed"
    UNEXPECTED = "unexpected_frame"
    OVERSIZE = "oversize_frame"
    VERSION = "protocol_version"


@dataclass(slots=True, frozen=True)
class Consuming:
    """``basic.consume-ok``: deliveries will come."""

    queue: str
    messages: int
    """Ready in the queue at the declare."""
    consumers: int
    """Other consumers of the queue at the declare."""
    server: str
    """The broker's product and version, and its cluster's name."""


@dataclass(slots=True, frozen=True)
class Closed:
    """This connection is over; the caller closes the transport (after sending what is left)."""

    reason: str
    error: AmqpError | None = None
    cancelled: bool = False
    """The broker cancelled the consumer (``basic.cancel``)."""
    protocol_error: ProtocolErrorKind | None = None


Event = Consuming | Closed

_HEADER: Final = ProtocolHeader().marshal()
_HEARTBEAT: Final = b"\x08\x00\x00\x00\x00\x00\x00\xce"
_FRAME_HEAD = struct.Struct(">BHI")
_ACK = struct.Struct(">BHIHHQBB")
_DELIVER: Final = b"\x00\x3c\x00\x3c"  # class 60 (basic), method 60 (deliver)
_TAG = struct.Struct(">Q")
_BODY_SIZE = struct.Struct(">Q")
_HEADER_HEAD = struct.Struct(">BHIHHQ")  # a content header frame's head: type, channel, size, class, weight, body size
_TOPIC_CACHE_MAX: Final = 65_536
_SWAP: Final = str.maketrans("./", "/.")
_METHOD_INPUTS: Final[dict[type[Frame], Input]] = {
    commands.Connection.Start: Input.START,
    commands.Connection.Tune: Input.TUNE,
    commands.Connection.OpenOk: Input.OPEN_OK,
    commands.Connection.Close: Input.CLOSE,
    commands.Connection.CloseOk: Input.CLOSE_OK,
    commands.Channel.OpenOk: Input.CHANNEL_OPEN_OK,
    commands.Channel.Close: Input.CHANNEL_CLOSE,
    commands.Basic.QosOk: Input.QOS_OK,
    commands.Queue.DeclareOk: Input.DECLARE_OK,
    commands.Queue.BindOk: Input.BIND_OK,
    commands.Basic.ConsumeOk: Input.CONSUME_OK,
    commands.Basic.Cancel: Input.CANCEL,
    commands.Basic.Deliver: Input.DELIVER,  # the fast path takes those of an active consumer
}
_METHOD_NAMES: Final = {cls.index: re.sub(r"(?<=[a-z])([A-Z])", r"-\1", cls.name).lower() for cls in (
    commands.Connection.StartOk, commands.Connection.TuneOk, commands.Connection.Open, commands.Channel.Open,
    commands.Basic.Qos, commands.Queue.Declare, commands.Queue.Bind, commands.Basic.Consume, commands.Basic.Ack)}


def ack_frame(delivery_tag: int, *, multiple: bool = True) -> bytes:
    """``basic.ack`` on the consumer's channel (per batch: packed here, not by pamqp)."""
    return _ACK.pack(1, CHANNEL, 13, 60, 80, delivery_tag, 1 if multiple else 0, 0xCE)


def topic_of(routing_key: str) -> str:
    """The MQTT topic of a routing key: the MQTT plugin swaps ``/`` and ``.``, so swap them back."""
    return routing_key.translate(_SWAP)


@dataclass(slots=True)
class _Delivery:
    """A delivery whose content is arriving: its header, then body frames up to ``remaining``."""

    topic: str
    token: AckToken
    flags: int
    remaining: int = -1
    """Body bytes still to come; -1 until the content header."""
    parts: list[bytes] | None = None


class Session(SessionOutput[Event]):
    """One connection's consumer of ``queue``, acknowledging per call of :meth:`ack`.

    Args:
        connection: this connection's number (it goes into every acknowledgement token).
        now: the clock's reading at the start (monotonic seconds); ``tick`` takes the same clock.
        username, password, vhost: PLAIN credentials and the virtual host.
        queue: the quorum queue to declare, bind and consume.
        prefetch: deliveries the broker may send unacknowledged (the in-flight bound).
        heartbeat: seconds proposed (the broker's value when it is lower); two without a frame
            from the broker close the connection.
        handshake_timeout: seconds from ``now`` until ``consume-ok``.
        consumer_tag: this consumer's name in the broker (its connection name too).
        paused: start with deliveries held (the pipeline is full).
        max_body: the largest body taken; a larger one is skipped and handed over as OVERSIZE.
    """

    def __init__(self, *, connection: int, now: float, username: str, password: str,
                 vhost: str = "/", queue: str = "yizhan.ingest", prefetch: int = 2000, heartbeat: int = 30,
                 handshake_timeout: float = 10.0, close_timeout: float = 5.0, consumer_tag: str = "yizhan-ingest",
                 paused: bool = False, max_body: int = MAX_PAYLOAD_BYTES) -> None:
        if heartbeat < 1 or not 0 < prefetch < 65536:
            raise ValueError(f"need heartbeat >= 1 s and 0 < prefetch < 65536, got {heartbeat} and {prefetch}")
        super().__init__(now, paused=paused)
        self.state = State.AWAIT_START
        self.connection = connection
        self._credentials = f"\0{username}\0{password}"
        self._vhost, self._queue, self._prefetch, self._tag = vhost, queue, prefetch, consumer_tag
        self._heartbeat = heartbeat
        self.heartbeat = 0
        """Negotiated at ``connection.tune`` (0 before)."""
        self._frame_max = FRAME_MAX
        self._max_body = max_body
        self._handshake_deadline = now + handshake_timeout
        self._close_timeout = close_timeout
        self._close_deadline = 0.0
        self._closing: Closed | None = None
        self._out.append(_HEADER)
        self._delivery: _Delivery | None = None
        self._topics: dict[bytes, str] = {}
        self._server = ""
        self._declared = (0, 0)
        self._active = False
        self._acked = 0
        self.deliveries = 0
        self.redeliveries = 0

    # --- inputs --------------------------------------------------------------------------------

    def receive_data(self, data: bytes, now: float) -> list[Message]:
        """Bytes from the broker; returns the deliveries to hand over now (none while paused)."""
        self.last_rx = now
        if self.state is State.CLOSED:
            return []
        if self._pending:
            data = self._pending + data
            self._pending = b""
        messages: list[Message] = []
        try:
            i = self._parse(data, messages, now)
        except AmqpProtocolError as exc:
            kind = exc.kind if isinstance(exc, _ViolationError) else ProtocolErrorKind.UNEXPECTED
            self._protocol_error(exc, kind, now)
            return []
        except (IndexError, ValueError, struct.error, PAMQPException) as exc:
            self._protocol_error(AmqpProtocolError(f"malformed frame: {exc}", 501), ProtocolErrorKind.MALFORMED, now)
            return []
        if i < len(data):
            self._pending = data[i:]
        if not messages:
            return messages
        self.deliveries += len(messages)
        if self.paused:
            self._held.extend(messages)
            return []
        return messages

    def receive_eof(self) -> None:
        """The broker closed the connection (or it broke)."""
        reason = "connection closed by the broker"
        if self.state is State.AWAIT_TUNE:
            reason += " after start-ok (credentials refused?)"
        self._input(Input.EOF, Closed(reason, AmqpError(reason)))

    def tick(self, now: float) -> None:
        """The time is ``now``: enforce the handshake and close deadlines and the heartbeats."""
        state = self.state
        if state is State.CLOSED:
            return
        if state is State.CLOSING:
            if now >= self._close_deadline:
                self._input(Input.CLOSE_TIMEOUT)
            return
        if state in _HANDSHAKE and now >= self._handshake_deadline:
            reason = f"not consuming in time (still {state.value})"
            self._input(Input.HANDSHAKE_TIMEOUT, Closed(reason, AmqpError(reason)))
            return
        beat = self.heartbeat
        if not beat:
            return
        if state is State.ACTIVE and now - self.last_rx >= 2 * beat:
            reason = f"no frame from the broker for {now - self.last_rx:.1f} s (heartbeat {beat} s)"
            self._input(Input.SILENCE, Closed(reason, AmqpError(reason)))
            return
        if now - self.last_tx >= beat / 2:
            self._send(_HEARTBEAT, now)

    @property
    def deadline(self) -> float:
        """When :meth:`tick` has something to do next (it may be called earlier)."""
        if self.state is State.CLOSING:
            return self._close_deadline
        deadlines = [self._handshake_deadline] if self.state in _HANDSHAKE else []
        if self.heartbeat:
            deadlines.append(self.last_tx + self.heartbeat / 2)
            if self.state is State.ACTIVE:
                deadlines.append(self.last_rx + 2 * self.heartbeat)
        return min(deadlines) if deadlines else self._handshake_deadline

    def ack(self, tokens: Iterable[AckToken], now: float) -> int:
        """Acknowledge, with one ``basic.ack`` (multiple), up to the last of ``tokens`` that belongs to
        this connection; returns how many of ``tokens`` are this connection's."""
        if self.state is not State.ACTIVE:
            return 0
        current = self.connection
        tokens = tokens if isinstance(tokens, list) else list(tokens)
        last = 0
        for conn, tag in reversed(tokens):
            if conn == current:
                last = tag
                break
        if last <= self._acked:  # none of ours, or already acknowledged (a second ack is a channel error)
            return 0
        self._send(ack_frame(last), now)
        self._acked = last
        return sum(1 for conn, _ in tokens if conn == current)

    def resume(self) -> list[Message]:
        """Hand deliveries over again; returns those held meanwhile, in order."""
        self.paused = False
        held, self._held = self._held, []
        return held

    def disconnect(self, now: float) -> None:
        """A clean end: ``connection.close`` after what is queued to send (the broker requeues what
        was not acknowledged); ``close-ok`` ends it."""
        if self.state in _TUNED:
            self._close(200, "stopping", Closed("stopped"), Input.DISCONNECT, now)
        else:
            self._input(Input.DISCONNECT, Closed("stopped"))

    # --- outputs -------------------------------------------------------------------------------

    @property
    def is_closed(self) -> bool:
        return self.state is State.CLOSED

    # --- the machine ---------------------------------------------------------------------------

    def _input(self, event: Input, closed: Closed | None = None) -> None:
        if self.state is State.CLOSED:
            return
        target = TRANSITIONS.get((self.state, event))
        if target is None:
            raise AmqpProtocolError(f"{event.value} while {self.state.value}", 505)
        self.state = target
        self._active = target is State.ACTIVE
        if target is State.CLOSED:
            final = self._closing or closed
            if final is not None:
                self._events.append(final)

    def _protocol_error(self, exc: AmqpProtocolError, kind: ProtocolErrorKind, now: float) -> None:
        if self.state in (*_TUNED, State.CLOSING):  # tell the broker why, then close at once
            self._send(pamqp_frame.marshal(commands.Connection.Close(exc.reply_code, str(exc)[:255], 0, 0), 0), now)
        self._closing = None
        self._input(Input.PROTOCOL_ERROR, Closed(f"protocol error: {exc}", exc, protocol_error=kind))

    def _method(self, method: Frame, now: float, channel: int = CHANNEL) -> None:
        self._send(pamqp_frame.marshal(method, channel), now)

    def _close(self, code: int, text: str, closed: Closed, via: Input, now: float) -> None:
        """Send ``connection.close`` and wait for ``close-ok`` (CLOSING); ``closed`` is the event at the end."""
        self._method(commands.Connection.Close(code, text, 0, 0), now, 0)
        self._input(via)
        self._closing = closed
        self._close_deadline = now + self._close_timeout

    def _parse(self, data: bytes, messages: list[Message], now: float) -> int:
        """Handle the complete frames of ``data``; return where a partial frame begins."""
        i, end, limit = 0, len(data), self._frame_max
        if self.state is State.AWAIT_START and data[:4] == b"AMQP":  # the broker refused our version
            raise _ViolationError(ProtocolErrorKind.VERSION, f"broker speaks {data[4:8]!r} only", 505)
        head = _FRAME_HEAD.unpack_from
        while end - i >= 7:
            kind, channel, size = head(data, i)
            if size > limit:
                raise _ViolationError(ProtocolErrorKind.OVERSIZE, f"a frame of {size} bytes (at most {limit})", 501)
            stop = i + 7 + size
            if stop >= end:
                return i
            if data[stop] != 0xCE:
                raise _ViolationError(ProtocolErrorKind.MALFORMED, "frame end is not 0xCE", 501)
            if kind == 1:
                if data[i + 7:i + 11] == _DELIVER and self._active:
                    if self._delivery is not None:
                        raise AmqpProtocolError("basic.deliver before the last delivery's content", 505)
                    after = self._run(data, i, end, messages)
                    if after != i:
                        i = after
                        continue
                    self._delivery = _Delivery(*self._deliver(data, i + 11, stop))
                else:
                    self._control(channel, data[i:stop + 1], now)
                    if self.state is State.CLOSED:
                        return end
            elif kind == 3:
                self._body(data, i + 7, stop, messages)
            elif kind == 2:
                self._content_header(data, i + 7, stop, messages)
            elif kind == 8:
                if channel:
                    raise _ViolationError(ProtocolErrorKind.MALFORMED, f"a heartbeat on channel {channel}", 501)
                self._input(Input.HEARTBEAT)
            else:
                raise _ViolationError(ProtocolErrorKind.MALFORMED, f"unknown frame type {kind}", 501)
            i = stop + 1
        return i

    def _deliver(self, data: bytes, j: int, stop: int) -> tuple[str, AckToken, int]:
        """``basic.deliver``: consumer tag, delivery tag, redelivered, exchange, routing key."""
        j += 1 + data[j]  # consumer tag
        tag = _TAG.unpack_from(data, j)[0]
        redelivered = data[j + 8] & 1
        j += 10 + data[j + 9]  # exchange
        key = data[j + 1:j + 1 + data[j]]
        if j + 1 + len(key) != stop or len(key) != data[j]:
            raise _ViolationError(ProtocolErrorKind.MALFORMED, "basic.deliver of the wrong length", 501)
        topic = self._topics.get(key) or self._topic(key)
        if redelivered:
            self.redeliveries += 1
        return topic, (self.connection, tag), DUP if redelivered else 0

    def _run(self, data: bytes, i: int, end: int, messages: list[Message]) -> int:
        """Deliveries in a row whose content header and single body frame are all in ``data`` (the
        common case), decoded in one loop; returns where the first one not taken so begins (the
        frame-by-frame path takes it, and reports what is wrong with it)."""
        head, content_head, tag_of = _FRAME_HEAD.unpack_from, _HEADER_HEAD.unpack_from, _TAG.unpack_from
        topics, connection, max_body, add = self._topics, self.connection, self._max_body, messages.append
        redeliveries = 0
        while end - i >= 7:
            kind, _, length = head(data, i)
            stop = i + 7 + length
            if kind != 1 or stop >= end or data[i + 7:i + 11] != _DELIVER or data[stop] != 0xCE:
                break
            j = i + 12 + data[i + 11]  # after the consumer tag
            tag, redelivered = tag_of(data, j)[0], data[j + 8] & 1
            j += 10 + data[j + 9]  # after the exchange
            if j + 1 + data[j] != stop:
                break
            key = data[j + 1:stop]
            h = stop + 1
            if end - h < 22:
                break
            kind, _, length, _, _, size = content_head(data, h)
            stop = h + 7 + length
            if kind != 2 or stop >= end or data[stop] != 0xCE or length < 14 or size > max_body:
                break
            b = stop + 1
            if size:
                if end - b < 8:
                    break
                kind, _, length = head(data, b)
                stop = b + 7 + length
                if kind != 3 or length != size or stop >= end or data[stop] != 0xCE:
                    break
                body, b = data[b + 7:stop], stop + 1
            else:
                body = b""
            topic = topics.get(key) or self._topic(key)
            if redelivered:
                redeliveries += 1
            add((topic, body, (connection, tag), DUP if redelivered else 0))
            i = b
        self.redeliveries += redeliveries
        return i

    def _topic(self, key: bytes) -> str:
        if len(self._topics) >= _TOPIC_CACHE_MAX:
            self._topics.clear()
        topic = self._topics[key] = key.decode("utf-8", "replace").translate(_SWAP)
        return topic

    def _content_header(self, data: bytes, j: int, stop: int, messages: list[Message]) -> None:
        delivery = self._delivery
        if delivery is None or delivery.remaining >= 0:
            if self.state is State.CLOSING:
                return  # content of a delivery after our close: the broker requeues it
            raise AmqpProtocolError("a content header without a basic.deliver", 505)
        if stop - j < 14:
            raise _ViolationError(ProtocolErrorKind.MALFORMED, "content header too short", 501)
        size = _BODY_SIZE.unpack_from(data, j + 4)[0]
        if size > self._max_body:
            delivery.flags |= OVERSIZE
            delivery.parts = [str(size).encode()]
        delivery.remaining = size
        if not size:
            self._complete(delivery, b"", messages)

    def _body(self, data: bytes, j: int, stop: int, messages: list[Message]) -> None:
        delivery = self._delivery
        if delivery is None or delivery.remaining < 0:
            if self.state is State.CLOSING:
                return
            raise AmqpProtocolError("a body frame without a content header", 505)
        size = stop - j
        remaining = delivery.remaining - size
        if remaining < 0:
            raise _ViolationError(ProtocolErrorKind.MALFORMED, "body longer than its content header said", 501)
        delivery.remaining = remaining
        parts = delivery.parts
        if delivery.flags & OVERSIZE:
            chunk = b""  # skipped: only its size is kept
        elif parts is None and not remaining:  # the whole body in one frame: the common case
            self._complete(delivery, data[j:stop], messages)
            return
        else:
            chunk = data[j:stop]
        if parts is None:
            parts = delivery.parts = []
        if chunk:
            parts.append(chunk)
        if not remaining:
            self._complete(delivery, b"".join(parts), messages)

    def _complete(self, delivery: _Delivery, body: bytes, messages: list[Message]) -> None:
        self._delivery = None
        if self.state is State.ACTIVE:
            messages.append((delivery.topic, body, delivery.token, delivery.flags))

    def _control(self, channel: int, raw: bytes, now: float) -> None:
        """A method frame other than ``basic.deliver``, decoded by pamqp."""
        _, _, method = pamqp_frame.unmarshal(raw)
        event = _METHOD_INPUTS.get(type(method)) if isinstance(method, Frame) else None
        if event is None or channel != (0 if event in _CONNECTION_METHODS else CHANNEL):
            name = getattr(method, "name", type(method).__name__)
            raise AmqpProtocolError(f"{name} on channel {channel} while {self.state.value}", 505)
        match method:
            case commands.Basic.Deliver():  # while closing (its content is dropped), or a protocol error
                self._input(Input.DELIVER)
                self._delivery = _Delivery("", (self.connection, method.delivery_tag or 0), 0)
            case commands.Connection.Start():
                self._start(method, now)
            case commands.Connection.Tune():
                self._tune(method, now)
            case commands.Connection.Close():
                self._server_close(method, now)
            case commands.Channel.Close():
                self._channel_close(method, now)
            case commands.Basic.Cancel():
                self._cancel(method, now)
            case commands.Queue.DeclareOk():
                self._declared = (method.message_count or 0, method.consumer_count or 0)
                self._step(event, commands.Queue.Bind(queue=self._queue, exchange=EXCHANGE, routing_key=ROUTING_KEY),
                           now)
            case _:
                self._step(event, self._next_method(event), now)

    def _next_method(self, event: Input) -> Frame | None:
        match event:
            case Input.OPEN_OK:
                return commands.Channel.Open()
            case Input.CHANNEL_OPEN_OK:
                return commands.Basic.Qos(prefetch_count=self._prefetch)
            case Input.QOS_OK:
                return commands.Queue.Declare(queue=self._queue, durable=True,
                                              arguments={"x-queue-type": "quorum"})
            case Input.BIND_OK:
                return commands.Basic.Consume(queue=self._queue, consumer_tag=self._tag)
        return None

    def _step(self, event: Input, method: Frame | None, now: float) -> None:
        self._input(event)
        if method is not None:
            self._method(method, now)
        if event is Input.CONSUME_OK:
            messages, consumers = self._declared
            self._events.append(Consuming(self._queue, messages, consumers, self._server))

    def _start(self, start: commands.Connection.Start, now: float) -> None:
        if (start.version_major, start.version_minor) != (0, 9) or "PLAIN" not in start.mechanisms.split():
            raise _ViolationError(ProtocolErrorKind.VERSION, f"broker offers AMQP {start.version_major}-"
                                  f"{start.version_minor} with {start.mechanisms!r}: ingest needs 0-9 with PLAIN", 505)
        self._input(Input.START)
        props = start.server_properties or {}
        self._server = " ".join(str(props.get(k, "")) for k in ("product", "version", "cluster_name")).strip()
        self._method(commands.Connection.StartOk(
            client_properties={"product": "yizhan-ingest", "connection_name": self._tag, "capabilities": {
                "consumer_cancel_notify": True, "authentication_failure_close": True}},
            mechanism="PLAIN", response=self._credentials), now, 0)

    def _tune(self, tune: commands.Connection.Tune, now: float) -> None:
        self._input(Input.TUNE)
        server_beat = tune.heartbeat or 0
        self.heartbeat = min(self._heartbeat, server_beat) if server_beat else self._heartbeat
        self._frame_max = min(tune.frame_max or FRAME_MAX, FRAME_MAX)
        self._method(commands.Connection.TuneOk(channel_max=tune.channel_max or 0, frame_max=self._frame_max,
                                                heartbeat=self.heartbeat), now, 0)
        self._method(commands.Connection.Open(virtual_host=self._vhost), now, 0)

    def _server_close(self, close: commands.Connection.Close, now: float) -> None:
        self._method(commands.Connection.CloseOk(), now, 0)
        exc = AmqpClosedError(close.reply_code or 0, close.reply_text,
                              _METHOD_NAMES.get(((close.class_id or 0) << 16) | (close.method_id or 0), ""))
        if self._closing is not None and self._closing.error is None and not self._closing.cancelled:
            self._closing = None  # both sides closing at once: the broker's reason is the one
        self._input(Input.CLOSE, Closed(str(exc), exc))

    def _channel_close(self, close: commands.Channel.Close, now: float) -> None:
        self._method(commands.Channel.CloseOk(), now)
        if self.state is State.CLOSING:
            self._input(Input.CHANNEL_CLOSE)
            return
        exc = AmqpClosedError(close.reply_code or 0, close.reply_text,
                              _METHOD_NAMES.get(((close.class_id or 0) << 16) | (close.method_id or 0), ""),
                              channel=True)
        self._close(200, "channel closed", Closed(str(exc), exc), Input.CHANNEL_CLOSE, now)

    def _cancel(self, cancel: commands.Basic.Cancel, now: float) -> None:
        if self.state is State.CLOSING:
            self._input(Input.CANCEL)
            return
        reason = f"the broker cancelled consumer {cancel.consumer_tag} (queue {self._queue} deleted or moved)"
        self._close(200, "consumer cancelled", Closed(reason, cancelled=True), Input.CANCEL, now)


_CONNECTION_METHODS: Final = frozenset({Input.START, Input.TUNE, Input.OPEN_OK, Input.CLOSE, Input.CLOSE_OK})


class _ViolationError(AmqpProtocolError):
    def __init__(self, kind: ProtocolErrorKind, message: str, reply_code: int) -> None:
        self.kind = kind
        super().__init__(message, reply_code)
