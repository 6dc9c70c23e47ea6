"""Scaling: ingest processes sharing one stream, and how many real-rate stations one process and one broker hold.

    .venv/bin/python -m bench.scale ingest [--n 200000] [--processes 1,2,3] [--queued]
    .venv/bin/python -m bench.scale agents [--stations 1000,10000,50000] [--minutes 3] [--on mosquitto|rabbitmq]
    .venv/bin/python -m bench.scale cluster [--n 100000] [--replicas 1,2,3] [--prefetch 2000]

``ingest``: the single-reading feed of bench/ingest_throughput.py (``mosquitto_pub``, one per
station topic) through 1, 2 and 3 ingest processes on one broker, splitting the stream with a
shared subscription; readings/s from first publish to the last reading queryable, and the total
ingest CPU per 1000 readings. Every reading must be stored exactly once (checked). ``--queued``:
the ingest processes are stopped (SIGSTOP, still connected) while the feed is published, and the
time runs from their SIGCONT: the publishers no longer share the cores, so ingest is the limit.

``cluster``: the same feed published over MQTT to a three-node RabbitMQ cluster (``tests/cluster.py``,
the quorum queue replicated on the three) while 1, 2 and 3 ingest replicas (the AMQP source,
competing consumers) are stopped, then drained (``bench/amqp_source.py``'s ``run_amqp``); and,
in the same run, one Mosquitto with one ingest (``ingest --queued``). Prints readings/s, ingest
CPU µs per reading (the replicas together) and broker CPU µs per reading (the three nodes together),
both while draining: the broker's share of taking the MQTT publishes in (149-210 µs a message on
three replicating nodes, ``../shared/cluster/README.md``) is not in it.

``agents``: a synthetic registry of N stations (``python -m simulator make-registry``), the
simulator running them at real rates (speed 1) for ``--minutes``, in processes of at most
``--per-process`` agents (``--shard``), against one broker and one ingest. Prints the agents
connected, readings produced, acknowledged and stored per second, and CPU and memory of each
component. One socket per agent: the broker and each simulator process need that many open files.
``--on rabbitmq``: the agents on node 0 of the three-node cluster, ingest on its quorum queue over
AMQP; prints node 0's resident memory before the agents connect and at the end, and the
difference per connected station (the MQTT connection, its config subscription, its retained status).
"""

from __future__ import annotations

import argparse
import json
import math
import re
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from bench.amqp_source import run_amqp
from bench.ingest_throughput import (
    PROBE_STATION,
    feed,
    ingest_counters,
    ingest_env,
    proc_stats,
    publish_while_stopped,
    publishers,
    start_ingest,
    write_feed,
)
from simulator.synthetic import make_registry
from telemetry import registry
from tests.cluster import running_cluster
from tests.rig import MOSQUITTO_DEFAULT_LOG, ROOT, Influxd, Mosquitto, child_env, wait_for

_PROGRESS = re.compile(r"(\d+) connected \| readings ([\d,]+) produced, ([\d,]+) acked, ([\d,]+) buffered")


def scale_ingest(n: int, processes: int, work: Path, *, queued: bool = False) -> dict[str, object]:
    broker = Mosquitto(work / f"m-{processes}", log_types=MOSQUITTO_DEFAULT_LOG, persistence=False).start()
    influxd = Influxd(work / f"i-{processes}").start()
    db = f"scale{processes}"
    stations = [s.id for s in registry.load().reporting]
    files = write_feed(feed(stations, n, 1, int(time.time() * 1000) - 3_600_000), work / f"feed-{processes}")
    logs = [work / f"ingest-{processes}-{i}.log" for i in range(processes)]
    envs = [ingest_env(broker, influxd, db, work, f"ingest-{processes}-{i}", INGEST_SHARE_GROUP="scale")
            for i in range(processes)]
    procs = [start_ingest([sys.executable, "-m", "ingest"], env, log) for env, log in zip(envs, logs, strict=True)]
    try:
        wait_for(lambda: all("MQTT connected" in log.read_text() for log in logs), timeout=60, what="ingest ready")
        influxd.query(f'CREATE DATABASE "{db}"')
        pubs = []
        if queued:
            publish_while_stopped(procs, broker, files)
        cpu0 = sum(proc_stats(p.pid)[0] for p in procs)
        broker0 = proc_stats(broker.proc.pid)[0] if broker.proc else 0.0
        started = time.monotonic()
        if queued:
            for p in procs:
                p.send_signal(signal.SIGCONT)
        else:
            pubs = publishers(broker, files)
        wait_for(lambda: influxd.count("occupancy", "people", db) >= n, timeout=1200, interval=0.2,
                 what=f"{n} readings")
        seconds = time.monotonic() - started
        cpu = sum(proc_stats(p.pid)[0] for p in procs) - cpu0
        broker_cpu = proc_stats(broker.proc.pid)[0] - broker0 if broker.proc else 0.0
        for p in pubs:
            p.wait()
        distinct = influxd.count("occupancy", "people", db)
        received = [int(ingest_counters(env["INGEST_HTTP_ADDR"])["ingest_messages_received_total"]) for env in envs]
    finally:
        for p in procs:
            p.terminate()
            p.wait(30)
        broker.stop()
        influxd.stop()
    return {"processes": processes, "queued": queued, "readings": n, "stored": distinct,
            "seconds": round(seconds, 2),
            "readings_per_s": round(n / seconds), "ingest_cpu_s_per_1000": round(cpu / n * 1000, 4),
            "broker_cpu_us_per_reading": round(broker_cpu / n * 1e6, 1), "messages_per_process": received}


def scale_cluster(n: int, replicas: list[int], prefetch: int, work: Path) -> list[dict[str, object]]:
    """1, 2, 3 ingest replicas on the cluster's queue, queued then drained; then one Mosquitto, the same way."""
    influxd = Influxd(work / "i-cluster").start()
    stations = [s.id for s in registry.load().reporting if s.id != PROBE_STATION]
    topics = feed(stations, n, 1, int(time.time() * 1000) - 3_600_000)
    rows: list[dict[str, object]] = []
    try:
        with running_cluster(work / "rabbit") as cluster:
            for r in replicas:
                result = run_amqp(f"cluster_{r}", topics, n, cluster, influxd, work, prefetch=prefetch, replicas=r)
                rows.append({"broker": "rabbitmq x3", "replicas": r, "readings": n, "seconds": result.seconds,
                             "readings_per_s": result.readings_per_s,
                             "ingest_cpu_us_per_reading": round(result.cpu_s_per_1000 * 1000, 2),
                             "broker_cpu_us_per_reading": round((result.broker_cpu_s or 0) / n * 1e6, 1),
                             "ingest_rss_mb": result.peak_rss_mb})
                print(json.dumps(rows[-1]), flush=True)
    finally:
        influxd.stop()
    mosquitto = scale_ingest(n, 1, work, queued=True)
    rows.append({"broker": "mosquitto", "replicas": 1, "readings": n, "seconds": mosquitto["seconds"],
                 "readings_per_s": mosquitto["readings_per_s"],
                 "ingest_cpu_us_per_reading": round(float(mosquitto["ingest_cpu_s_per_1000"]) * 1000, 2),  # type: ignore[arg-type]
                 "broker_cpu_us_per_reading": mosquitto["broker_cpu_us_per_reading"]})
    print(json.dumps(rows[-1]), flush=True)
    return rows



@dataclass(slots=True)
class _Target:
    """Where the agents connect: the MQTT URL, the broker's processes, and ingest's settings for it."""

    mqtt_url: str
    broker_pids: list[int]
    ingest_env: dict[str, str]
    ready: str
    """What ingest logs once it takes messages."""


@contextmanager
def _target(on: str, work: Path, stations: int, influxd: Influxd, db: str, registry_file: Path) -> Iterator[_Target]:
    """One Mosquitto, or the three-node RabbitMQ cluster with every agent on node 0 (its memory per station)."""
    client_id = f"agents-{on}-{stations}"
    if on == "mosquitto":
        broker = Mosquitto(work / f"am-{stations}", log_types=MOSQUITTO_DEFAULT_LOG, persistence=False,
                           extra="max_connections -1\nsys_interval 5").start()
        try:
            yield _Target(broker.url, [broker.proc.pid] if broker.proc else [],
                          ingest_env(broker, influxd, db, work, client_id, STATIONS_FILE=str(registry_file)),
                          "MQTT connected")
        finally:
            broker.stop()
        return
    with running_cluster(work / f"rabbit-{stations}") as cluster:
        node = cluster.nodes[0]
        env = ingest_env(None, influxd, db, work, client_id, STATIONS_FILE=str(registry_file), AMQP_URL=node.amqp_url())
        yield _Target(node.mqtt_url(), [pid for n in cluster.nodes if (pid := n.beam_pid())], env, "AMQP consuming")


def _rss_mb(pid: int) -> float:
    line = next(x for x in Path(f"/proc/{pid}/status").read_text().splitlines() if x.startswith("VmRSS"))
    return int(line.split()[1]) / 1024


def scale_agents(stations: int, minutes: float, per_process: int, work: Path, *, on: str = "mosquitto",
                 ) -> dict[str, object]:
    path = work / f"stations-{stations}.json"
    path.write_text(make_registry(stations, as_json=True))
    influxd = Influxd(work / f"ai-{on}-{stations}").start()
    db = f"agents{stations}"
    ingest_log = work / f"agents-ingest-{on}-{stations}.log"
    shards = max(1, math.ceil(stations / per_process))
    sims: list[subprocess.Popen[bytes]] = []
    logs = [work / f"sim-{on}-{stations}-{k}.log" for k in range(shards)]
    try:
        with _target(on, work, stations, influxd, db, path) as target:
            ingest = start_ingest([sys.executable, "-m", "ingest"], target.ingest_env, ingest_log)
            try:
                wait_for(lambda: target.ready in ingest_log.read_text(), timeout=120, what="ingest ready")
                broker_rss_before = _rss_mb(target.broker_pids[0])
                started = time.monotonic()
                sim_env = child_env({"MQTT_URL": target.mqtt_url, "STATIONS_FILE": str(path), "LOG_LEVEL": "WARNING"})
                for k, log in enumerate(logs):
                    with log.open("wb") as out:
                        sims.append(subprocess.Popen(
                            [sys.executable, "-m", "simulator", "--registry", str(path), "--shard", f"{k}/{shards}",
                             "--progress-interval", "10", "--drain-timeout", "5"],
                            cwd=ROOT, env=sim_env, stdout=out, stderr=out))
                deadline = started + minutes * 60
                samples = []
                while time.monotonic() < deadline and all(s.poll() is None for s in sims):
                    time.sleep(10)
                    samples.append(_sample(logs, influxd, db, time.monotonic() - started))
                broker_rss_after = _rss_mb(target.broker_pids[0])
                cpu = {"simulator": sum(proc_stats(s.pid)[0] for s in sims if s.poll() is None),
                       "broker": sum(proc_stats(pid)[0] for pid in target.broker_pids),
                       "ingest": proc_stats(ingest.pid)[0]}
                rss = {"simulator_mb": sum(proc_stats(s.pid)[1] for s in sims if s.poll() is None),
                       "broker_mb": sum(proc_stats(pid)[1] for pid in target.broker_pids),
                       "ingest_mb": proc_stats(ingest.pid)[1]}
            finally:
                for s in sims:
                    s.send_signal(signal.SIGINT)
                for s in sims:
                    try:
                        s.wait(60)
                    except subprocess.TimeoutExpired:
                        s.kill()
                ingest.terminate()
                ingest.wait(30)
    finally:
        influxd.stop()
    last = samples[-1] if samples else {}
    window = [s for s in samples if s["t"] >= samples[-1]["t"] - 60] if samples else []
    stored_rate = ((window[-1]["stored"] - window[0]["stored"]) / (window[-1]["t"] - window[0]["t"])
                   if len(window) > 1 else None)
    errors = sum(log.read_text().count("Too many open files") + log.read_text().count("refused") for log in logs)
    connected = int(last.get("connected") or 0)
    per_station_kb = (broker_rss_after - broker_rss_before) * 1024 / connected if connected else None
    return {"broker": on, "stations": stations, "processes": shards, "connected": last.get("connected"),
            "produced": last.get("produced"), "acked": last.get("acked"), "stored": last.get("stored"),
            "stored_per_s_last_minute": round(stored_rate) if stored_rate is not None else None,
            "cpu_s": {k: round(v, 1) for k, v in cpu.items()}, "rss": {k: round(v) for k, v in rss.items()},
            "broker_node_rss_mb": [round(broker_rss_before), round(broker_rss_after)],
            "broker_kb_per_connected_station": round(per_station_kb, 1) if per_station_kb is not None else None,
            "seconds": round(samples[-1]["t"]) if samples else 0, "connection_errors_logged": errors}


def _sample(logs: list[Path], influxd: Influxd, db: str, t: float) -> dict[str, int | float]:
    connected = produced = acked = 0
    for log in logs:
        found = _PROGRESS.findall(log.read_text())
        if found:
            c, p, a, _ = found[-1]
            connected += int(c)
            produced += int(p.replace(",", ""))
            acked += int(a.replace(",", ""))
    stored = sum(influxd.count(m, "seq", db) for m in ("occupancy", "charger", "temperature"))
    sample = {"t": round(t, 1), "connected": connected, "produced": produced, "acked": acked, "stored": stored}
    print(json.dumps(sample), flush=True)
    return sample


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="mode", required=True)
    a = sub.add_parser("ingest")
    a.add_argument("--n", type=int, default=200_000)
    a.add_argument("--processes", default="1,2,3")
    a.add_argument("--queued", action="store_true", help="publish while ingest is stopped, then drain")
    b = sub.add_parser("agents")
    b.add_argument("--stations", default="1000,10000,50000")
    b.add_argument("--minutes", type=float, default=3)
    b.add_argument("--per-process", type=int, default=15_000, help="agents per simulator process (open files)")
    b.add_argument("--on", choices=("mosquitto", "rabbitmq"), default="mosquitto",
                   help="one Mosquitto, or node 0 of the three-node RabbitMQ cluster (ingest on its queue)")
    c = sub.add_parser("cluster")
    c.add_argument("--n", type=int, default=100_000)
    c.add_argument("--replicas", default="1,2,3")
    c.add_argument("--prefetch", type=int, default=2000)
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory(prefix=f"yizhan-scale-{uuid.uuid4().hex[:4]}-") as tmp:
        work = Path(tmp)
        if args.mode == "cluster":
            rows = scale_cluster(args.n, [int(x) for x in args.replicas.split(",")], args.prefetch, work)
        elif args.mode == "ingest":
            for p in (int(x) for x in args.processes.split(",")):
                rows.append(scale_ingest(args.n, p, work, queued=args.queued))
                print(json.dumps(rows[-1]), flush=True)
        else:
            for n in (int(x) for x in args.stations.split(",")):
                rows.append(scale_agents(n, args.minutes, args.per_process, work, on=args.on))
                print(json.dumps(rows[-1]), flush=True)
    print()
    for row in rows:
        print(json.dumps(row))


if __name__ == "__main__":
    main()
