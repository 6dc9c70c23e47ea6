"""Ingest throughput, latency, CPU and memory, against real mosquitto and influxd on this machine.

    .venv/bin/python -m bench.ingest_throughput [--n 200000] [--stations 45] [--baseline-n N]

Starts its own broker (the shipped config) and InfluxDB, then for each case starts an ingest
process, publishes the feed from separate processes (``mosquitto_pub -l``, a C publisher, one per
station topic, in chunks below 65,535 lines), and waits until every reading is queryable:

- ``single``: N readings, one per message;
- ``batch100``: N readings, 100 per message (the contract's batch form);
- ``naive``: the single feed through ``bench/naive_ingest.py`` (one aiomqtt loop that POSTs each
  message to ``/write`` as it arrives), the baseline;
- ``mosquitto_sub``: the single feed delivered to Mosquitto's own C client (``mosquitto_sub -q 1``,
  persistent session, output to /dev/null): the broker's delivery ceiling for this feed and publisher;
- ``mosquitto_sub_queued`` and ``single_queued``: the same two with the feed published while the
  subscriber is away, then drained: the delivery rate without the publishers on the same cores;
- ``paced``: single readings at a fixed ``--rate`` (default 10,000/s) for ``--paced-seconds``, from
  ``bench/paced_publisher.py``: the publish-to-queryable latency at that rate.

Tuning settings in the environment (``INGEST_WRITE_CONCURRENCY=4``, ``INGEST_BATCH_POINTS``...)
apply to the ingest processes; where they connect is the bench's own.

It prints per case: readings/s (first publish to the last reading queryable), ingest CPU seconds
per 1000 readings, ingest peak RSS, when ingest had received every message ("delivered"), the CPU
seconds of the broker and of influxd, and how many of the machine's cores were busy on average.
The paced case adds the publish-to-queryable latency p50/p99 of probe readings published at 20/s
by a paho client (queryable time polled every 50 ms); the throughput cases run without the probe,
whose queries would take CPU from what they measure.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Self

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from telemetry import registry
from tests.rig import MOSQUITTO_DEFAULT_LOG, ROOT, Influxd, Mosquitto, child_env, free_port, parse_metrics, wait_for

PROBE_STATION = "PL-KT-002"
CHUNK = 50_000  # mosquitto_pub -l stops early past 65,535 lines


@dataclass
class Result:
    case: str
    readings: int
    seconds: float
    readings_per_s: float
    cpu_s_per_1000: float
    peak_rss_mb: float
    latency_p50_ms: float | None
    latency_p99_ms: float | None
    delivered_s: float | None = None
    broker_cpu_s: float | None = None
    influxd_cpu_s: float | None = None
    box_cores_busy: float | None = None


def feed(stations: list[str], n: int, per_message: int, t0_ms: int) -> dict[str, list[str]]:
    """Lines per topic; every reading of a station has its own ms timestamp and seq."""
    out: dict[str, list[str]] = {f"stations/v1/{s}/occupancy": [] for s in stations}
    topics = list(out)
    per_station = -(-n // len(stations))
    made = 0
    for si, topic in enumerate(topics):
        count = min(per_station, n - made)
        readings = [f'{{"ts":{t0_ms + i},"seq":{i},"people":{(i + si) % 20},"entries":{i},"exits":{i}}}'
                    for i in range(count)]
        made += count
        if per_message == 1:
            out[topic] = readings
        else:
            out[topic] = ["[" + ",".join(readings[i:i + per_message]) + "]" for i in range(0, count, per_message)]
    return out


def proc_stats(pid: int) -> tuple[float, float]:
    """(CPU seconds, peak RSS in MB) of a process."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    cpu = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    hwm = next(line for line in Path(f"/proc/{pid}/status").read_text().splitlines() if line.startswith("VmHWM"))
    return cpu, int(hwm.split()[1]) / 1024


class Probe:
    """Publishes probe readings at 20/s and records when each becomes queryable."""

    def __init__(self, broker: Mosquitto, influxd: Influxd, db: str) -> None:
        self.broker, self.influxd, self.db = broker, influxd, db
        self.sent: dict[int, float] = {}
        self.seen: dict[int, float] = {}
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._publish), threading.Thread(target=self._poll)]

    def __enter__(self) -> Self:
        for th in self._threads:
            th.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        for th in self._threads:
            th.join()

    def _publish(self) -> None:
        c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"probe-{uuid.uuid4().hex[:6]}")
        c.connect("127.0.0.1", self.broker.port)
        c.loop_start()
        seq = 0
        while not self._stop.wait(0.05):
            now = time.time()
            self.sent[seq] = now
            c.publish(f"stations/v1/{PROBE_STATION}/occupancy",
                      json.dumps({"ts": int(now * 1000), "seq": seq, "people": 1}), qos=1)
            seq += 1
        c.disconnect()
        c.loop_stop()

    def _poll(self) -> None:
        while not self._stop.wait(0.05):
            try:
                rows = self.influxd.rows(
                    f"SELECT seq FROM occupancy WHERE station = '{PROBE_STATION}' AND time > now() - 10m", self.db)
            except (AssertionError, OSError):
                continue
            now = time.time()
            for row in rows:
                self.seen.setdefault(int(row["seq"]), now)

    def latencies_ms(self) -> list[float]:
        return sorted((self.seen[s] - t) * 1000 for s, t in self.sent.items() if s in self.seen)


def start_ingest(cmd: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:  # tuning (INGEST_*) passes through; where it connects is the bench's
        return subprocess.Popen(cmd, cwd=ROOT, env=child_env(env, keep=("INGEST_",)), stdout=out, stderr=out)


def write_feed(topics: dict[str, list[str]], directory: Path) -> list[tuple[str, Path]]:
    directory.mkdir(parents=True)
    files = []
    for i, (topic, lines) in enumerate(topics.items()):
        for j in range(0, len(lines), CHUNK):
            path = directory / f"{i}-{j}.txt"
            path.write_text("\n".join(lines[j:j + CHUNK]) + "\n")
            files.append((topic, path))
    return files


def publishers(broker: Mosquitto, files: list[tuple[str, Path]]) -> list[subprocess.Popen[bytes]]:
    return [subprocess.Popen(["mosquitto_pub", "-h", "127.0.0.1", "-p", str(broker.port), "-q", "1", "-M", "1000",
                              "-t", topic, "-l"], stdin=path.open("rb")) for topic, path in files]


def run_paced(topics: dict[str, list[str]], n: int, rate: float, broker: Mosquitto, influxd: Influxd,
              work: Path) -> Result:
    """Like run_case, with one paced publisher instead of the mosquitto_pub bursts."""
    interleaved = [f"{topic}\t{lines[i]}" for i in range(max(len(v) for v in topics.values()))
                   for topic, lines in topics.items() if i < len(lines)]
    path = work / f"paced-{uuid.uuid4().hex[:6]}.tsv"
    path.write_text("\n".join(interleaved) + "\n")
    publisher = [sys.executable, "-m", "bench.paced_publisher", "--port", str(broker.port), "--rate", str(rate),
                 str(path)]
    return run_case("paced", [sys.executable, "-m", "ingest"], {}, n, broker, influxd, work,
                      ready_marker="MQTT connected", publisher=publisher, probe=True)


def run_mosquitto_sub(topics: dict[str, list[str]], n: int, broker: Mosquitto, work: Path, *,
                      queued: bool = False) -> Result:
    """The delivery ceiling: Mosquitto's C subscriber, persistent session, QoS 1, to /dev/null.

    ``queued``: the feed is published while the subscriber is away and then drained, so the
    publishers do not share the machine with the delivery being measured.
    """
    files = write_feed(topics, work / f"sub-{uuid.uuid4().hex[:6]}")
    client_id = f"sub-{uuid.uuid4().hex[:6]}"
    base = ["mosquitto_sub", "-h", "127.0.0.1", "-p", str(broker.port), "-q", "1", "-c", "-i", client_id,
            "-t", "stations/v1/+/+"]
    subprocess.run([*base, "-E"], check=True, timeout=30)  # create the session and its subscription
    assert broker.proc is not None  # noqa: S101 - started
    pubs = []
    sub = subprocess.Popen([*base, "-C", str(n)], stdout=subprocess.DEVNULL)
    if queued:
        connected = broker.dir / "mosquitto.log"
        wait_for(lambda: connected.read_text().count(f" as {client_id} ") >= 2, what="mosquitto_sub connected")
        publish_while_stopped([sub], broker, files)
    broker0, _ = proc_stats(broker.proc.pid)
    box0 = box_busy()
    started = time.monotonic()
    if queued:
        sub.send_signal(signal.SIGCONT)
    else:
        pubs = publishers(broker, files)
    _, status, usage = os.wait4(sub.pid, 0)
    seconds = time.monotonic() - started
    box = box_busy() - box0
    sub.returncode = os.waitstatus_to_exitcode(status)
    for p in pubs:
        p.wait()
    cpu = usage.ru_utime + usage.ru_stime
    return Result("mosquitto_sub" + ("_queued" if queued else ""), n, round(seconds, 2), round(n / seconds),
                  round(cpu / n * 1000, 4), round(usage.ru_maxrss / 1024, 1), None, None, round(seconds, 2),
                  round(proc_stats(broker.proc.pid)[0] - broker0, 2), None, round(box / seconds, 2))


def ingest_env(broker: Mosquitto | None, influxd: Influxd, db: str, work: Path, client_id: str,
               **extra: str) -> dict[str, str]:
    """The settings of a benchmark's ingest process: this broker (None: ``extra`` says the source) and
    InfluxDB, its own spool and HTTP port."""
    source = {"MQTT_URL": broker.url} if broker is not None else {}
    return {**source, "INFLUX_URL": influxd.url, "INFLUX_DB": db, "MQTT_CLIENT_ID": client_id,
            "INGEST_HTTP_ADDR": f"127.0.0.1:{free_port()}", "INGEST_SPOOL_DIR": str(work / client_id),
            "LOG_LEVEL": "INFO", **extra}


def publish_while_stopped(subscribers: list[subprocess.Popen[bytes]], broker: Mosquitto,
                          files: list[tuple[str, Path]]) -> None:
    """SIGSTOP the subscribers (their connections stay), publish the whole feed; the caller sends SIGCONT."""
    for subscriber in subscribers:
        subscriber.send_signal(signal.SIGSTOP)
    for p in publishers(broker, files):
        p.wait()


def run_case(case: str, cmd: list[str], topics: dict[str, list[str]], n: int, broker: Mosquitto,
             influxd: Influxd, work: Path, *, ready_marker: str, publisher: list[str] | None = None,
             probe: bool = False, counters: bool = True, queued: bool = False) -> Result:
    """One ingest process against the feed; readings/s is first publish to the last reading queryable.

    Completion is watched through ingest's own counters (cheap) and confirmed by counting the rows in
    InfluxDB; the naive baseline has no counters, so its rows are counted every 0.2 s. Probe readings
    (latency) only when ``probe``: their queries every 50 ms cost the box CPU that throughput needs.
    ``queued``: ingest is stopped (SIGSTOP, still connected) while the feed is published, and the
    time runs from its SIGCONT to the last reading queryable.
    """
    db = f"bench_{case}_{uuid.uuid4().hex[:6]}"
    env = ingest_env(broker, influxd, db, work, f"bench-{db}")
    log = work / f"{db}.log"
    files = write_feed(topics, work / db)
    proc = start_ingest(cmd, env, log)
    messages = n if "batch" not in case else -(-n // 100)
    pubs: list[subprocess.Popen[bytes]] = []
    try:
        wait_for(lambda: ready_marker in log.read_text() or proc.poll() is not None, timeout=60,
                 what=f"{case} ingest ready")
        influxd.query(f'CREATE DATABASE "{db}"')
        if queued:
            publish_while_stopped([proc], broker, files)
        assert broker.proc is not None  # noqa: S101 - started
        assert influxd.proc is not None  # noqa: S101 - started
        servers = (proc.pid, broker.proc.pid, influxd.proc.pid)
        cpu0 = [proc_stats(pid)[0] for pid in servers]
        box0 = box_busy()
        started = time.monotonic()
        if queued:
            proc.send_signal(signal.SIGCONT)
        delivered: float | None = None
        with Probe(broker, influxd, db) if probe else contextlib.nullcontext() as prober:
            if not queued:
                pubs = [subprocess.Popen(publisher, cwd=ROOT)] if publisher else publishers(broker, files)
            count = 0

            def all_written() -> bool:
                nonlocal count, delivered
                counters = ingest_counters(env["INGEST_HTTP_ADDR"])
                if delivered is None and counters.get("ingest_messages_received_total", 0) >= messages:
                    delivered = time.monotonic() - started
                if counters and counters.get("ingest_points_written_total", 0) < n:
                    return False
                count = influxd.count("occupancy", "people", db, f"WHERE station != '{PROBE_STATION}'")
                return count >= n

            wait_for(all_written, timeout=1800, interval=0.05 if counters else 0.2,
                     what=f"{n} readings of case {case}")
            seconds = time.monotonic() - started
            box = box_busy() - box0
            for p in pubs:
                p.wait()
        cpu1 = [proc_stats(pid)[0] for pid in servers]
        _, rss = proc_stats(proc.pid)
        lat = prober.latencies_ms() if prober else []
    finally:
        proc.terminate()
        proc.wait(30)
    return Result(case, count, round(seconds, 2), round(n / seconds), round((cpu1[0] - cpu0[0]) / n * 1000, 4),
                  round(rss, 1), round(statistics.median(lat)) if lat else None,
                  round(lat[int(len(lat) * 0.99) - 1]) if len(lat) > 1 else None,
                  round(delivered, 2) if delivered is not None else None, round(cpu1[1] - cpu0[1], 2),
                  round(cpu1[2] - cpu0[2], 2), round(box / seconds, 2))


def ingest_counters(addr: str) -> dict[str, float]:
    """Ingest's /metrics; empty when it does not answer (the naive baseline has none)."""
    try:
        with urllib.request.urlopen(f"http://{addr}/metrics", timeout=2) as resp:
            return parse_metrics(resp.read().decode())
    except OSError:
        return {}


def box_busy() -> float:
    """CPU seconds the whole machine has spent busy (all cores), from /proc/stat."""
    user, nice, system, _idle, _iowait, irq, softirq, steal = map(int, Path("/proc/stat").read_text().split()[1:9])
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=200_000, help="readings per case")
    parser.add_argument("--stations", type=int, default=45, help="station topics the feed is spread over")
    parser.add_argument("--baseline-n", type=int, default=None, help="readings for the naive case (default --n)")
    parser.add_argument("--cases",
                        default="mosquitto_sub,single,mosquitto_sub_queued,single_queued,batch100,naive,paced")
    parser.add_argument("--rate", type=float, default=10_000, help="readings/s of the paced case")
    parser.add_argument("--paced-seconds", type=float, default=30, help="length of the paced case")
    args = parser.parse_args()
    stations = [s.id for s in registry.load().reporting if s.id != PROBE_STATION][: args.stations]
    t0_ms = int(time.time() * 1000) - 3_600_000
    results = []
    with tempfile.TemporaryDirectory(prefix="yizhan-bench-") as tmp:
        work = Path(tmp)
        broker = Mosquitto(work / "mosquitto", persistence=False, log_types=MOSQUITTO_DEFAULT_LOG).start()
        influxd = Influxd(work / "influxd").start()
        try:
            ingest = [sys.executable, "-m", "ingest"]
            naive = [sys.executable, str(ROOT / "bench" / "naive_ingest.py")]
            for case in args.cases.split(","):
                n = {"naive": args.baseline_n or args.n, "paced": int(args.rate * args.paced_seconds)}.get(case, args.n)
                topics = feed(stations, n, 100 if case.startswith("batch100") else 1, t0_ms)
                match case:
                    case "mosquitto_sub" | "mosquitto_sub_queued":
                        result = run_mosquitto_sub(topics, n, broker, work, queued=case.endswith("_queued"))
                    case "paced":
                        result = run_paced(topics, n, args.rate, broker, influxd, work)
                    case "naive":
                        result = run_case(case, naive, topics, n, broker, influxd, work,
                                          ready_marker="naive ingest ready", counters=False)
                    case _:
                        result = run_case(case, ingest, topics, n, broker, influxd, work, ready_marker="MQTT connected",
                                          queued=case.endswith("_queued"))
                results.append(result)
                print(json.dumps(asdict(result)), flush=True)
        finally:
            broker.stop()
            influxd.stop()
    print()
    print(f"{'case':<13} {'readings':>9} {'seconds':>8} {'readings/s':>11} {'CPU s/1000':>11} "
          f"{'peak RSS MB':>12} {'p50 ms':>7} {'p99 ms':>7} "
          f"{'delivered s':>12} {'broker CPU s':>13} {'influxd CPU s':>14} {'cores busy':>11}")
    for r in results:
        print(f"{r.case:<13} {r.readings:>9} {r.seconds:>8} {r.readings_per_s:>11} {r.cpu_s_per_1000:>11} "
              f"{r.peak_rss_mb:>12} {r.latency_p50_ms!s:>7} {r.latency_p99_ms!s:>7} {r.delivered_s!s:>12} "
              f"{r.broker_cpu_s!s:>13} {r.influxd_cpu_s!s:>14} {r.box_cores_busy!s:>11}")
    by_case = {r.case: r for r in results}
    if "single" in by_case and "naive" in by_case:
        print(f"\nsingle / naive: {by_case['single'].readings_per_s / by_case['naive'].readings_per_s:.1f}x")
    for suffix in ("", "_queued"):
        single, sub = by_case.get("single" + suffix), by_case.get("mosquitto_sub" + suffix)
        if single and sub:
            ratio = single.readings_per_s / sub.readings_per_s
            print(f"single{suffix} / mosquitto_sub{suffix}: {ratio:.2f}x (queryable); "
                  f"{sub.seconds / (single.delivered_s or single.seconds):.2f}x (delivered)")


if __name__ == "__main__":
    main()
