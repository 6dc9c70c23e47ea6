"""The rollup definition (docs/rollups.md) computed in plain Python from raw points read back, to
check ingest's rollups against: one loop per series, no InfluxQL aggregate involved. The daily
points are the hourly ones of each Beijing day, added up by the rules written out here."""

from __future__ import annotations

import time
from collections import defaultdict
from typing import Any

from ingest.rollup import SPECS
from telemetry.contract import MAX_AGE_MS
from telemetry.storage import DAY_MS, DAY_OF, HOUR_MS, ROLLUPS, STATION_1H, day_of
from tests.rig import Influxd

Key = tuple[str, tuple[tuple[str, str], ...], int]
TAGS = ("station", "district", "kind", "charger", "sensor")
_DAY_MAX = frozenset({"people_max", "sockets_in_use_max", "sockets_total", "power_w_max", "celsius_max", "seq_last"})
_DAY_MIN = frozenset({"celsius_min", "seq_first"})
_MEANS = {"people_mean": "people_sum", "sockets_in_use_mean": "sockets_in_use_sum", "power_w_mean": "power_w_sum",
          "celsius_mean": "celsius_sum"}


def raw_points(influxd: Influxd, db: str, measurement: str) -> list[dict[str, Any]]:
    return influxd.rows(f'SELECT * FROM "autogen"."{measurement}"', db)


def _series_rows(rows: list[dict[str, Any]]) -> dict[tuple[tuple[str, str], ...], list[dict[str, Any]]]:
    out: dict[tuple[tuple[str, str], ...], list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        out[tuple(sorted((k, row[k]) for k in TAGS if row.get(k)))].append(row)
    return {tags: sorted(rs, key=lambda r: r["time"]) for tags, rs in out.items()}


def expected(influxd: Influxd, db: str, *, start_ms: int = 0, end_ms: int = 2**62,
             now_ms: int | None = None) -> dict[Key, dict[str, float]]:
    """Every rollup point of the hours in ``[start_ms, end_ms)``, as (measurement, tags, hour) -> fields,
    and the daily points of their days that have ended by ``now_ms`` (default: now; :func:`days`)."""
    out: dict[Key, dict[str, Any]] = {}
    for spec in SPECS:
        for tags, rows in _series_rows(raw_points(influxd, db, spec.raw)).items():
            prev: dict[str, Any] | None = None
            for row in rows:
                t = row["time"]
                hour = t - t % HOUR_MS
                step = 0.0
                if spec.counter and row.get(spec.counter) is not None:
                    if prev is not None and prev["time"] >= hour - MAX_AGE_MS:
                        step = max(0, row[spec.counter] - prev[spec.counter])
                    prev = row
                if not start_ms <= hour < end_ms:
                    continue
                acc = out.setdefault((spec.rollup, tags, hour), {"readings": 0, "_minutes": set(), "_rows": []})
                acc["readings"] += 1
                acc["_minutes"].add(t // 60000)
                acc["_rows"].append(row)
                if spec.counter:
                    acc[spec.steps] = acc.get(spec.steps, 0) + step
    hourly = _finish(out)
    ended = int(time.time() * 1000) if now_ms is None else now_ms
    return hourly | {k: v for k, v in days(hourly).items() if k[2] + DAY_MS <= ended}


def days(hourly: dict[Key, dict[str, float]]) -> dict[Key, dict[str, float]]:
    """The daily points of hourly ones: per Beijing day, maxima the max, minima the min, means the
    day's sum over its readings, every other field the sum."""
    out: dict[Key, dict[str, float]] = {}
    for (measurement, tags, hour), fields in sorted(hourly.items()):
        key = (DAY_OF[measurement], tags, day_of(hour))
        if (acc := out.get(key)) is None:
            out[key] = dict(fields)
            continue
        for name, value in fields.items():
            acc[name] = max(acc[name], value) if name in _DAY_MAX else min(acc[name], value) if name in _DAY_MIN \
                else acc[name] + value
    for fields in out.values():
        for mean, total in _MEANS.items():
            if mean in fields:
                fields[mean] = fields[total] / fields["readings"]
    return out


def _finish(acc: dict[Key, dict[str, Any]]) -> dict[Key, dict[str, float]]:
    by_spec = {spec.rollup: spec for spec in SPECS}
    out: dict[Key, dict[str, float]] = {}
    stations: dict[Key, dict[str, float]] = {}
    for (measurement, tags, hour), a in acc.items():
        spec = by_spec[measurement]
        rows = a.pop("_rows")
        fields: dict[str, float] = {"readings": a.pop("readings"), "minutes": len(a.pop("_minutes")),
                                    "expected": spec.expected, **a}
        for fn, field, alias in spec.aggregates:
            values = [r[field] for r in rows]
            fields[alias] = min(values) if fn == "min" else max(values) if fn == "max" else sum(values)
        for mean, total in spec.means:
            fields[mean] = fields[total] / fields["readings"]
        if spec.fault:
            fields["fault_minutes"] = len({r["time"] // 60000 for r in rows if r.get(spec.fault)})
        out[measurement, tags, hour] = fields
        seqs = [r["seq"] for r in rows]
        skey = (STATION_1H, tuple((k, v) for k, v in tags if k in ("district", "kind", "station")), hour)
        s = stations.setdefault(skey, {"readings": 0, "seq_count": 0, "seq_first": min(seqs), "seq_last": max(seqs)})
        s["readings"] += len(rows)
        s["seq_count"] += len(rows)
        s["seq_first"], s["seq_last"] = min(s["seq_first"], *seqs), max(s["seq_last"], *seqs)
    return out | stations


def stored(influxd: Influxd, db: str) -> dict[Key, dict[str, float]]:
    """The rollup points in the ``rollup`` tier, hourly and daily, keyed like :func:`expected`."""
    out: dict[Key, dict[str, float]] = {}
    for measurement in ROLLUPS:
        for series in influxd.query(f'SELECT * FROM "rollup"."{measurement}" GROUP BY *', db):
            tags = tuple(sorted((k, v) for k, v in series.get("tags", {}).items() if v))
            for values in series["values"]:
                row = dict(zip(series["columns"], values, strict=True))
                hour = row.pop("time")
                out[measurement, tags, hour] = {k: v for k, v in row.items() if v is not None}
    return out


def assert_equal(got: dict[Key, dict[str, float]], want: dict[Key, dict[str, float]]) -> None:
    """Same points, same fields; floats equal to 1e-9 relative (sums taken in another order)."""
    missing, extra = want.keys() - got.keys(), got.keys() - want.keys()
    assert not missing, f"missing {sorted(missing)[:5]}"
    assert not extra, f"extra {sorted(extra)[:5]}"
    for key, fields in want.items():
        assert got[key].keys() == fields.keys(), f"{key}: fields {sorted(got[key])} != {sorted(fields)}"
        for name, value in fields.items():
            assert abs(got[key][name] - value) <= 1e-9 * max(1.0, abs(value)), f"{key} {name}: {got[key][name]} != {value}"
