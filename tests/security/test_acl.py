"""A real Mosquitto on the provisioned password file and ACL: no station can speak or read for another.

What Mosquitto 2.0.11 does, and these tests pin down:

- A PUBLISH the ACL denies is acknowledged (PUBACK, so the client cannot probe what exists) and
  dropped; an MQTT 3.1.1 client is then disconnected. Nothing reaches any subscriber.
- A SUBSCRIBE is granted whatever its filter (``#`` included): for MQTT 3.1.1 the broker does not
  check filters against the ACL, it checks every message against the subscriber's read access
  before delivering it. So a station subscribed to ``#`` receives its own config and nothing else.
- A last will is checked against the ACL when it is sent: a will on another station's topic is dropped.
"""

from __future__ import annotations

import json
import signal
from pathlib import Path

from gateway.provision import load_secrets, provision
from tests.payloads import now_ms, occupancy, t
from tests.rig import Influxd, Mosquitto, wait_for
from tests.security.conftest import Credentials, IngestAs, SessionFactory
from tests.security.test_provision import registry_with

S1, S2 = "PL-KT-001", "PL-KT-002"


def stored(influxd: Influxd, db: str, station: str) -> int:
    return influxd.count("occupancy", "people", db, f"WHERE station = '{station}'")


def test_acl_station_cannot_publish_as_another_and_ingest_cannot_publish(
        auth_broker: Mosquitto, session: SessionFactory, ingest_as_service: IngestAs, influxd: Influxd,
        db: str) -> None:
    ingest = ingest_as_service()
    watcher = session("gateway")
    assert watcher.subscribe("stations/v1/#") == 1
    forged = [(t(S2, "occupancy"), occupancy(1, 7)), (t(S2, "status"), {"state": "offline"}),
              (t(S2, "config"), {"rev": "evil", "occupancy_interval_s": 86400}), (t(S1, "config"), {"rev": "self"})]
    for topic, payload in forged:
        station = session(S1)
        station.publish([(topic, payload)])  # acknowledged: the station cannot tell denied from delivered
        station.wait_disconnected()
    service = session("ingest")
    service.publish([(t(S1, "occupancy"), occupancy(2, 3))])
    service.wait_disconnected()
    session(S1).publish([(t(S1, "occupancy"), occupancy(3, 4))])  # allowed: the marker
    wait_for(lambda: stored(influxd, db, S1) == 1, what="the station's own reading stored")
    assert ingest.metric("ingest_messages_received_total") == 1, "a denied publish reached ingest"
    assert [m.topic for m in watcher.messages] == [t(S1, "occupancy")]
    assert stored(influxd, db, S2) == 0
    late = session("gateway")
    late.subscribe(t(S2, "config"))
    late.subscribe(t(S2, "status"))
    assert late.messages == [], "a forged retained config or status was kept"
    log = (auth_broker.dir / "mosquitto.log").read_text()
    assert log.count("Denied PUBLISH") == 5


def test_acl_station_reads_only_its_own_config_even_subscribed_to_everything(session: SessionFactory) -> None:
    operator = session("gateway")
    operator.publish([(t(S1, "config"), {"rev": "one"}), (t(S2, "config"), {"rev": "two"})], retain=True)
    station = session(S1)
    codes = [station.subscribe(f) for f in ("#", "stations/v1/#", "stations/v1/+/config", t(S2, "config"),
                                            "$SYS/#", t(S1, "config"))]
    assert codes == [1] * 6  # Mosquitto grants every filter and filters what it delivers by the ACL
    session(S2).publish([(t(S2, "occupancy"), occupancy(1, 2)), (t(S2, "status"), {"state": "online"})])
    operator.publish([(t(S2, "config"), {"rev": "three"}), (t(S1, "config"), {"rev": "four"})], retain=True)
    # delivered in the order the broker took them: once four is here, S2's messages would be too
    wait_for(lambda: any(json.loads(m.payload)["rev"] == "four" for m in station.messages), what="config four")
    assert {m.topic for m in station.messages} == {t(S1, "config")}
    assert {json.loads(m.payload)["rev"] for m in station.messages} == {"one", "four"}


def test_acl_wrong_unknown_or_no_credentials_are_refused(session: SessionFactory, credentials: Credentials) -> None:
    for user, password in [(S1, "wrong"), (S1, credentials.passwords[S2]), ("PL-KT-999", "x"),
                           ("PL-KT-042", "x"), (None, None), ("ingest", "")]:
        refused = session(user, password)
        assert refused.connack is not None
        assert str(refused.connack) == "Not authorized", (user, refused.connack)
    assert session(S1).accepted


def test_acl_last_will_on_another_station_is_dropped_its_own_is_sent(session: SessionFactory) -> None:
    watcher = session("gateway")
    watcher.subscribe("stations/v1/+/status")
    forger = session(S1, will=t(S2, "status"))
    honest = session(S1, will=t(S1, "status"), client_id="station-PL-KT-001-b")
    assert forger.accepted
    assert honest.accepted
    for s in (forger, honest):
        sock = s.client.socket()
        assert sock is not None
        sock.close()  # no DISCONNECT: the broker sends the will
    wait_for(lambda: [m.topic for m in watcher.messages] == [t(S1, "status")], what="S1's own will, and only it")


def test_acl_gateway_writes_configs_and_telemetry_but_not_a_station_status(
        session: SessionFactory, ingest_as_service: IngestAs, influxd: Influxd, db: str) -> None:
    ingest = ingest_as_service()
    gateway = session("gateway")
    gateway.publish([(t(S2, "occupancy"), occupancy(1, 5)), (t(S2, "config"), {"rev": "ok"})])
    gateway.publish([(t(S2, "status"), {"state": "online"})])
    gateway.wait_disconnected()
    wait_for(lambda: stored(influxd, db, S2) == 1, what="the gateway's ingress reading stored")
    assert ingest.metric("ingest_messages_received_total") == 2, "status forged, or config not delivered"
    assert influxd.count("station_status", "online", db) == 0


def test_acl_reprovisioned_station_works_after_a_broker_reload(tmp_path: Path, auth_broker: Mosquitto,
                                                               credentials: Credentials,
                                                               session: SessionFactory) -> None:
    """A station added to the registry: provision again, SIGHUP the broker; nobody else is disturbed."""
    newcomer = "PL-KT-900"
    assert str(session(newcomer, "x").connack) == "Not authorized"
    watcher = session("gateway")
    watcher.subscribe("stations/v1/+/occupancy")
    provision(registry_with(tmp_path / "grown.yaml", extra=True), credentials.files.passwd.parent)
    grown = load_secrets(credentials.files.secrets)
    assert {u: p for u, p in grown.items() if u != newcomer} == credentials.passwords
    assert auth_broker.proc is not None
    auth_broker.proc.send_signal(signal.SIGHUP)
    wait_for(lambda: session(newcomer, grown[newcomer]).accepted, what="the new station accepted")
    session(newcomer, grown[newcomer]).publish([(t(newcomer, "occupancy"), occupancy(1, 1, ts=now_ms()))])
    session(S1).publish([(t(S1, "occupancy"), occupancy(1, 1))])
    wait_for(lambda: len(watcher.messages) == 2, what="both stations' readings")
    assert watcher.disconnects == 0, "the reload dropped an existing client"
