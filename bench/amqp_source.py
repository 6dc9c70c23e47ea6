"""Ingest CPU per reading through the AMQP source (a RabbitMQ quorum queue) against the MQTT source, one run.

    .venv/bin/python -m bench.amqp_source [--n 100000] [--rate 2000] [--paced-seconds 20]
        [--prefetch 2000] [--cases codec,mqtt_queued,amqp_queued,mqtt_paced,amqp_paced]

Starts its own InfluxDB, Mosquitto (the shipped limits) and a three-node RabbitMQ cluster
(``tests/cluster.py``: the MQTT plugin, quorum queues replicated on the three), then per case one
ingest process:

- ``codec``: no servers; the AMQP session's decoding of deliveries (``basic.deliver``, content
  header, body, read 64 KiB at a time) per message, against pamqp decoding the same frames one by
  one and the MQTT session decoding the same payloads as PUBLISHes, and an acknowledgement per
  batch (one ``basic.ack``, multiple) against one per message;
- ``mqtt_queued``: single readings published to Mosquitto while ingest (MQTT source) is SIGSTOPped,
  then drained (``bench/ingest_throughput.py``'s ``single_queued``);
- ``amqp_queued``: the same readings published over MQTT to the cluster's MQTT listeners (in turn)
  while ingest (AMQP source, ``AMQP_URL`` the three nodes) is SIGSTOPped, then drained from the queue;
  once per ``--prefetch`` value;
- ``mqtt_paced``, ``amqp_paced``: readings at ``--rate`` per second for ``--paced-seconds``
  (``bench/paced_publisher.py``), ingest running.

Prints per case: readings/s (from the drain's start, or the first publish, to the last reading
queryable), ingest CPU µs per reading, ingest peak RSS, the broker's CPU seconds (the three nodes
together for RabbitMQ), influxd's, and the machine's busy cores. The figure to read is ingest CPU
per reading: the target for the AMQP source is at most 15 µs.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

from pamqp import commands
from pamqp import frame as pamqp_frame

from bench.ingest_throughput import (
    PROBE_STATION,
    Result,
    box_busy,
    feed,
    ingest_counters,
    proc_stats,
    run_case,
    run_paced,
    start_ingest,
    write_feed,
)
from ingest.amqp_session import Session, ack_frame
from ingest.session import Session as MqttSession
from ingest.session import packet, utf8
from telemetry import registry
from tests.cluster import Cluster, running_cluster
from tests.ingest.amqp_peer import HANDSHAKE, deliver
from tests.rig import MOSQUITTO_DEFAULT_LOG, Influxd, Mosquitto, free_port, wait_for

QUEUE = "yizhan.ingest"


def _best(run: Callable[[], object], repeat: int = 5) -> float:
    """The fastest of ``repeat`` runs, in CPU seconds of this process."""
    times = []
    for _ in range(repeat):
        start = time.process_time()
        run()
        times.append(time.process_time() - start)
    return min(times)


def codec(n: int) -> dict[str, float]:
    """µs per message: the session's fast path, pamqp on the same frames, and the acknowledgements."""
    payloads = [b'{"ts":1767225600000,"seq":%d,"people":3,"entries":%d,"exits":%d}' % (i, i, i) for i in range(n)]
    stream = b"".join(deliver(p, i + 1, routing_key=f"stations.v1.PL-KT-{i % 45:03d}.occupancy")
                      for i, p in enumerate(payloads))
    chunks = [stream[k:k + 65536] for k in range(0, len(stream), 65536)]

    def session() -> None:
        s = Session(connection=1, now=0.0, username="u", password="p")  # noqa: S106 - no broker
        for answer in HANDSHAKE:
            s.receive_data(answer(), 0.0)
        got = 0
        for chunk in chunks:
            got += len(s.receive_data(chunk, 0.0))
        assert got == n  # noqa: S101 - the bench measures a working decode

    def with_pamqp() -> None:
        data, got = memoryview(stream), 0
        while data:
            used, _, value = pamqp_frame.unmarshal(bytes(data[:8 + int.from_bytes(data[3:7])]))
            data = data[used:]
            got += isinstance(value, commands.Basic.Deliver)
        assert got == n  # noqa: S101

    wire = b"".join(packet(0x32, utf8(f"stations/v1/PL-KT-{i % 45:03d}/occupancy") + (1 + i % 65535).to_bytes(2, "big")
                           + p) for i, p in enumerate(payloads))

    def mqtt_session() -> None:
        s = MqttSession(client_id="bench", topic_filter="#", connection=1, now=0.0)
        s.receive_data(b"\x20\x02\x00\x00\x90\x03\x00\x01\x01", 0.0)  # CONNACK, SUBACK
        got = sum(len(s.receive_data(wire[k:k + 65536], 0.0)) for k in range(0, len(wire), 65536))
        assert got == n  # noqa: S101

    batches = [list(range(k + 1, k + 5001)) for k in range(0, n, 5000)]
    per_message = {
        "session_decode_us": _best(session) / n * 1e6,
        "mqtt_session_decode_us": _best(mqtt_session) / n * 1e6,
        "pamqp_decode_us": _best(with_pamqp, 2) / n * 1e6,
        "ack_per_batch_of_5000_us": _best(lambda: [ack_frame(b[-1]) for b in batches]) / n * 1e6,
        "ack_per_message_pamqp_us": _best(lambda: [pamqp_frame.marshal(commands.Basic.Ack(t), 1)
                                                    for b in batches for t in b], 2) / n * 1e6,
    }
    return {k: round(v, 3) for k, v in per_message.items()}


def rabbit_cpu(cluster: Cluster) -> float:
    return sum(proc_stats(pid)[0] for node in cluster.nodes if (pid := node.beam_pid()) is not None)


def run_amqp(case: str, topics: dict[str, list[str]], n: int, cluster: Cluster, influxd: Influxd, work: Path, *,
             prefetch: int, rate: float | None = None, replicas: int = 1) -> Result:
    """``replicas`` ingest processes on the cluster's queue (each starting at another node); ``rate`` None:
    queued (published while they are SIGSTOPped), then drained. CPU and RSS are the replicas' together."""
    db = f"bench_{case}_{uuid.uuid4().hex[:6]}"
    vhost = cluster.new_vhost() if rate is None else "/"  # the paced publisher is anonymous: guest on "/"
    urls = [node.amqp_url(vhost=vhost) for node in cluster.nodes]
    envs = [{"AMQP_URL": ",".join(urls[i % 3:] + urls[:i % 3]), "INFLUX_URL": influxd.url, "INFLUX_DB": db,
             "MQTT_CLIENT_ID": f"bench-{db}-{i}", "INGEST_HTTP_ADDR": f"127.0.0.1:{free_port()}",
             "INGEST_SPOOL_DIR": str(work / db / str(i)), "LOG_LEVEL": "INFO", "INGEST_AMQP_PREFETCH": str(prefetch),
             "INGEST_AMQP_HEARTBEAT_SECONDS": "300"}  # SIGSTOPped while the feed is published
            for i in range(replicas)]
    logs = [work / f"{db}-{i}.log" for i in range(replicas)]
    procs = [start_ingest([sys.executable, "-m", "ingest"], env, log) for env, log in zip(envs, logs, strict=True)]
    user = f"{vhost}:guest"
    try:
        wait_for(lambda: all("AMQP consuming" in log.read_text() for log in logs)
                 or any(p.poll() is not None for p in procs), timeout=60, what=f"{case} ingest consuming")
        influxd.query(f'CREATE DATABASE "{db}"')
        if rate is None:
            for proc in procs:
                proc.send_signal(signal.SIGSTOP)
            _publish_files(cluster, user, write_feed(topics, work / db / "feed"))
            wait_for(lambda: _queued(cluster, vhost) >= n, timeout=300, what="the feed in the queue")
        cpu0 = sum(proc_stats(p.pid)[0] for p in procs)
        broker0, influx0, box0, started = rabbit_cpu(cluster), _influx_cpu(influxd), box_busy(), time.monotonic()
        publisher = None
        if rate is None:
            for proc in procs:
                proc.send_signal(signal.SIGCONT)
        else:
            publisher = subprocess.Popen([sys.executable, "-m", "bench.paced_publisher", "--port",
                                          str(cluster.nodes[0].mqtt_port), "--rate", str(rate),
                                          str(_interleaved(topics, work))])
        wait_for(lambda: sum(ingest_counters(e["INGEST_HTTP_ADDR"]).get("ingest_points_written_total", 0)
                             for e in envs) >= n and influxd.count("occupancy", "people", db) >= n,
                 timeout=1800, interval=0.1, what=f"{n} readings of case {case}")
        seconds, box = time.monotonic() - started, box_busy() - box0
        if publisher is not None:
            publisher.wait(60)
        stats = [proc_stats(p.pid) for p in procs]
        broker, influx = rabbit_cpu(cluster) - broker0, _influx_cpu(influxd) - influx0
    finally:
        for proc in procs:
            proc.send_signal(signal.SIGCONT)  # a stopped process would not act on SIGTERM
            proc.terminate()
        for proc in procs:
            proc.wait(30)
    cpu = sum(c for c, _ in stats) - cpu0
    return Result(case, n, round(seconds, 2), round(n / seconds), round(cpu / n * 1000, 4),
                  round(sum(r for _, r in stats), 1), None, None, None, round(broker, 2), round(influx, 2),
                  round(box / seconds, 2))


def _publish_files(cluster: Cluster, user: str, files: list[tuple[str, Path]], attempts: int = 5) -> None:
    """``mosquitto_pub -l`` per file, through the nodes in turn; a file whose publisher was refused is sent again
    (a fresh cluster's MQTT plugin refuses connections until its client id registry has a leader)."""
    for attempt in range(attempts):
        pubs = [(topic, path, subprocess.Popen(
            ["mosquitto_pub", "-h", "127.0.0.1", "-p", str(cluster.nodes[(k + attempt) % 3].mqtt_port), "-u", user,
             "-P", "guest", "-q", "1", "-M", "1000", "-t", topic, "-l"], stdin=path.open("rb")))
            for k, (topic, path) in enumerate(files)]
        files = [(topic, path) for topic, path, p in pubs if p.wait() != 0]
        if not files:
            return
        time.sleep(2)
    raise RuntimeError(f"{len(files)} feed files not published after {attempts} attempts")


def _queued(cluster: Cluster, vhost: str) -> int:
    out = cluster.ctl("list_queues", "-p", vhost, "--quiet", "--no-table-headers", "name", "messages")
    return sum(int(line.split()[1]) for line in out.splitlines() if line.startswith(QUEUE))


def _influx_cpu(influxd: Influxd) -> float:
    assert influxd.proc is not None  # noqa: S101 - started
    return proc_stats(influxd.proc.pid)[0]


def _interleaved(topics: dict[str, list[str]], work: Path) -> Path:
    lines = [f"{topic}\t{values[i]}" for i in range(max(len(v) for v in topics.values()))
             for topic, values in topics.items() if i < len(values)]
    path = work / f"paced-{uuid.uuid4().hex[:6]}.tsv"
    path.write_text("\n".join(lines) + "\n")
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=100_000, help="readings per queued case")
    parser.add_argument("--stations", type=int, default=45)
    parser.add_argument("--rate", type=float, default=2000, help="readings/s of the paced cases")
    parser.add_argument("--paced-seconds", type=float, default=20)
    parser.add_argument("--prefetch", default="2000", help="INGEST_AMQP_PREFETCH values (comma-separated)")
    parser.add_argument("--cases", default="codec,mqtt_queued,amqp_queued,mqtt_paced,amqp_paced")
    args = parser.parse_args()
    cases = args.cases.split(",")
    if "codec" in cases:
        print(json.dumps({"case": "codec", **codec(50_000)}), flush=True)
    # not the latency probe's station: bench/ingest_throughput.py's cases count readings without it
    stations = [s.id for s in registry.load().reporting if s.id != PROBE_STATION][: args.stations]
    t0_ms = int(time.time() * 1000) - 3_600_000
    prefetches = [int(p) for p in args.prefetch.split(",")]
    results: list[Result] = []
    with tempfile.TemporaryDirectory(prefix="yizhan-bench-") as tmp:
        work = Path(tmp)
        broker = Mosquitto(work / "mosquitto", persistence=False, log_types=MOSQUITTO_DEFAULT_LOG).start()
        influxd = Influxd(work / "influxd").start()
        try:
            with running_cluster(work / "rabbit") as cluster:
                for case in cases:
                    paced_n = int(args.rate * args.paced_seconds)
                    topics = feed(stations, paced_n if case.endswith("paced") else args.n, 1, t0_ms)
                    match case:
                        case "mqtt_queued":
                            runs = [run_case("single_queued", [sys.executable, "-m", "ingest"], topics, args.n,
                                             broker, influxd, work, ready_marker="MQTT connected", queued=True)]
                        case "amqp_queued":
                            runs = [run_amqp(f"amqp_queued_p{p}", topics, args.n, cluster, influxd, work, prefetch=p)
                                    for p in prefetches]
                        case "mqtt_paced":
                            runs = [run_paced(topics, paced_n, args.rate, broker, influxd, work)]
                        case "amqp_paced":
                            runs = [run_amqp("amqp_paced", topics, paced_n, cluster, influxd, work,
                                             prefetch=prefetches[0], rate=args.rate)]
                        case _:
                            runs = []
                    for result in runs:
                        results.append(result)
                        print(json.dumps(asdict(result)), flush=True)
        finally:
            broker.stop()
            influxd.stop()
    print(f"\nload average at the end: {os.getloadavg()}")
    print(f"{'case':<22} {'readings':>9} {'seconds':>8} {'readings/s':>11} {'ingest CPU µs':>14} "
          f"{'peak RSS MB':>12} {'broker CPU s':>13} {'influxd CPU s':>14} {'cores busy':>11}")
    for r in results:
        print(f"{r.case:<22} {r.readings:>9} {r.seconds:>8} {r.readings_per_s:>11} {r.cpu_s_per_1000 * 1000:>14.2f} "
              f"{r.peak_rss_mb:>12} {r.broker_cpu_s!s:>13} {r.influxd_cpu_s!s:>14} {r.box_cores_busy!s:>11}")


if __name__ == "__main__":
    main()
