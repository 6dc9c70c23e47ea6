"""Soak: the city at real rates plus a synthetic load, with a broker restart and an InfluxDB outage.

    .venv/bin/python -m bench.soak [--minutes 30] [--rate 2000] [--synthetic-stations 100] [--outage 60]

Not run by CI (30 minutes by default). It starts its own Mosquitto (the shipped limits, with the
password file and ACL of ``python -m gateway provision``, anonymous access off), influxd, ingest and
the gateway (each as its service user), then for ``--minutes``:

- the 45 instrumented stations: ``python -m simulator --secrets ...`` in real time, each agent logged
  in as its station;
- a synthetic load of ``--rate`` readings/s: ``--synthetic-stations`` stations added to the registry,
  each its own MQTT client and user, sending one QoS 1 batch of occupancy readings a second; like a
  device, each keeps a batch until the broker acknowledges it and sends it again after a reconnection;
- at a third of the run the broker restarts (SIGTERM, then started again on its persistence);
- at two thirds InfluxDB stops for ``--outage`` seconds.

Then the load stops, ingest writes what is left, and it prints the readings sent (acknowledged by
the broker), written (distinct seq per station in InfluxDB), lost (sent, not written: must be 0),
duplicated (points beyond one per seq: must be 0), ingest's RSS at the start and the end, the
longest time from the end of an outage to ingest's spool being drained, and how long the broker
restart took to heal. Exit status 1 if anything was lost or duplicated.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import errno
import json
import logging
import re
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiomqtt
import yaml

from gateway.provision import load_secrets, provision
from telemetry import registry
from tests.rig import (
    MOSQUITTO_DEFAULT_LOG,
    ROOT,
    GatewayProcess,
    Influxd,
    IngestProcess,
    Mosquitto,
    child_env,
    wait_for,
)

SYNTHETIC_PREFIX = "PL-KT-9"


def combined_registry(path: Path, synthetic: int) -> list[str]:
    """The shipped registry plus ``synthetic`` visual stations PL-KT-9000...; their ids."""
    doc = yaml.safe_load(registry.DEFAULT_FILE.read_text(encoding="utf-8"))
    ids = [f"PL-KT-{9000 + i:04d}" for i in range(synthetic)]
    doc["stations"] += [{"id": sid, "name": f"soak {sid}", "district": "kongtong", "kind": "visual", "capacity": 20,
                         "location": {"lat": 35.54, "lon": 106.66}} for sid in ids]
    path.write_text(yaml.safe_dump(doc, allow_unicode=True, sort_keys=False), encoding="utf-8")
    registry.load(path)
    return ids


def rss_mb(pid: int) -> float:
    line = next(ln for ln in Path(f"/proc/{pid}/status").read_text().splitlines() if ln.startswith("VmRSS"))
    return int(line.split()[1]) / 1024


@dataclass
class Synthetic:
    """One synthetic station: readings made every second, kept until acknowledged."""

    station: str
    password: str
    per_second: int
    seq: int = 0
    pending: collections.deque[tuple[int, bytes]] = field(default_factory=collections.deque)
    acked: int = 0

    def produce(self, now_ms: int) -> None:
        step = 1000 // self.per_second
        batch = []
        for i in range(self.per_second):
            self.seq += 1
            batch.append(f'{{"ts":{now_ms - 1000 + i * step},"seq":{self.seq},"people":{self.seq % 20}}}')
        self.pending.append((self.per_second, ("[" + ",".join(batch) + "]").encode()))

    async def send(self, host: str, port: int, stop: asyncio.Event) -> None:
        """Send the oldest pending batch, one at a time; reconnect (1 s) whenever the broker goes away."""
        topic = f"stations/v1/{self.station}/occupancy"
        while not (stop.is_set() and not self.pending):
            try:
                async with aiomqtt.Client(host, port, identifier=f"soak-{self.station}", username=self.station,
                                          password=self.password, keepalive=30) as client:
                    while not (stop.is_set() and not self.pending):
                        if not self.pending:
                            await asyncio.sleep(0.05)
                            continue
                        n, body = self.pending[0]
                        await client.publish(topic, body, qos=1, timeout=10)
                        self.pending.popleft()
                        self.acked += n
            except aiomqtt.MqttError:
                await asyncio.sleep(1)


@dataclass
class Timeline:
    events: list[tuple[float, str]] = field(default_factory=list)
    spool_peak: int = 0
    drain_s: list[float] = field(default_factory=list)
    broker_heal_s: float | None = None
    ingest_reconnect_s: float | None = None

    def note(self, what: str) -> None:
        self.events.append((time.monotonic(), what))
        print(f"soak: {time.strftime('%H:%M:%S')} {what}", file=sys.stderr, flush=True)


class Soak:
    def __init__(self, args: argparse.Namespace, work: Path) -> None:
        self.args, self.work = args, work
        self.db = "soak"
        self.stations_file = work / "stations.yaml"
        self.synthetic_ids = combined_registry(self.stations_file, args.synthetic_stations)
        self.auth = provision(registry.load(self.stations_file), work / "auth")
        self.passwords = load_secrets(self.auth.secrets)
        self.broker = Mosquitto(work / "mosquitto", log_types=MOSQUITTO_DEFAULT_LOG,
                                extra=f"password_file {self.auth.passwd}\nacl_file {self.auth.acl}\n"
                                "allow_anonymous false\n")
        self.influxd = Influxd(work / "influxd")
        self.timeline = Timeline()
        per_station = max(1, args.rate // args.synthetic_stations)
        self.synthetic = [Synthetic(sid, self.passwords[sid], per_station) for sid in self.synthetic_ids]

    def url(self, user: str) -> str:
        return f"mqtt://{user}:{self.passwords[user]}@127.0.0.1:{self.broker.port}"

    async def run(self) -> int:
        asyncio.get_running_loop().set_exception_handler(_quiet_disconnects)
        self.broker.start()
        self.influxd.start()
        common = {"STATIONS_FILE": str(self.stations_file), "INFLUX_URL": self.influxd.url, "INFLUX_DB": self.db,
                  "LOG_LEVEL": "INFO"}
        ingest = IngestProcess(self.work / "ingest", MQTT_URL=self.url("ingest"), MQTT_CLIENT_ID="soak-ingest",
                               **common)
        ingest.start()
        gateway = GatewayProcess(self.work / "gateway", MQTT_URL=self.url("gateway"),
                                 STATION_PASSWORD_FILE=str(self.auth.passwd), **common)
        gateway.start()
        simulator = self._start_simulator()
        try:
            return await self._load(ingest, gateway, simulator)
        finally:
            if simulator.poll() is None:
                simulator.kill()
            gateway.stop()
            ingest.stop()
            self.influxd.stop()
            self.broker.stop()

    def _start_simulator(self) -> subprocess.Popen[bytes]:
        env = child_env({"MQTT_URL": f"mqtt://127.0.0.1:{self.broker.port}", "STATIONS_FILE": str(self.stations_file)})
        cmd = [sys.executable, "-m", "simulator", "--stations", "45", "--secrets", str(self.auth.secrets),
               "--duration", f"{self.args.minutes}m", "--progress-interval", "5", "--drain-timeout", "60"]
        self.sim_out, self.sim_err = self.work / "simulator.out", self.work / "simulator.log"
        with self.sim_out.open("wb") as out, self.sim_err.open("wb") as err:
            return subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=out, stderr=err)

    async def _load(self, ingest: IngestProcess, gateway: GatewayProcess, simulator: subprocess.Popen[bytes]) -> int:
        args, tl = self.args, self.timeline
        if ingest.proc is None:
            raise RuntimeError("ingest is not running")
        pid = ingest.proc.pid
        rss_start = rss_mb(pid)
        stop = asyncio.Event()
        senders = [asyncio.create_task(s.send("127.0.0.1", self.broker.port, stop), name=s.station)
                   for s in self.synthetic]
        tl.note(f"load on: 45 simulated stations, {len(self.synthetic)} synthetic at "
                f"{self.synthetic[0].per_second} readings/s each; ingest RSS {rss_start:.1f} MB")
        producer = asyncio.create_task(self._produce(stop))
        monitor = asyncio.create_task(self._monitor(ingest))
        duration = args.minutes * 60
        t0 = time.monotonic()
        await asyncio.sleep(duration / 3)
        await self._restart_broker(ingest, t0)
        await asyncio.sleep(max(0.0, t0 + 2 * duration / 3 - time.monotonic()))
        await self._influx_outage(args.outage)
        await asyncio.sleep(max(0.0, t0 + duration - time.monotonic()))
        stop.set()
        tl.note("load off: sending what is pending")
        await producer
        await asyncio.gather(*senders)
        await asyncio.to_thread(simulator.wait, 300)
        sim = self._simulator_table()
        sent = {s.station: s.acked for s in self.synthetic} | {k: v[1] for k, v in sim.items()}
        total = sum(sent.values())
        tl.note(f"everything acknowledged ({total:,} readings); waiting for ingest to write it")
        await asyncio.to_thread(wait_for, lambda: self._points() >= total, timeout=600, interval=2,
                                what=f"{total} readings in InfluxDB")
        await asyncio.to_thread(wait_for, lambda: ingest.metric("ingest_spool_batches") == 0, timeout=600)
        monitor.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await monitor
        rss_end = rss_mb(pid)
        written, points = await asyncio.to_thread(self._written)
        lost = sum(max(0, n - written.get(s, 0)) for s, n in sent.items())
        duplicated = points - sum(written.values())  # a seq stored at two timestamps
        gateway_ok = gateway.metric("gateway_mqtt_connected") == 1
        self._report(sent, sim, written, lost, duplicated, rss_start, rss_end, ingest, gateway_ok)
        return 1 if lost or duplicated else 0

    async def _produce(self, stop: asyncio.Event) -> None:
        tick = time.monotonic()
        while not stop.is_set():
            now_ms = int(time.time() * 1000)
            for s in self.synthetic:
                s.produce(now_ms)
            tick += 1.0
            await asyncio.sleep(max(0.0, tick - time.monotonic()))

    async def _monitor(self, ingest: IngestProcess) -> None:
        tl = self.timeline
        while True:
            with contextlib.suppress(Exception):
                tl.spool_peak = max(tl.spool_peak, int(await asyncio.to_thread(ingest.metric,
                                                                                "ingest_spool_batches")))
            await asyncio.sleep(1)

    async def _restart_broker(self, ingest: IngestProcess, t0: float) -> None:
        tl = self.timeline
        tl.note("fault: broker restart")
        await asyncio.to_thread(self.broker.stop)
        await asyncio.to_thread(self.broker.start)
        back = time.monotonic()
        seen = self.sim_err.stat().st_size  # the simulator's progress lines from now on
        tl.note("broker back")
        await asyncio.to_thread(wait_for, lambda: ingest.health()["mqtt_connected"], timeout=120, interval=0.1)
        tl.ingest_reconnect_s = time.monotonic() - back
        await asyncio.to_thread(wait_for, lambda: all(len(s.pending) <= 1 for s in self.synthetic)
                                and self._simulator_caught_up(seen), timeout=300, interval=0.2)
        tl.broker_heal_s = time.monotonic() - back
        tl.note(f"broker restart healed: ingest reconnected in {tl.ingest_reconnect_s:.1f} s, backlogs sent in "
                f"{tl.broker_heal_s:.1f} s ({time.monotonic() - t0:.0f} s into the run)")

    async def _influx_outage(self, seconds: float) -> None:
        tl = self.timeline
        tl.note(f"fault: InfluxDB down for {seconds:.0f} s")
        await asyncio.to_thread(self.influxd.stop)
        await asyncio.sleep(seconds)
        await asyncio.to_thread(self.influxd.start)
        back = time.monotonic()
        tl.note("InfluxDB back")
        await asyncio.to_thread(wait_for, self._spool_empty, timeout=1200, interval=0.2)
        tl.drain_s.append(time.monotonic() - back)
        tl.note(f"spool drained {tl.drain_s[-1]:.1f} s after InfluxDB came back (peak {tl.spool_peak} batches)")

    def _spool_empty(self) -> bool:
        return next((self.work / "ingest" / "spool").glob("*.lp"), None) is None

    def _simulator_caught_up(self, offset: int) -> bool:
        """A progress line written since ``offset``: every agent connected, nothing buffered.

        Progress comes every 5 s, so this is known to within 5 s."""
        with self.sim_err.open("rb") as f:
            f.seek(offset)
            lines = [ln for ln in f.read().decode(errors="replace").splitlines() if "buffered" in ln]
        m = re.search(r"(\d+) connected .* ([\d,]+) buffered", lines[-1]) if lines else None
        return m is not None and m.group(1) == "45" and m.group(2) == "0"

    def _simulator_table(self) -> dict[str, tuple[int, int]]:
        """(produced, acknowledged) per station from the simulator's closing table."""
        out = {}
        for line in self.sim_out.read_text().splitlines():
            cells = line.split()
            if cells and cells[0].startswith("PL-"):
                out[cells[0]] = (int(cells[1].replace(",", "")), int(cells[2].replace(",", "")))
        if len(out) != 45:
            raise SystemExit(f"soak: the simulator's table has {len(out)} stations:\n{self.sim_out.read_text()}"
                             f"\n{self.sim_err.read_text()[-3000:]}")
        return out

    def _points(self) -> int:
        return sum(self.influxd.count(m, "seq", self.db) for m in ("occupancy", "charger", "temperature"))

    def _written(self) -> tuple[dict[str, int], int]:
        """Distinct seq per station, and all points, in InfluxDB."""
        distinct: dict[str, int] = {}
        for row in self.influxd.rows("SELECT count(distinct(seq)) FROM occupancy GROUP BY station", self.db):
            distinct[row["station"]] = int(row["count"])
        for station in {r["station"] for r in self.influxd.rows(
                "SELECT count(seq) FROM charger, temperature GROUP BY station", self.db)} | set(distinct):
            if station.startswith(SYNTHETIC_PREFIX):
                continue
            rows = self.influxd.rows(f"SELECT seq FROM occupancy, charger, temperature WHERE station = '{station}'",
                                     self.db)
            distinct[station] = len({int(r["seq"]) for r in rows})
        return distinct, self._points()

    def _report(self, sent: dict[str, int], sim: dict[str, tuple[int, int]], written: dict[str, int], lost: int,
                duplicated: int, rss_start: float, rss_end: float, ingest: IngestProcess, gateway_ok: bool) -> None:
        tl, args = self.timeline, self.args
        synthetic = sum(s.acked for s in self.synthetic)
        simulated = sum(a for _p, a in sim.values())
        unacked = sum(p - a for p, a in sim.values())
        metrics = ingest.metrics()
        rejects = {k.split('"')[1]: int(v) for k, v in metrics.items() if k.startswith("ingest_rejects_total") and v}
        result: dict[str, Any] = {
            "minutes": args.minutes, "synthetic_rate": len(self.synthetic) * self.synthetic[0].per_second,
            "sent": sum(sent.values()), "sent_simulator": simulated, "sent_synthetic": synthetic,
            "simulator_unacknowledged": unacked, "written": sum(written.values()), "lost": lost,
            "duplicated": duplicated, "ingest_rss_mb_start": round(rss_start, 1),
            "ingest_rss_mb_end": round(rss_end, 1),
            "spool_peak_batches": tl.spool_peak, "outage_end_to_spool_drained_s": round(max(tl.drain_s), 1),
            "broker_restart_ingest_reconnect_s": round(tl.ingest_reconnect_s or -1, 1),
            "broker_restart_backlogs_sent_s": round(tl.broker_heal_s or -1, 1), "rejects": rejects,
            "gateway_connected_at_end": gateway_ok,
        }
        print(f"""
soak: {args.minutes} min; 45 simulated stations in real time + {result['synthetic_rate']:,} readings/s synthetic
      ({len(self.synthetic)} stations x {self.synthetic[0].per_second}/s); broker restart at 1/3, InfluxDB down \
{args.outage:.0f} s at 2/3
readings sent (acknowledged)   {result['sent']:>12,}   (simulator {simulated:,}, synthetic {synthetic:,})
readings written (distinct)    {result['written']:>12,}
lost                           {lost:>12,}
duplicated                     {duplicated:>12,}
ingest RSS                     {rss_start:>9.1f} MB at start, {rss_end:.1f} MB at the end
InfluxDB outage -> spool empty {max(tl.drain_s):>9.1f} s   (spool peak {tl.spool_peak} batches)
broker restart                 ingest reconnected in {tl.ingest_reconnect_s or -1:.1f} s, \
every backlog sent {tl.broker_heal_s or -1:.1f} s after the broker was back
rejects                        {rejects or 'none'}
gateway connected at the end   {gateway_ok}
{json.dumps(result)}""")


def _quiet_disconnects(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
    """What aiomqtt leaves behind when the broker restarts under it, expected here: a future with the
    disconnection error nobody retrieves, and paho asking the loop to watch a socket it just closed."""
    exc = context.get("exception")
    if not isinstance(exc, aiomqtt.MqttError) and not (isinstance(exc, OSError) and exc.errno == errno.EBADF):
        loop.default_exception_handler(context)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.soak", description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=30.0, help="length of the load (default 30)")
    parser.add_argument("--rate", type=int, default=2000, help="synthetic readings per second (default 2000)")
    parser.add_argument("--synthetic-stations", type=int, default=100, help="stations sharing it (default 100)")
    parser.add_argument("--outage", type=float, default=60.0, help="seconds InfluxDB is down (default 60)")
    parser.add_argument("--keep", action="store_true", help="keep the working directory (logs, data)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("mqtt").setLevel(logging.CRITICAL)  # paho's "failed to receive on socket" at each restart
    work = Path(tempfile.mkdtemp(prefix=f"yizhan-soak-{uuid.uuid4().hex[:4]}-"))
    print(f"soak: working in {work}", file=sys.stderr)
    try:
        code = asyncio.run(Soak(args, work).run())
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    raise SystemExit(code)


if __name__ == "__main__":
    main()
