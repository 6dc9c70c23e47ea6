"""The gateway's live state without the network: ``LiveState.on_message`` over occupancy, charger and status.

    .venv/bin/python -m bench.live_state [--n 20000]

Applies N messages of the shipped registry's stations (a third each of occupancy, charger and
status, as JSON objects) to a fresh live state, three passes, and prints the CPU (process time)
per message of each. What a reader link per broker node would multiply (docs/gateway.md, "On a
cluster"); paho's and aiomqtt's own cost per message is not in it.
"""

from __future__ import annotations

import argparse
import json
import time

from gateway.live import LiveState
from telemetry import registry
from telemetry.codec import Decoder

T0 = 1_764_000_000_000


def messages(n: int) -> list[tuple[str, bytes]]:
    stations = registry.load().reporting
    out: list[tuple[str, bytes]] = []
    for i in range(n):
        s = stations[i % len(stations)]
        base = {"ts": T0 + i, "seq": i}
        if i % 3 == 0:
            out.append((f"stations/v1/{s.id}/occupancy", json.dumps({**base, "people": 3, "entries": i,
                                                                      "exits": i}).encode()))
        elif i % 3 == 1 and s.chargers:
            out.append((f"stations/v1/{s.id}/charger", json.dumps({
                **base, "charger_id": s.chargers[0].id, "sockets_in_use": 1, "power_w": 100.0,
                "energy_wh": 5.0}).encode()))
        else:
            out.append((f"stations/v1/{s.id}/status", json.dumps({
                "state": "online", "ts": T0 + i, "fw": "bench", "uptime_s": 5, "buffered": 0, "dropped": 0,
                "driver_errors": 0, "config_rev": "default"}).encode()))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=20_000)
    args = parser.parse_args()
    reg = registry.load()
    live = LiveState(reg, Decoder(reg))
    feed = messages(args.n)
    for run in range(3):
        start = time.process_time()
        for topic, payload in feed:
            live.on_message(topic, payload)
        print(f"pass {run}: {(time.process_time() - start) / len(feed) * 1e6:.1f} µs CPU per message "
              f"({len(feed)} messages)")


if __name__ == "__main__":
    main()
