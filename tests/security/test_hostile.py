"""The hostile corpus (tests/security/hostile/) through the real broker to ingest and the gateway, and
through the gateway's HTTP ingress: each case gets its exact reject, nothing crashes, and nothing of
other stations changes.

The broker here allows anonymous clients and has no ACL: the corpus tests ingest and the gateway, the
second line of defence. With the provisioned ACL (test_acl.py) the topic cases never get that far: a
station may publish only on its own topics.
"""

from __future__ import annotations

import json
import socket
import struct
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from gateway.credentials import Role, TokenStore
from tests.mqtt import publish
from tests.payloads import charger, now_ms, occupancy, t, temperature
from tests.rig import GatewayProcess, Influxd, IngestProcess, Mosquitto, wait_for
from tests.security.conftest import Credentials, provisioned
from tests.security.corpus import STATION, Case, load

OTHERS = ("PL-KT-002", "PL-KT-003")
MARKER = 424242  # the seq of the last message: once it is stored, ingest has processed everything before it
READING_MEASUREMENTS = ("occupancy", "charger", "temperature", "station_status")


def _utf8(raw: bytes) -> bytes:
    return struct.pack("!H", len(raw)) + raw


def _packet(first: int, body: bytes) -> bytes:
    out, n = bytearray([first]), len(body)
    while True:
        n, digit = divmod(n, 128)
        out.append(digit | (0x80 if n else 0))
        if not n:
            return bytes(out) + body


def raw_publish(port: int, topic: bytes, payload: bytes) -> bytes:
    """CONNECT, then one QoS 1 PUBLISH, bypassing client-side checks; what the broker answers to it."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(_packet(0x10, _utf8(b"MQTT") + bytes([4, 2]) + struct.pack("!H", 30) + _utf8(b"hostile")))
        assert s.recv(4) == b"\x20\x02\x00\x00"
        s.sendall(_packet(0x32, _utf8(topic) + b"\x00\x01" + payload))
        return s.recv(16)  # b"" once the broker closes the connection; a PUBACK otherwise


def baseline(ts: int) -> list[tuple[str, Any]]:
    """What the other stations report, every field of every kind: it must be exactly what is stored for them
    afterwards, and the series, tags and fields it makes are all the corpus may leave."""
    out: list[tuple[str, Any]] = []
    for i, s in enumerate(OTHERS):
        out += [(t(s, "occupancy"), occupancy(1, 3 + i, ts=ts, entries=10, exits=7)),
                (t(s, "charger"), charger(2, "C1", 2, ts=ts, fault="E0")),
                (t(s, "temperature"), temperature(3, "indoor", 18.5 + i, ts=ts, humidity_pct=40.0)),
                (t(s, "status"), {"state": "online", "ts": ts, "fw": "1.0", "uptime_s": 5, "buffered": 0,
                                  "dropped": 0, "driver_errors": 0, "config_rev": "default", "error": "none"})]
    return out


@dataclass(frozen=True)
class Structure:
    measurements: set[str]
    tags: set[tuple[str, str]]
    fields: set[tuple[str, str]]


def structure(influxd: Influxd, db: str) -> Structure:
    """Measurements, and the tag and field keys of each."""
    def keys(q: str) -> set[tuple[str, str]]:
        return {(s["name"], v[0]) for s in influxd.query(q, db) for v in s["values"]}
    return Structure({v[0] for s in influxd.query("SHOW MEASUREMENTS", db) for v in s["values"]},
                     keys("SHOW TAG KEYS"), keys("SHOW FIELD KEYS"))


def snapshot(influxd: Influxd, db: str) -> dict[str, list[dict[str, Any]]]:
    """Every point of the other stations, all fields and tags, by measurement."""
    where = " OR ".join(f"station = '{s}'" for s in OTHERS)
    return {m: influxd.rows(f"SELECT * FROM {m} WHERE {where} GROUP BY *", db) for m in READING_MEASUREMENTS}


@dataclass
class Run:
    cases: list[Case]
    influxd: Influxd
    db: str
    broker: Mosquitto
    ingest: IngestProcess
    gateway: GatewayProcess
    credentials: Credentials
    viewer: str
    before: dict[str, list[dict[str, Any]]]
    structure: Structure
    broker_answers: dict[str, bytes]
    sent_messages: int
    gateway_seen_before: float


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory, influxd: Influxd) -> Iterator[Run]:
    """Broker, ingest and gateway; the baseline, then the whole corpus, then a marker, all processed."""
    directory = tmp_path_factory.mktemp("hostile")
    db = f"hostile_{uuid.uuid4().hex[:8]}"
    credentials = provisioned(directory / "auth")
    broker = Mosquitto(directory / "mosquitto").start()
    ingest = IngestProcess(directory / "ingest", MQTT_URL=broker.url, INFLUX_URL=influxd.url, INFLUX_DB=db,
                           MQTT_CLIENT_ID=f"ingest-{db}", INGEST_BATCH_SECONDS="0.2")
    gateway: GatewayProcess | None = None
    try:
        ingest.start()
        # created once ingest runs: its HTTP port is picked now, not before ingest's sockets took theirs
        gateway = GatewayProcess(directory / "gateway", MQTT_URL=broker.url, INFLUX_URL=influxd.url, INFLUX_DB=db,
                                 STATION_PASSWORD_FILE=str(credentials.files.passwd))
        viewer = TokenStore(Path(gateway.env["GATEWAY_TOKENS_FILE"])).add("viewer", Role.VIEWER)
        gateway.start()
        now = now_ms()
        cases = load(now)
        base = baseline(now - 1000)
        publish(broker.port, base)
        wait_for(lambda: sum(influxd.count(m, "seq" if m != "station_status" else "online", db)
                             for m in READING_MEASUREMENTS) == len(base), what="the baseline stored")
        before, shape = snapshot(influxd, db), structure(influxd, db)
        seen_before = gateway.metric("gateway_live_messages")
        answers = {c.name: raw_publish(broker.port, c.topic.encode(), c.payload) for c in cases if c.broker}
        delivered = [c for c in cases if not c.broker]
        publish(broker.port, [(c.topic, c.payload) for c in delivered])
        publish(broker.port, [(t(STATION, "occupancy"), occupancy(MARKER, 1, ts=now - 500))])
        wait_for(lambda: influxd.count("occupancy", "seq", db, f"WHERE seq = {MARKER}") == 1, what="the marker stored")
        expected = sum(len(c.rejects) for c in cases if c.reaches_ingest)
        wait_for(lambda: influxd.count("ingest_rejects", "detail", db) >= expected, what=f"{expected} reject points")
        yield Run(cases, influxd, db, broker, ingest, gateway, credentials, viewer, before, shape, answers,
                  len(base) + sum(c.reaches_ingest for c in cases) + 1, seen_before)
    finally:
        if gateway is not None:
            gateway.stop()
        ingest.stop()
        broker.stop()


def test_hostile_corpus_covers_what_the_issue_lists(run: Run) -> None:
    names = " ".join(c.name for c in run.cases)
    for topic in ("deep-nesting", "huge-float", "integer-of-5001-digits", "nan", "infinity", "duplicate-key",
                  "invalid-utf8", "utf8-bom", "65-KiB", "10-MiB", "batch-of-1001", "nulls-everywhere",
                  "plus-as-station-id", "hash-as-station-id", "empty-station-id", "station-id-of-60000-characters",
                  "injection-in-fault", "injection-in-charger-id", "injection-in-sensor", "injection-in-status",
                  "injection-in-ts", "injection-in-the-station-id", "injection-in-the-kind"):
        assert topic in names, topic
    assert len({c.ts for c in run.cases}) == len(run.cases)


def test_hostile_each_case_gets_its_exact_reject_in_influxdb_and_in_metrics(run: Run) -> None:
    rows = run.influxd.rows("SELECT * FROM monitor.ingest_rejects", run.db)
    unmatched = list(rows)
    for case in (c for c in run.cases if c.reaches_ingest):
        topic = case.topic if len(case.topic) <= 256 else case.topic[:255] + "…"
        for expected in case.rejects:
            found = next((r for r in unmatched if r["topic"] == topic and r["station"] == case.reject_station
                          and expected.matches(r["reason"], r["detail"], stored=True)), None)
            assert found is not None, f"{case.name}: no {expected} among {[r for r in rows if r['topic'] == topic]}"
            unmatched.remove(found)
    assert unmatched == [], "rejects that no case expects"
    counts = Counter(e.reason for c in run.cases if c.reaches_ingest for e in c.rejects)
    metrics = run.ingest.metrics()
    for reason in ("bad_topic", "unknown_station", "unknown_kind", "bad_json", "schema", "too_large",
                   "ts_out_of_range", "write_rejected"):
        assert metrics[f'ingest_rejects_total{{reason="{reason}"}}'] == counts[reason], reason
    assert metrics["ingest_messages_received_total"] == run.sent_messages, "not-delivered cases reached ingest"


def test_hostile_accepted_cases_are_stored_verbatim(run: Run) -> None:
    for case in (c for c in run.cases if c.stored is not None):
        assert case.stored is not None
        stored = dict(case.stored)
        measurement = stored.pop("measurement")
        rows = run.influxd.rows(f"SELECT * FROM {measurement} WHERE station = '{STATION}' "
                                f"AND time <= {case.ts}ms AND time > {case.ts - 2000}ms", run.db)
        if "count" in stored:
            assert len(rows) == stored.pop("count"), case.name
        else:
            assert len(rows) == 1, case.name
            assert {k: rows[0][k] for k in stored} == stored, case.name


def test_hostile_nothing_changes_for_other_stations_and_no_new_series_fields_or_tags(run: Run) -> None:
    assert snapshot(run.influxd, run.db) == run.before
    after = structure(run.influxd, run.db)
    assert after.measurements <= run.structure.measurements | {"ingest_rejects", "ingest_stats", "ingest_station_lag"}
    reading = set(READING_MEASUREMENTS)
    assert {k for k in after.tags if k[0] in reading} == {k for k in run.structure.tags if k[0] in reading}
    assert {k for k in after.fields if k[0] in reading} == {k for k in run.structure.fields if k[0] in reading}
    assert {k for k in after.tags if k[0] == "ingest_rejects"} == {("ingest_rejects", "reason")}
    assert {k for k in after.fields if k[0] == "ingest_rejects"} == {
        ("ingest_rejects", f) for f in ("station", "topic", "detail")}
    stations = {v[1] for s in run.influxd.query('SHOW TAG VALUES WITH KEY = "station"', run.db) for v in s["values"]}
    assert stations == {STATION, *OTHERS}


def test_hostile_wildcards_and_control_characters_in_topics_are_refused_by_the_broker(run: Run) -> None:
    log = (run.broker.dir / "mosquitto.log").read_text()
    for case in (c for c in run.cases if c.broker):
        assert run.broker_answers[case.name] == b"", f"{case.name}: the broker acknowledged it"
    assert log.count("disconnected due to protocol error") == sum(c.broker == "protocol_error" for c in run.cases)
    assert log.count("disconnected due to malformed packet") == sum(c.broker == "malformed" for c in run.cases)


def test_hostile_gateway_survives_the_corpus_and_its_live_state_is_intact(run: Run) -> None:
    assert run.gateway.proc is not None
    assert run.gateway.proc.poll() is None
    assert run.gateway.metric("gateway_live_messages") >= run.gateway_seen_before + sum(
        c.reaches_ingest for c in run.cases)
    with httpx.Client(base_url=run.gateway.url, headers={"Authorization": f"Bearer {run.viewer}"},
                      timeout=10) as api:
        for i, station in enumerate(OTHERS):
            detail = api.get(f"/v1/stations/{station}").json()
            assert (detail["people"], detail["status"]["fw"]) == (3 + i, "1.0")
            assert [c["fault"] for c in detail["chargers"] if c["id"] == "C1"] == ["E0"]
        assert api.get("/readyz").json() == {"mqtt": True, "influxdb": True}


def test_hostile_http_ingress_answers_each_case_with_its_reason(run: Run) -> None:
    rejects_before = run.influxd.count("ingest_rejects", "detail", run.db)
    auth = (STATION, run.credentials.passwords[STATION])
    with httpx.Client(base_url=run.gateway.url, timeout=30) as api:
        for case in (c for c in run.cases if c.http):
            response = api.post(f"/v1/stations/{STATION}/telemetry", params={"kind": case.kind}, auth=auth,
                                content=case.payload, headers={"Content-Type": "application/json"})
            if case.stored is not None:
                assert response.status_code == 202, f"{case.name}: {response.text}"
                continue
            assert response.status_code == 422, f"{case.name}: {response.status_code} {response.text[:300]}"
            body = response.json()
            got = [(r["reason"], r["detail"]) for r in body.get("rejects", [{"reason": body["reason"],
                                                                                "detail": body["detail"]}])]
            assert len(got) == len(case.rejects), case.name
            for expected, (reason, detail) in zip(case.rejects, got, strict=True):
                if case.http_detail is not None:
                    assert (reason, detail) == (expected.reason, case.http_detail), case.name
                else:
                    assert expected.matches(reason, detail, stored=False), f"{case.name}: {reason} {detail!r}"
        # hostile station ids in the path never reach the decoder
        for path, status in (("/v1/stations/+/telemetry", 404), ("/v1/stations/%23/telemetry", 404),
                             (f"/v1/stations/{'X' * 1000}/telemetry", 422), ("/v1/stations//telemetry", 404),
                             ("/v1/stations/PL-KT-042/telemetry", 401)):
            response = api.post(path, params={"kind": "occupancy"}, json=occupancy(1, 1))
            assert response.status_code == status, (path, response.text[:200])
            assert response.headers["content-type"] == "application/problem+json"
        unknown_kind = api.post(f"/v1/stations/{STATION}/telemetry", params={"kind": "status"}, auth=auth, json={})
        assert unknown_kind.status_code == 422
        assert "kind" in json.dumps(unknown_kind.json()["errors"])
    assert run.gateway.proc is not None
    assert run.gateway.proc.poll() is None
    wait_for(lambda: run.ingest.metric("ingest_messages_received_total") == run.sent_messages + sum(
        c.stored is not None for c in run.cases if c.http), what="the accepted ingress cases published")
    assert run.influxd.count("ingest_rejects", "detail", run.db) == rejects_before, "a refused reading was published"
