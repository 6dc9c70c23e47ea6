"""Line protocol: hostile strings are stored verbatim and never add a tag, a field or a point."""

from __future__ import annotations

import pytest

from ingest import lineprotocol
from telemetry import registry
from telemetry.codec import Reject
from telemetry.contract import Charger, RejectReason, Status
from tests.rig import Influxd

STATION = registry.load().by_id["PL-KT-001"]
HOSTILE = ["a,b=c d", 'quote" x', "back\\slash", "end\\", '\\"', "温度传感器 故障", "x=1i,y=2 3"]


@pytest.mark.parametrize("text", HOSTILE)
def test_lineprotocol_string_fields_round_trip_verbatim(influxd: Influxd, db: str, text: str) -> None:
    fault = text[:32]
    line = lineprotocol.reading(STATION, Charger(ts=1_795_000_000_000, seq=1, charger_id="C1", sockets_in_use=1,
                                                 power_w=1.0, energy_wh=2.0, fault=fault))
    reject = lineprotocol.reject(Reject(RejectReason.SCHEMA, text, text, text), 1_795_000_000_001)
    influxd.write(db, line + "\n" + reject)
    [charger] = influxd.rows("SELECT * FROM charger", db)
    assert charger["fault"] == fault
    assert set(charger) == {"time", "station", "district", "kind", "charger", "sockets_in_use", "sockets_total",
                            "power_w", "energy_wh", "fault", "seq"}
    [rej] = influxd.rows("SELECT * FROM ingest_rejects", db)
    assert (rej["station"], rej["topic"], rej["detail"], rej["reason"]) == (text, text, text, "schema")
    assert len(influxd.query("SHOW SERIES", db)[0]["values"]) == 2


def test_lineprotocol_control_characters_cannot_start_a_new_point(influxd: Influxd, db: str) -> None:
    text = "detail\nweather,city=x temp=1 1795000000000\r\n"
    influxd.write(db, lineprotocol.reject(Reject(RejectReason.BAD_JSON, "s", "t", text), 1_795_000_000_000))
    [rej] = influxd.rows("SELECT * FROM ingest_rejects", db)
    assert rej["detail"] == text.replace("\n", "\ufffd").replace("\r", "\ufffd")
    assert influxd.query("SHOW MEASUREMENTS", db)[0]["values"] == [["ingest_rejects"]]


def test_lineprotocol_status_fields_and_arrival_time() -> None:
    line = lineprotocol.status(STATION, Status(state="offline"), 123)
    assert line == "station_status,station=PL-KT-001,district=kongtong,kind=smart online=false 123"
    line = lineprotocol.status(STATION, Status(state="online", ts=5, fw='1.0 "beta"', buffered=2), 123)
    assert line == ('station_status,station=PL-KT-001,district=kongtong,kind=smart online=true,buffered=2i,'
                    'fw="1.0 \\"beta\\"" 5')


def test_lineprotocol_tag_escaping() -> None:
    assert lineprotocol.tag("a b,c=d") == "a\\ b\\,c\\=d"


def test_lineprotocol_batch_encoding_equals_one_by_one() -> None:
    from telemetry.contract import Occupancy  # noqa: PLC0415
    rs = [Occupancy(ts=1, seq=1, people=2), Occupancy(ts=2, seq=2, people=3, entries=4, exits=1),
          Occupancy(ts=3, seq=3, people=1, entries=5)]
    assert lineprotocol.readings(STATION, list(rs)) == [lineprotocol.reading(STATION, r) for r in rs]
