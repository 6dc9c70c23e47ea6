"""What the simulator prints: a progress line while it runs, a table per station at the end."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Final

from simulator.faults import MALFORMED_KINDS
from simulator.simulation import Progress, StationTally, Summary

_LOCAL: Final = timezone(timedelta(hours=8))
SHORT: Final = {"bad_json": "json", "schema": "schema", "unknown_kind": "kind", "unknown_station": "stn",
                "too_large": "large", "ts_out_of_range": "ts", "bad_topic": "topic"}
_COLUMNS: Final = ("produced", "acked", "buffered", "dropped", "drv_err", "reboots")
_FIELDS: Final = ("produced", "acknowledged", "buffered", "dropped", "driver_errors", "reboots")  # of each column


def local_time(t: float) -> str:
    return datetime.fromtimestamp(t, _LOCAL).strftime("%Y-%m-%d %H:%M:%S")


def progress_line(p: Progress) -> str:
    return (f"sim {local_time(p.sim_time)} (+08:00) | real {p.real_seconds:6.1f} s | stations {p.booted}/{p.stations} "
            f"up, {p.connected} connected | readings {p.produced:,} produced, {p.acknowledged:,} acked, "
            f"{p.buffered:,} buffered | malformed {p.malformed:,}")


def _row(name: str, t: StationTally) -> list[str]:
    return [name, *(f"{getattr(t, f):,}" for f in _FIELDS),
            *(f"{t.malformed.get(k.value, 0):,}" for k in MALFORMED_KINDS)]


def summary_table(s: Summary) -> str:
    """One row per station and a total: readings produced, acknowledged, still buffered, ...,
    and the malformed payloads sent (acknowledged by the broker) by kind."""
    header = ["station", *_COLUMNS, *(SHORT[k.value] for k in MALFORMED_KINDS)]
    total = StationTally("total", malformed=s.malformed())
    for name in _FIELDS:
        setattr(total, name, s.total(name))
    rows = [header, *(_row(t.station, t) for t in s.stations), _row("total", total)]
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]

    def line(r: list[str]) -> str:
        return "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths, strict=True)))

    rule = "-" * len(line(header))
    legend = "malformed payloads sent, by reject kind: " + ", ".join(
        f"{SHORT[k.value]}={k.value}" for k in MALFORMED_KINDS)
    period = (f"simulated {local_time(s.start)} .. {local_time(s.end)} (+08:00) "
              f"in {s.real_seconds:.1f} s real time, {len(s.stations)} stations")
    return "\n".join([period, rule, line(header), rule, *(line(r) for r in rows[1:-1]), rule, line(rows[-1]),
                      legend])
