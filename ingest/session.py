"""Ingest's MQTT 3.1.1 client session, without IO: every state and every transition, in one place.

The caller (``ingest/subscriber.py``) feeds in what happens, and takes out what to do::

    in:  receive_data(bytes), receive_eof(), tick(now), ack(tokens), pause(), resume(), disconnect()
    out: data_to_send() -> bytes, next_events() -> [Connected | Subscribed | Closed], the messages
         returned by receive_data() and resume(), deadline (when to call tick next)

The connection's life is the table :data:`TRANSITIONS` (``docs/ingest.md`` draws it from the same
table, checked by a test). Pausing is not a state: it is a flag that holds PUBLISHes back from the
pipeline while every packet, CONNACK, SUBACK, PINGRESP and EOF included, is still read. Held
PUBLISHes are bounded by ``hold_bytes``; past it, PUBLISHes are dropped unacknowledged (the broker
keeps them in the session) and, once everything held has been acknowledged, the session closes
with ``redeliver`` set so the caller reconnects at once and the broker sends them again. (Mosquitto
2.0.11 honours neither an MQTT 5 Receive Maximum nor ``max_inflight_messages`` once
acknowledgements have started, ``bench/inflight_window.py``, so the bound has to be ours.)

Choices the protocol leaves to a client:

- QoS 2 and 3: ingest subscribes at QoS 1, so the broker may not send QoS 2 (it downgrades), and
  QoS 3 does not exist. Either is a protocol error that closes the connection; neither is answered.
- A PUBLISH larger than ``max_packet`` is never buffered: its topic and packet id are read, the
  rest is skipped as it arrives, and it is handed over with the :data:`OVERSIZE` flag and its size
  for a payload, so the pipeline counts it (``too_large``) and acknowledges it in order.
  Closing instead would make a persistent session redeliver it after every reconnect, forever.
- A retained PUBLISH on a resumed session (session present 1) was delivered through the session
  when it was published: it comes again only because ingest subscribes again. It is handed over
  with :data:`RETAINED`, acknowledged and not stored (a last will has no ``ts`` and would become a
  new "offline" point at every restart). On a new session it is news, and stored.
- A DUP PUBLISH (a redelivery after a reconnect) is handed over with :data:`DUP`: stored again
  (idempotent points) but not counted as a new message.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum
from typing import Final

from ingest.exceptions import ConnectRefusedError, MqttError, MqttProtocolError, SubscribeRefusedError
from ingest.sansio import SessionOutput, state_diagram
from ingest.source import DUP, OVERSIZE, RETAINED, AckToken, Message
from telemetry.contract import MAX_PAYLOAD_BYTES


class State(StrEnum):
    CONNECTING = "connecting"
    """CONNECT sent, waiting for the CONNACK."""
    SUBSCRIBING = "subscribing"
    """Connected, SUBSCRIBE sent; a resumed session's PUBLISHes may come before the SUBACK."""
    ACTIVE = "active"
    """Subscribed at QoS 1."""
    CLOSED = "closed"
    """The end of this connection (a refusal, an error, EOF, silence, or our DISCONNECT)."""


class Input(StrEnum):
    CONNACK_ACCEPTED = "CONNACK 0"
    CONNACK_REFUSED = "CONNACK 1-5"
    SUBACK_GRANTED = "SUBACK QoS 1"
    SUBACK_REFUSED = "SUBACK 0x80, QoS 0 or a wrong id"
    PUBLISH = "PUBLISH"
    PINGRESP = "PINGRESP"
    CONNECT_TIMEOUT = "no CONNACK in time"
    SILENCE = "silent for a keepalive"
    PROTOCOL_ERROR = "protocol error"
    EOF = "EOF"
    DISCONNECT = "disconnect()"
    REDELIVER = "held ones acknowledged after an overflow"


_S, _I = State, Input
_ENDS = {_I.EOF: _S.CLOSED, _I.PROTOCOL_ERROR: _S.CLOSED, _I.DISCONNECT: _S.CLOSED}
TRANSITIONS: Final[dict[tuple[State, Input], State]] = {
    (_S.CONNECTING, _I.CONNACK_ACCEPTED): _S.SUBSCRIBING,
    (_S.CONNECTING, _I.CONNACK_REFUSED): _S.CLOSED,
    (_S.CONNECTING, _I.CONNECT_TIMEOUT): _S.CLOSED,
    **{(_S.CONNECTING, i): s for i, s in _ENDS.items()},
    (_S.SUBSCRIBING, _I.PUBLISH): _S.SUBSCRIBING,
    (_S.SUBSCRIBING, _I.PINGRESP): _S.SUBSCRIBING,
    (_S.SUBSCRIBING, _I.SUBACK_GRANTED): _S.ACTIVE,
    (_S.SUBSCRIBING, _I.SUBACK_REFUSED): _S.CLOSED,
    (_S.SUBSCRIBING, _I.SILENCE): _S.CLOSED,
    (_S.SUBSCRIBING, _I.REDELIVER): _S.CLOSED,
    **{(_S.SUBSCRIBING, i): s for i, s in _ENDS.items()},
    (_S.ACTIVE, _I.PUBLISH): _S.ACTIVE,
    (_S.ACTIVE, _I.PINGRESP): _S.ACTIVE,
    (_S.ACTIVE, _I.SILENCE): _S.CLOSED,
    (_S.ACTIVE, _I.REDELIVER): _S.CLOSED,
    **{(_S.ACTIVE, i): s for i, s in _ENDS.items()},
}
"""(state, input) -> next state. An input missing for a state is a protocol error (a PUBLISH
before the CONNACK, a second CONNACK...); every input in CLOSED is ignored."""


def diagram() -> str:
    """The state diagram of :data:`TRANSITIONS`, as Mermaid, one arrow per pair of states (``docs/ingest.md``)."""
    return state_diagram(TRANSITIONS, State.CONNECTING, "CONNECT sent", State.CLOSED)


class ProtocolErrorKind(StrEnum):
    """Why the broker's bytes were refused (label of ``ingest_mqtt_protocol_errors_total``)."""

    MALFORMED = "malformed"
    UNEXPECTED = "unexpected_packet"
    QOS2 = "qos2"
    QOS3 = "qos3"
    OVERSIZE = "oversize_control"
    PACKET_ID = "packet_id"


@dataclass(slots=True, frozen=True)
class Connected:
    """The CONNACK accepted the connection."""

    session_present: bool
    session_lost: bool
    """The broker had no session although an earlier connection of ours had one: what was
    published meanwhile is gone."""


@dataclass(slots=True, frozen=True)
class Subscribed:
    """The SUBACK granted QoS 1: the subscription is in place."""


@dataclass(slots=True, frozen=True)
class Closed:
    """This connection is over; the caller closes the transport (after sending what is left)."""

    reason: str
    error: MqttError | None = None
    redeliver: bool = False
    """Closed on purpose after an overflow: reconnect at once, the broker redelivers."""
    protocol_error: ProtocolErrorKind | None = None


Event = Connected | Subscribed | Closed

_PUBACK_PACK = struct.Struct("!BBH").pack
_PINGREQ: Final = b"\xc0\x00"
_DISCONNECT: Final = b"\xe0\x00"
_SUBSCRIBE_ID: Final = 1
TOPIC_SLACK: Final = 2 + 1024 + 2
"""A PUBLISH's variable header taken whole: topic length, a topic of up to 1 KiB, packet id."""
_MESSAGE_OVERHEAD: Final = 160
"""Bytes of Python objects per held message besides its payload and topic (tuple, str, bytes headers)."""


def varint(n: int) -> bytes:
    """MQTT's variable byte integer (the remaining length)."""
    out = bytearray()
    while True:
        n, digit = divmod(n, 128)
        out.append(digit | (0x80 if n else 0))
        if not n:
            return bytes(out)


def utf8(text: str) -> bytes:
    """An MQTT UTF-8 string: two length bytes, then the bytes."""
    raw = text.encode()
    return struct.pack("!H", len(raw)) + raw


def packet(first: int, body: bytes) -> bytes:
    """A control packet: its first byte, the remaining length, the body."""
    return bytes([first]) + varint(len(body)) + body


def connect_packet(client_id: str, *, keepalive: int, clean_session: bool,
                   username: str | None, password: str | None) -> bytes:
    flags = (0x02 if clean_session else 0) | (0x80 if username is not None else 0) | (
        0x40 if password is not None else 0)
    body = utf8("MQTT") + bytes([4, flags]) + struct.pack("!H", keepalive) + utf8(client_id)
    if username is not None:
        body += utf8(username)
    if password is not None:
        body += utf8(password)
    return packet(0x10, body)


def subscribe_packet(topic_filter: str, packet_id: int = _SUBSCRIBE_ID) -> bytes:
    return packet(0x82, struct.pack("!H", packet_id) + utf8(topic_filter) + b"\x01")


@dataclass(slots=True)
class _Skip:
    """An oversize PUBLISH being skipped: what is left of it, and the message it becomes."""

    remaining: int
    message: Message | None = None


class Session(SessionOutput[Event]):
    """One connection's MQTT session: a persistent session subscribed to ``topic_filter`` at QoS 1.

    Args:
        connection: this connection's number (it goes into every acknowledgement token).
        now: the clock's reading at the start (monotonic seconds); ``tick`` takes the same clock.
        connect_timeout: seconds from ``now`` for the CONNACK to come (the caller's TCP connect
            counts against it too, by passing its own start as ``now``).
        expect_session: an earlier connection had a session, so session present 0 means it was lost.
        paused: start with PUBLISHes held (the pipeline is full).
        max_packet: the largest PUBLISH taken whole (payload plus topic and header).
        hold_bytes: what may be held while paused, before PUBLISHes are dropped for redelivery.
        undelivered: packet ids the previous connection dropped (:attr:`dropped_ids`): their
            redeliveries are their first delivery to the caller, so they are not flagged DUP.
    """

    def __init__(self, *, client_id: str, topic_filter: str, connection: int, now: float,
                 keepalive: int = 30, connect_timeout: float = 10.0, username: str | None = None,
                 password: str | None = None, expect_session: bool = False, paused: bool = False,
                 max_packet: int = MAX_PAYLOAD_BYTES + TOPIC_SLACK, hold_bytes: int = 32 * 1024 * 1024,
                 undelivered: frozenset[int] = frozenset()) -> None:
        if keepalive < 1:
            raise ValueError(f"keepalive must be at least 1 s, got {keepalive}")
        super().__init__(now, paused=paused)
        self.state = State.CONNECTING
        self.connection = connection
        self._topic_filter = topic_filter
        self._keepalive = keepalive
        self._connack_deadline = now + connect_timeout
        self._expect_session = expect_session
        self._max_packet, self._hold_bytes = max_packet, hold_bytes
        self._out.append(connect_packet(client_id, keepalive=keepalive, clean_session=False,
                                        username=username, password=password))
        self._skip: _Skip | None = None
        self._flags_mask = DUP  # RETAINED only on a resumed session
        self._publish_ok = False
        self._held_size = 0
        self.dropped = 0
        """PUBLISHes dropped unacknowledged past ``hold_bytes`` (redelivered after the reconnect)."""
        self.dropped_ids: set[int] = set()
        self._undelivered = set(undelivered)
        self._last_token: AckToken | None = None  # of the last QoS 1 message handed over or held
        self._drain_token: AckToken | None = None  # the last one before the first drop, until acknowledged
        self._last_acked = -1  # packet id of the last PUBACK sent
        self._last_ping = now

    # --- inputs --------------------------------------------------------------------------------

    def receive_data(self, data: bytes, now: float) -> list[Message]:
        """Bytes from the broker; returns the PUBLISHes to hand over now (none while paused)."""
        self.last_rx = now
        if self.state is State.CLOSED:
            return []
        if self._skip is not None:
            data = self._skipping(data)
            if not data:
                return []
        if self._pending:
            data = self._pending + data
            self._pending = b""
        messages: list[Message] = []
        try:
            i = self._parse(data, messages)
        except MqttProtocolError as exc:
            self._protocol_error(exc, exc.kind if isinstance(exc, _ViolationError) else ProtocolErrorKind.UNEXPECTED)
            return []
        except (IndexError, ValueError) as exc:
            self._protocol_error(MqttProtocolError(f"malformed packet: {exc}"), ProtocolErrorKind.MALFORMED)
            return []
        if i < len(data):
            self._pending = data[i:]
        return self._deliver(messages)

    def receive_eof(self) -> None:
        """The broker closed the connection (or it broke)."""
        self._input(Input.EOF, Closed("connection closed by the broker", MqttError("connection closed by the broker")))

    def tick(self, now: float) -> None:
        """The time is ``now``: enforce the CONNACK deadline and the keepalive."""
        if self.state is State.CLOSED:
            return
        if self.state is State.CONNECTING:
            if now >= self._connack_deadline:
                self._input(Input.CONNECT_TIMEOUT, Closed("no CONNACK in time", MqttError("no CONNACK in time")))
            return
        silent = now - self.last_rx
        if silent >= self._keepalive:
            reason = f"no packet from the broker for {silent:.1f} s (keepalive {self._keepalive} s)"
            self._input(Input.SILENCE, Closed(reason, MqttError(reason)))
            return
        half = self._keepalive / 2
        if now - self._last_ping >= half and (silent >= half or now - self.last_tx >= half):
            self._send(_PINGREQ, now)
            self._last_ping = now

    @property
    def deadline(self) -> float:
        """When :meth:`tick` has something to do next (it may be called earlier)."""
        if self.state is State.CONNECTING:
            return self._connack_deadline
        half = self._keepalive / 2
        ping = max(self._last_ping + half, min(self.last_rx, self.last_tx) + half)
        return min(ping, self.last_rx + self._keepalive)

    def ack(self, tokens: Iterable[AckToken], now: float) -> int:
        """Queue the PUBACKs of ``tokens`` that belong to this connection; returns how many."""
        if self.state is State.CLOSED:
            return 0
        current = self.connection
        if self._drain_token is not None:  # after an overflow: watch for the last token before it
            tokens = list(tokens)
            if self._drain_token in tokens:
                self._drain_token = None
        pids = [pid for conn, pid in tokens if conn == current]
        if pids:
            self._send(b"".join([_PUBACK_PACK(0x40, 2, pid) for pid in pids]), now)
            self._last_acked = pids[-1]
            self._check_redeliver()
        return len(pids)

    def resume(self) -> list[Message]:
        """Hand PUBLISHes over again; returns those held meanwhile, in order."""
        self.paused = False
        held, self._held, self._held_size = self._held, [], 0
        self._check_redeliver()
        return held

    def disconnect(self, now: float) -> None:
        """A clean end: DISCONNECT (the broker keeps the session) after what is queued to send."""
        if self.state is not State.CLOSED:
            self._send(_DISCONNECT, now)
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
            self._protocol_error(MqttProtocolError(f"{event.value} while {self.state.value}"),
                                 ProtocolErrorKind.UNEXPECTED)
            return
        self.state = target
        self._publish_ok = (target, Input.PUBLISH) in TRANSITIONS
        if target is State.CLOSED and closed is not None:
            self._events.append(closed)

    def _protocol_error(self, exc: MqttProtocolError, kind: ProtocolErrorKind) -> None:
        self._input(Input.PROTOCOL_ERROR, Closed(f"protocol error: {exc}", exc, protocol_error=kind))

    def _deliver(self, messages: list[Message]) -> list[Message]:
        if not messages:
            return messages
        if self._undelivered:
            messages = [self._first_delivery(m) for m in messages]
        if not self.paused:
            self._note_last(messages)
            return messages
        for message in messages:
            size = len(message[0]) + len(message[1]) + _MESSAGE_OVERHEAD
            if self.dropped or self._held_size + size > self._hold_bytes:
                if not self.dropped and self._last_token is not None and self._last_token[1] != self._last_acked:
                    self._drain_token = self._last_token  # acknowledgements come in order: wait for this one
                self.dropped += 1  # and every one after it, so acknowledgements stay in order
                if message[2] is not None:
                    self.dropped_ids.add(message[2][1])
            else:
                self._held.append(message)
                self._held_size += size
                if message[2] is not None:
                    self._last_token = message[2]
        return []

    def _note_last(self, messages: list[Message]) -> None:
        """Remember the last token handed over (once per read: acknowledgements come in order)."""
        for message in reversed(messages):
            if message[2] is not None:
                self._last_token = message[2]
                return

    def _first_delivery(self, message: Message) -> Message:
        """A redelivery of what the previous connection dropped unread is new to the caller."""
        topic, payload, token, flags = message
        if flags & DUP and token is not None and token[1] in self._undelivered:
            self._undelivered.discard(token[1])
            return topic, payload, token, flags & ~DUP
        return message

    def _check_redeliver(self) -> None:
        if self.dropped and not self.paused and not self._held and self._drain_token is None:
            reason = f"{self.dropped} messages dropped while paused: reconnecting for their redelivery"
            self._input(Input.REDELIVER, Closed(reason, redeliver=True))

    def _parse(self, data: bytes, messages: list[Message]) -> int:
        """Collect the PUBLISHes of ``data``, handle the rest; return where a partial packet begins."""
        add, connection, limit, mask = messages.append, self.connection, self._max_packet, self._flags_mask
        publish_ok = self._publish_ok
        i, end = 0, len(data)
        while end - i >= 2:
            j, length, mult = i + 1, 0, 1
            while True:  # remaining length: up to 4 bytes, 7 bits each
                if j >= end:
                    return i
                b = data[j]
                j += 1
                length += (b & 127) * mult
                if b < 128:
                    break
                mult *= 128
                if mult > 128**3:
                    raise _ViolationError(ProtocolErrorKind.MALFORMED, "malformed remaining length")
            first = data[i]
            stop = j + length
            if length > limit:
                if not self._oversize(first, data, j, length, messages):
                    return i  # its header is not all here yet
                if stop > end:
                    self._skip = _Skip(stop - end)
                    return end
            elif stop > end:
                return i
            elif first >> 4 == 3 and publish_ok:  # the hot path, inline
                k = j + 2 + ((data[j] << 8) | data[j + 1])
                topic = data[j + 2:k].decode("utf-8", "replace")
                qos = first & 0x06
                if qos == 2:
                    add((topic, data[k + 2:stop], (connection, (data[k] << 8) | data[k + 1]), first & mask))
                elif qos == 0:
                    add((topic, data[k:stop], None, first & mask))
                else:
                    self._bad_qos(qos)
            else:
                self._control(first, data, j, stop)
                if self.state is State.CLOSED:
                    return end
                mask, publish_ok = self._flags_mask, self._publish_ok
            i = stop
        return i

    def _bad_qos(self, qos_bits: int) -> None:
        kind = ProtocolErrorKind.QOS2 if qos_bits == 4 else ProtocolErrorKind.QOS3
        raise _ViolationError(kind, f"a PUBLISH at QoS {qos_bits >> 1} on a QoS 1 subscription")

    def _control(self, first: int, data: bytes, start: int, end: int) -> None:
        match first >> 4:
            case 2 if end - start == 2:
                self._connack(data[start + 1], bool(data[start] & 1))
            case 9 if end - start >= 3:
                self._suback((data[start] << 8) | data[start + 1], data[start + 2])
            case 13:
                self._input(Input.PINGRESP)
            case 3:
                self._input(Input.PUBLISH)  # before the CONNACK: a protocol error
            case other:
                raise MqttProtocolError(f"unexpected packet type {other}")

    def _connack(self, code: int, present: bool) -> None:
        if code:
            exc = ConnectRefusedError(code)
            self._input(Input.CONNACK_REFUSED, Closed(str(exc), exc))
            return
        self._input(Input.CONNACK_ACCEPTED)
        if self.state is State.SUBSCRIBING:
            self._flags_mask = DUP | RETAINED if present else DUP
            self._events.append(Connected(present, self._expect_session and not present))
            self._out.append(subscribe_packet(self._topic_filter))

    def _suback(self, packet_id: int, granted: int) -> None:
        if packet_id != _SUBSCRIBE_ID or granted != 1:
            what = f"packet id {packet_id}" if packet_id != _SUBSCRIBE_ID else (
                "0x80 (refused)" if granted == 0x80 else f"QoS {granted}")
            exc = SubscribeRefusedError(self._topic_filter, what)
            self._input(Input.SUBACK_REFUSED, Closed(str(exc), exc))
            return
        self._input(Input.SUBACK_GRANTED)
        if self.state is State.ACTIVE:
            self._events.append(Subscribed())

    def _oversize(self, first: int, data: bytes, j: int, length: int, messages: list[Message]) -> bool:
        """A packet over the bound: a PUBLISH is handed over without its payload, anything else closes.

        Returns False while the PUBLISH's header has not all arrived.
        """
        if first >> 4 != 3 or not self._publish_ok:
            raise _ViolationError(ProtocolErrorKind.OVERSIZE,
                                  f"a packet of type {first >> 4} over {self._max_packet} bytes")
        if len(data) - j < 2:
            return False
        k = j + 2 + ((data[j] << 8) | data[j + 1])
        qos = first & 0x06
        if qos not in (0, 2):
            self._bad_qos(qos)
        if len(data) < k + (2 if qos else 0):
            return False
        topic = data[j + 2:k].decode("utf-8", "replace")
        token = (self.connection, (data[k] << 8) | data[k + 1]) if qos else None
        size = length - (k - j) - (2 if qos else 0)
        messages.append((topic, str(size).encode(), token, (first & self._flags_mask) | OVERSIZE))
        return True

    def _skipping(self, data: bytes) -> bytes:
        """Drop what is left of the packet being skipped; return the bytes after it."""
        skip = self._skip
        assert skip is not None  # noqa: S101 - only called while skipping
        if len(data) < skip.remaining:
            skip.remaining -= len(data)
            return b""
        rest = data[skip.remaining:]
        self._skip = None
        return rest


class _ViolationError(MqttProtocolError):
    def __init__(self, kind: ProtocolErrorKind, message: str) -> None:
        self.kind = kind
        super().__init__(message)
