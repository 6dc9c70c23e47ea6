"""The gateway under concurrent load: ``GET /v1/stations`` and ``GET /v1/summary``, 45 and 10,000 stations.

    .venv/bin/python -m bench.gateway_load [--stations 45,10000] [--seconds 10] [--connections 32]

Starts its own mosquitto, influxd and ``python -m gateway`` per registry size (the shipped
registry for 45, ``python -m simulator make-registry`` for more), gives every station a retained
online status, an occupancy and an indoor temperature, waits until the gateway shows them all,
then drives each endpoint with ``wrk`` (a C load generator: ``apt-get install wrk``, done by
scripts/setup.sh) and prints requests/s and latency p50/p99.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import tempfile
import time
from pathlib import Path

import httpx

from gateway.credentials import Role, TokenStore
from simulator.synthetic import make_registry
from telemetry import registry
from tests.mqtt import publish
from tests.rig import MOSQUITTO_DEFAULT_LOG, GatewayProcess, Influxd, Mosquitto, wait_for

ENDPOINTS = ["/v1/stations", "/v1/stations?limit=1000", "/v1/summary", "/v1/stations/nearest?lat=35.54&lon=106.66"]


def populate(broker: Mosquitto, ids: list[str]) -> None:
    """A retained online status, an occupancy and an indoor temperature for every station."""
    now = int(time.time() * 1000)
    publish(broker.port, [(f"stations/v1/{sid}/status", json.dumps({"state": "online"})) for sid in ids], retain=True)
    publish(broker.port, [(f"stations/v1/{sid}/occupancy", json.dumps({"ts": now, "seq": 1, "people": i % 9}))
                          for i, sid in enumerate(ids)])
    publish(broker.port, [(f"stations/v1/{sid}/temperature",
                           json.dumps({"ts": now, "seq": 2, "sensor": "indoor", "celsius": 15 + i % 7}))
                          for i, sid in enumerate(ids)])


def wrk(url: str, token: str, seconds: int, connections: int) -> dict[str, float]:
    out = subprocess.run(["wrk", "-t", "2", "-c", str(connections), "-d", f"{seconds}s", "--latency",
                          "-H", f"Authorization: Bearer {token}", url], capture_output=True, text=True, check=True,
                         timeout=seconds + 60).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    lat = {m.group(1): m.group(2) for m in re.finditer(r"^\s+(50|99)%\s+([\d.]+\w+)", out, re.MULTILINE)}
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return {"rps": rps, "p50_ms": _ms(lat["50"]), "p99_ms": _ms(lat["99"]),
            "non_2xx": float(errors.group(1)) if errors else 0.0}


def _ms(text: str) -> float:
    value, unit = float(re.match(r"[\d.]+", text).group(0)), re.sub(r"[\d.]+", "", text)  # type: ignore[union-attr]
    return round(value * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit], 2)


def run(stations: int, seconds: int, connections: int, work: Path) -> list[dict[str, object]]:
    broker = Mosquitto(work / f"m{stations}", log_types=MOSQUITTO_DEFAULT_LOG, persistence=False).start()
    influxd = Influxd(work / f"i{stations}").start()
    env = {"MQTT_URL": broker.url, "INFLUX_URL": influxd.url, "INFLUX_DB": "load", "LOG_LEVEL": "INFO"}
    if stations != 45:
        path = work / f"stations-{stations}.json"
        path.write_text(make_registry(stations, as_json=True))
        env["STATIONS_FILE"] = str(path)
    reg = registry.load(Path(env["STATIONS_FILE"])) if "STATIONS_FILE" in env else registry.load()
    gateway = GatewayProcess(work / f"g{stations}", **env)
    token = TokenStore(Path(gateway.env["GATEWAY_TOKENS_FILE"])).add("bench", Role.VIEWER)
    results = []
    try:
        gateway.start()
        ids = [s.id for s in reg.reporting]
        populate(broker, ids)
        headers = {"Authorization": f"Bearer {token}"}
        wait_for(lambda: httpx.get(f"{gateway.url}/v1/summary", headers=headers).json()["city"]["online"] == len(ids),
                 timeout=120, what=f"{len(ids)} stations online in the gateway")
        for endpoint in ENDPOINTS:
            figures = wrk(gateway.url + endpoint, token, seconds, connections)
            results.append({"stations": len(ids), "endpoint": endpoint, **figures})
            print(json.dumps(results[-1]), flush=True)
    finally:
        gateway.stop()
        broker.stop()
        influxd.stop()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--stations", default="45,10000")
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--connections", type=int, default=32)
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory(prefix="yizhan-gw-") as tmp:
        for n in (int(x) for x in args.stations.split(",")):
            rows += run(n, args.seconds, args.connections, Path(tmp))
    print(f"\n{'stations':>8} {'endpoint':<42} {'req/s':>8} {'p50 ms':>7} {'p99 ms':>7} {'non-2xx':>7}")
    for r in rows:
        print(f"{r['stations']:>8} {r['endpoint']!s:<42} {r['rps']:>8} {r['p50_ms']:>7} {r['p99_ms']:>7} "
              f"{r['non_2xx']:>7}")


if __name__ == "__main__":
    main()
