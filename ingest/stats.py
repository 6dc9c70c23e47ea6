"""Pipeline statistics written into InfluxDB itself, so dashboards need no Prometheus.

Every ``interval`` (10 s) one ``ingest_stats`` point (tag ``instance``): messages (new ones),
redelivered (DUP redeliveries and retained repeats, apart), sessions_lost, readings, rejects,
points written, spool size, write latency, pending points, and the lag between a reading's
device ``ts`` and its arrival (p50/p99, from a uniform sample of the interval's readings). Every
``station_interval`` (60 s) one ``ingest_station_lag`` point per station heard from (tags station,
district): the lag of its newest reading per message (min, median, max), which shows clocks that
drift (persistently negative) or readings that arrive late while the station is online.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ingest.lineprotocol import tag
from ingest.metrics import Metrics
from telemetry.registry import Station

_SAMPLE = 10_000
_STATION_SAMPLE = 64


@dataclass(slots=True)
class _StationLag:
    district: str
    low: int
    high: int
    lags: list[int] = field(default_factory=list)
    count: int = 0


def _quantile(ordered: list[int], q: float) -> int:
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


class Stats:
    """Collects lags on the hot path; renders the periodic points.

    Args:
        instance: tag of this ingest process (its MQTT client id).
    """

    def __init__(self, *, instance: str, metrics: Metrics) -> None:
        self._instance = tag(instance)
        self._metrics = metrics
        self._lags: list[int] = []
        self._stride = 1
        self._skip = 0
        self._readings = 0
        self._stations: dict[str, _StationLag] = {}
        self._last: dict[str, float] = {}
        self._write_sum = 0.0
        self._write_count = 0
        self._write_max = 0.0

    def readings(self, station: Station, ts_list: list[int], arrival_ms: int) -> None:
        """Record the readings of one message (hot path: a few operations per reading)."""
        self._readings += len(ts_list)
        # a systematic sample: every reading until the sample is full, then every 2nd, 4th, ...
        stride = self._stride
        if stride == 1:
            self._lags.extend(arrival_ms - ts for ts in ts_list)
        else:
            offset = self._skip
            self._lags.extend(arrival_ms - ts for ts in ts_list[offset::stride])
            self._skip = (offset - len(ts_list)) % stride
        if len(self._lags) >= _SAMPLE:
            self._thin()
        self._station_lag(station, arrival_ms - max(ts_list))

    def reading(self, station: Station, ts: int, arrival_ms: int) -> None:
        """:meth:`readings` for a message of one reading (the common message: its own short way)."""
        self._readings += 1
        lag = arrival_ms - ts
        offset = self._skip
        if offset == 0:
            self._lags.append(lag)
        if self._stride > 1:
            self._skip = (offset - 1) % self._stride
        if len(self._lags) >= _SAMPLE:
            self._thin()
        self._station_lag(station, lag)

    def _thin(self) -> None:
        self._lags = self._lags[::2]
        self._stride *= 2

    def _station_lag(self, station: Station, newest: int) -> None:
        entry = self._stations.get(station.id)
        if entry is None:
            entry = self._stations[station.id] = _StationLag(station.district, newest, newest)
        entry.count += 1
        if newest < entry.low:
            entry.low = newest
        elif newest > entry.high:
            entry.high = newest
        if len(entry.lags) < _STATION_SAMPLE:  # the median from a sample; min and max from every message
            entry.lags.append(newest)

    def write_took(self, seconds: float) -> None:
        self._write_sum += seconds
        self._write_count += 1
        self._write_max = max(self._write_max, seconds)

    def _delta(self, name: str, value: float) -> float:
        previous = self._last.get(name, 0.0)
        self._last[name] = value
        return value - previous

    def interval_point(self, now_ms: int, pending_points: int) -> str:
        """The ``ingest_stats`` line for the interval that ends now; resets the interval."""
        m = self._metrics
        c = m.counts
        fields = [
            f"messages={int(self._delta('messages', c.messages))}i",
            f"readings={self._readings}i",
            f"rejects={int(self._delta('rejects', sum(c.rejects.values())))}i",
            f"redelivered={int(self._delta('redelivered', c.redelivered))}i",
            f"sessions_lost={int(self._delta('sessions_lost', c.sessions_lost))}i",
            f"points_written={int(self._delta('points', c.points_written))}i",
            f"spool_bytes={int(m.gauge(m.spool_bytes))}i",
            f"spool_batches={int(m.gauge(m.spool_batches))}i",
            f"pending_points={pending_points}i",
            f"writes={self._write_count}i",
            f"mqtt_connected={'true' if m.gauge(m.mqtt_connected) else 'false'}",
            f"influx_up={'true' if m.gauge(m.influx_up) else 'false'}",
        ]
        if self._write_count:
            fields.append(f"write_ms_mean={self._write_sum / self._write_count * 1000:.3f}")
            fields.append(f"write_ms_max={self._write_max * 1000:.3f}")
        if self._lags:
            ordered = sorted(self._lags)
            fields.append(f"lag_p50_ms={_quantile(ordered, 0.5)}i")
            fields.append(f"lag_p99_ms={_quantile(ordered, 0.99)}i")
        self._lags, self._stride, self._skip, self._readings = [], 1, 0, 0
        self._write_sum, self._write_count, self._write_max = 0.0, 0, 0.0
        return f"ingest_stats,instance={self._instance} {','.join(fields)} {now_ms}"

    def station_points(self, now_ms: int) -> list[str]:
        """One ``ingest_station_lag`` line per station heard from since the last call."""
        lines = []
        for station_id, entry in self._stations.items():
            p50 = _quantile(sorted(entry.lags), 0.5)
            lines.append(f"ingest_station_lag,station={tag(station_id)},district={tag(entry.district)} "
                         f"messages={entry.count}i,lag_min_ms={entry.low}i,lag_p50_ms={p50}i,"
                         f"lag_max_ms={entry.high}i {now_ms}")
        self._stations = {}
        return lines
