"""Does Mosquitto bound what it has in flight to a subscriber that does not acknowledge?

    .venv/bin/python -m bench.inflight_window [--messages 2000] [--window 100]

Starts a broker (the shipped config's limits, except the one under test), subscribes a raw
socket client at QoS 1 with a persistent session, publishes ``--messages`` QoS 1 messages and
reads without acknowledging. It prints, for each way of asking for a window of ``--window``:

- ``mqtt5_receive_maximum``: an MQTT 5 CONNECT with the Receive Maximum property;
- ``broker_max_inflight``: an MQTT 3.1.1 CONNECT, ``max_inflight_messages`` in the broker's config;
- ``none``: MQTT 3.1.1 and the shipped ``max_inflight_messages 0``,

how many PUBLISHes arrived before any acknowledgement, then the most that were ever unacknowledged
while the client acknowledges half of what it holds after each read (so acknowledgements have
started). A broker that honours the window shows ``--window`` in both columns.
"""

from __future__ import annotations

import argparse
import socket
import struct
import subprocess
import tempfile
import time
from pathlib import Path

from ingest.session import packet, utf8, varint
from tests.rig import Mosquitto

TOPIC = "bench/inflight"


class RawClient:
    """Just enough MQTT 3.1.1 / 5 to subscribe and count PUBLISHes."""

    def __init__(self, port: int, *, version: int, receive_maximum: int | None) -> None:
        self.version = version
        self.sock = socket.create_connection(("127.0.0.1", port))
        self.sock.settimeout(0.5)
        self.buf = b""
        props = b""
        if version == 5:
            props = b"\x21" + struct.pack("!H", receive_maximum) if receive_maximum else b""
            props = varint(len(props)) + props
        body = utf8("MQTT") + bytes([version, 0]) + struct.pack("!H", 60) + props + utf8("inflight-probe")
        self.sock.sendall(packet(0x10, body))
        self.expect(2)
        sub_props = b"\x00" if version == 5 else b""
        self.sock.sendall(packet(0x82, struct.pack("!H", 1) + sub_props + utf8(TOPIC) + b"\x01"))
        self.expect(9)

    def packets(self) -> list[tuple[int, bytes]]:
        """Every complete packet read within the socket timeout."""
        try:
            while chunk := self.sock.recv(65536):
                self.buf += chunk
        except TimeoutError:
            pass
        out = []
        while len(self.buf) >= 2:
            length, mult, j = 0, 1, 1
            while True:
                b = self.buf[j]
                j += 1
                length += (b & 127) * mult
                mult *= 128
                if b < 128:
                    break
            if len(self.buf) < j + length:
                break
            out.append((self.buf[0] >> 4, self.buf[j:j + length]))
            self.buf = self.buf[j + length:]
        return out

    def expect(self, kind: int) -> None:
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            if any(k == kind for k, _ in self.packets()):
                return
        raise SystemExit(f"no packet of type {kind}")

    def publish_ids(self, packets: list[tuple[int, bytes]]) -> list[int]:
        ids = []
        for kind, body in packets:
            if kind == 3:
                k = 2 + struct.unpack("!H", body[:2])[0]
                ids.append(struct.unpack("!H", body[k:k + 2])[0])
        return ids

    def ack(self, ids: list[int]) -> None:
        self.sock.sendall(b"".join(b"\x40\x02" + struct.pack("!H", i) for i in ids))

    def close(self) -> None:
        self.sock.close()


def measure(case: str, messages: int, window: int, work: Path) -> tuple[int, int, int]:
    extra = f"max_inflight_messages {window}" if case == "broker_max_inflight" else ""
    broker = Mosquitto(work / case, extra=extra, persistence=False, log_types=("error",))
    shipped = broker.config
    broker.config = lambda: "\n".join(ln for ln in shipped().splitlines()  # type: ignore[method-assign]
                                      if not (extra and ln.startswith("max_inflight_messages 0")))
    broker.start()
    try:
        client = RawClient(broker.port, version=5 if case.startswith("mqtt5") else 4,
                           receive_maximum=window if case.startswith("mqtt5") else None)
        lines = "\n".join(str(i) for i in range(messages)) + "\n"
        subprocess.run(["mosquitto_pub", "-p", str(broker.port), "-q", "1", "-t", TOPIC, "-l"], input=lines.encode(),
                       check=True, timeout=60)
        held = client.publish_ids(client.packets())
        first = len(held)
        most, received = first, first
        while received < messages:
            half, held = held[:len(held) // 2 or len(held)], held[len(held) // 2 or len(held):]
            client.ack(half)
            new = client.publish_ids(client.packets())
            if not new and not held:
                break
            held += new
            received += len(new)
            most = max(most, len(held))
        client.close()
        return first, most, received
    finally:
        broker.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=2000)
    parser.add_argument("--window", type=int, default=100)
    args = parser.parse_args()
    version = subprocess.run(["mosquitto", "-h"], capture_output=True, text=True, check=False).stdout.splitlines()[0]
    print(f"{version}; {args.messages} messages, window {args.window}")
    print(f"{'case':<24}{'before any ack':>16}{'most unacked':>14}{'received':>10}")
    with tempfile.TemporaryDirectory() as tmp:
        for case in ("mqtt5_receive_maximum", "broker_max_inflight", "none"):
            first, most, received = measure(case, args.messages, args.window, Path(tmp))
            print(f"{case:<24}{first:>16}{most:>14}{received:>10}")


if __name__ == "__main__":
    main()
