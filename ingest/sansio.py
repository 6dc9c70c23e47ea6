"""What ingest's two sans-IO sessions (``ingest/session.py``, ``ingest/amqp_session.py``) share: their outputs.

Each session queues the bytes to send and the events to report as it handles inputs; the transport
takes them out after every input. Messages held back while paused and the bytes of a partial frame
are kept here too, so that both sessions report them the same way.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import Enum
from typing import Generic, TypeVar

from ingest.source import Message

E = TypeVar("E")


class SessionOutput(Generic[E]):
    """Bytes to send, events, held messages and a partial frame of one connection's session."""

    def __init__(self, now: float, *, paused: bool) -> None:
        self._out: list[bytes] = []
        self._events: list[E] = []
        self._pending = b""
        self._held: list[Message] = []
        self.paused = paused
        self.last_rx = self.last_tx = now

    def data_to_send(self) -> bytes:
        out, self._out = b"".join(self._out), []
        return out

    def next_events(self) -> list[E]:
        events, self._events = self._events, []
        return events

    def pause(self) -> None:
        """Hold messages back (the pipeline is full); every other frame or packet is still handled."""
        self.paused = True

    @property
    def held(self) -> int:
        """Messages held while paused."""
        return len(self._held)

    @property
    def buffered(self) -> int:
        """Bytes of an incomplete packet or frame kept until the rest arrives (bounded by the session)."""
        return len(self._pending)

    def _send(self, data: bytes, now: float) -> None:
        self._out.append(data)
        self.last_tx = now


St = TypeVar("St", bound=Enum)
In = TypeVar("In", bound=Enum)


def state_diagram(transitions: Mapping[tuple[St, In], St], first: St, opening: str, last: St) -> str:
    """A transition table as a Mermaid state diagram, one arrow per pair of states naming every input on it."""
    edges: dict[tuple[St, St], list[str]] = {}
    for (state, event), target in transitions.items():
        edges.setdefault((state, target), []).append(str(event.value))
    lines = ["stateDiagram-v2", f"    [*] --> {first.name}: {opening}"]
    lines += [f"    {state.name} --> {target.name}: {', '.join(events)}" for (state, target), events in edges.items()]
    lines.append(f"    {last.name} --> [*]")
    return "\n".join(lines)
