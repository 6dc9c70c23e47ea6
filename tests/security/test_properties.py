"""Property tests over ingest's receive path (decode, encode, count): whatever a message holds, it becomes
well-formed points of the station its topic names, or counted rejects, one per refused reading, and
never anything that could add a point, a tag or a field of its own to InfluxDB.

tests/telemetry/test_codec.py checks the decoder alone (never raises, fast path equals reference
path); these go one step further, to the line protocol ingest writes and the counters it keeps.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ingest.metrics import Metrics
from ingest.pipeline import Pipeline
from ingest.spool import Spool
from telemetry import registry
from telemetry.contract import MAX_BATCH, RejectReason

REG = registry.load()
NOW_MS = 1_795_000_000_000
STATIONS = ["PL-KT-001", "PL-JN-001", "PL-KT-042", "PL-KT-999", "", "PL-KT-001,station=PL-KT-002", 'a" b=1',
            "x\ny", "站"]
KINDS = ["occupancy", "charger", "temperature", "status", "config", "humidity", "occupancy people=1i", ""]
HOSTILE_TEXT = ['E" people=9i,x=1 1', "a\nb", "\\", 'x\\" y', "C1,station=PL-KT-002", "in door", "\ufeff", "\ud800",
                "indoor", "outdoor", "C1", "C2", "online", "offline", "2026-11-18T08:26:40+08:00", "x" * 300]
HOSTILE_NUMBERS = [0, 1, -1, 3, 10, 1000, 1001, 2**63, -(2**63), 10**30, NOW_MS, NOW_MS + 400_000, 1.5, 1e308,
                   -1e308, 1e-320, float("nan"), float("inf"), True, None]
FIELDS: dict[str, dict[str, Any]] = {
    "occupancy": {"people": 3, "entries": 10, "exits": 7},
    "charger": {"charger_id": "C1", "sockets_in_use": 2, "power_w": 410.5, "energy_wh": 12.25, "fault": "E07"},
    "temperature": {"sensor": "indoor", "celsius": 18.5, "humidity_pct": 40},
    "status": {"state": "online", "fw": "1.0", "uptime_s": 5, "buffered": 0, "config_rev": "default", "error": "x"},
}
MEASUREMENTS = {"occupancy": ("occupancy", {"station", "district", "kind"}),
                "charger": ("charger", {"station", "district", "kind", "charger"}),
                "temperature": ("temperature", {"station", "district", "kind", "sensor"}),
                "status": ("station_status", {"station", "district", "kind"})}


@st.composite
def readings(draw: st.DrawFn, kind: str) -> Any:
    """A valid reading of ``kind``, often damaged: a field dropped, added or set to a hostile value."""
    doc: dict[str, Any] = {"ts": NOW_MS - draw(st.integers(0, 10_000)), "seq": draw(st.integers(0, 50))}
    if kind == "status":
        doc.pop("seq")
    doc.update(FIELDS.get(kind, FIELDS["occupancy"]))
    for _ in range(draw(st.integers(0, 3))):
        key = draw(st.sampled_from([*doc, "extra", "x\ny", "\ud800"]))
        match draw(st.integers(0, 2)):
            case 0:
                doc.pop(key, None)
            case 1:
                doc[key] = draw(st.sampled_from(HOSTILE_TEXT))
            case _:
                doc[key] = draw(st.sampled_from(HOSTILE_NUMBERS))
    return doc


@st.composite
def messages(draw: st.DrawFn) -> tuple[str, bytes]:
    station, kind = draw(st.sampled_from(STATIONS)), draw(st.sampled_from(KINDS))
    topic = draw(st.one_of(st.just(f"stations/v1/{station}/{kind}"), st.text(max_size=60)))
    shape = draw(st.integers(0, 5))
    if shape == 0:
        return topic, draw(st.binary(max_size=400))
    if shape == 1:
        value = draw(st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
                                  lambda inner: st.lists(inner, max_size=4) | st.dictionaries(
                                      st.text(max_size=8), inner, max_size=4), max_leaves=20))
        return topic, json.dumps(value).encode()
    items = draw(st.lists(readings(kind), min_size=0 if shape == 5 else 1, max_size=6))
    doc: Any = items[0] if shape == 2 and items else items
    raw = json.dumps(doc, separators=draw(st.sampled_from([(",", ":"), (", ", ": ")])),
                     ensure_ascii=draw(st.booleans())).encode("utf-8", "surrogatepass")
    if draw(st.integers(0, 7)) == 0 and raw:  # damage a byte
        pos = draw(st.integers(0, len(raw) - 1))
        raw = raw[:pos] + draw(st.binary(min_size=1, max_size=2)) + raw[pos + 1:]
    return topic, raw


def parse_line(line: str) -> tuple[str, dict[str, str], dict[str, str], int]:
    """InfluxDB line protocol, strictly: measurement[,tag=value...] field=value[,...] timestamp."""
    assert "\n" not in line, "a line break would start a new point"
    assert "\r" not in line
    i, n = 0, len(line)

    def token(stops: str) -> str:
        nonlocal i
        out = []
        while i < n and line[i] not in stops:
            if line[i] == "\\" and i + 1 < n:
                i += 1
            out.append(line[i])
            i += 1
        return "".join(out)

    measurement, tags, fields = token(", "), {}, {}
    while i < n and line[i] == ",":
        i += 1
        key = token("=")
        assert line[i] == "="
        i += 1
        assert key not in tags, f"duplicate tag {key}"
        tags[key] = token(", ")
    assert line[i] == " ", line
    i += 1
    while True:
        key = token("=")
        assert line[i] == "=", line
        i += 1
        assert key not in fields, f"duplicate field {key}"
        if line[i] == '"':
            i += 1
            value = []
            while line[i] != '"':
                if line[i] == "\\" and line[i + 1] in '"\\':
                    i += 1
                value.append(line[i])
                i += 1
            i += 1
            fields[key] = "".join(value)
        else:
            fields[key] = token(", ")
        if line[i] == " ":
            break
        assert line[i] == ",", line
        i += 1
    i += 1
    ts = line[i:]
    assert ts.lstrip("-").isdigit(), f"timestamp {ts!r}"
    return measurement, tags, fields, int(ts)


def pipeline(directory: Path) -> Pipeline:
    return Pipeline(registry=REG, writer=None, spool=Spool(directory=directory, max_bytes=1 << 20),  # type: ignore[arg-type]
                    metrics=Metrics(), batch_points=10**9, clock=lambda: NOW_MS / 1000)


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(message=messages())
def test_property_every_message_becomes_points_of_its_station_or_counted_rejects(message: tuple[str, bytes]) -> None:
    topic, payload = message
    with tempfile.TemporaryDirectory() as tmp:
        p = pipeline(Path(tmp))
        p.on_message(topic, payload, (1, 7))
        lines, monitor, tokens = p._current.lines, p._current.monitor, p._current.tokens
        counted = sum(p._metrics.counts.rejects.values())
    assert tokens == [(1, 7)], "every message is acknowledged exactly once"
    parsed = [parse_line(line) for line in lines + monitor]
    assert all(parse_line(line)[0] == "ingest_rejects" for line in monitor), "rejects alone go to the monitor tier"
    rejects = [x for x in parsed if x[0] == "ingest_rejects"]
    points = [x for x in parsed if x[0] != "ingest_rejects"]
    assert len(rejects) == counted, "every reject is counted once and stored once"
    for _, tags, fields, _ in rejects:
        assert set(tags) == {"reason"}
        assert tags["reason"] in {r.value for r in RejectReason}
        assert set(fields) == {"station", "topic", "detail"}
        assert all(len(v) <= 256 for v in fields.values())

    levels = topic.split("/")
    kind = levels[3] if len(levels) == 4 and levels[:2] == ["stations", "v1"] else None
    station = REG.get(levels[2]) if kind else None
    if kind == "config" and station is not None:
        assert (points, rejects) == ([], []), "the cloud's config is neither stored nor rejected"
        return
    assert points or rejects, "a message vanished"
    if points:
        assert station is not None
        assert kind in MEASUREMENTS
        measurement, tag_keys = MEASUREMENTS[kind]
        for name, tags, _fields, ts in points:
            assert (name, set(tags), tags["station"]) == (measurement, tag_keys, station.id)
            assert abs(ts - NOW_MS) <= 7 * 86400_000
    try:
        doc = json.loads(payload)
    except (ValueError, RecursionError):
        return
    if station is not None and kind in ("occupancy", "charger", "temperature"):
        if isinstance(doc, list) and 1 <= len(doc) <= MAX_BATCH and not (len(rejects) == 1 and not points):
            assert len(points) + len(rejects) == len(doc), "each reading of a batch is stored or rejected"
        else:
            assert (len(points), len(rejects)) in ((1, 0), (0, 1)), "one reading: stored, or one reject"
    elif station is not None and kind == "status":
        assert (len(points), len(rejects)) in ((1, 0), (0, 1))
