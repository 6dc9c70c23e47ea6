"""Stats on the hot path: a message of one reading takes its own short way, with the same outcome."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from ingest.metrics import Metrics
from ingest.stats import Stats
from telemetry import registry

STATIONS = registry.load().reporting[:3]
NOW_MS = 1_795_000_000_000


def lags_of(stats: Stats) -> tuple[str, list[str]]:
    return stats.interval_point(NOW_MS, 0), stats.station_points(NOW_MS)


@given(st.lists(st.tuples(st.integers(0, 2), st.integers(-300_000, 600_000)), max_size=300),
       st.integers(1, 25_000))
def test_one_reading_way_equals_the_general_way(readings: list[tuple[int, int]], before: int) -> None:
    single, general = Stats(instance="a", metrics=Metrics()), Stats(instance="a", metrics=Metrics())
    for stats in (single, general):  # a prefix that fills the sample, so the stride is > 1 for the rest
        stats.readings(STATIONS[0], list(range(NOW_MS - before, NOW_MS)), NOW_MS)
    for station, lag in readings:
        single.reading(STATIONS[station], NOW_MS - lag, NOW_MS)
        general.readings(STATIONS[station], [NOW_MS - lag], NOW_MS)
    assert lags_of(single) == lags_of(general)


def test_sample_stays_bounded_and_spread_over_the_interval() -> None:
    stats = Stats(instance="a", metrics=Metrics())
    for i in range(100_000):
        stats.reading(STATIONS[0], NOW_MS - i, NOW_MS)
    point = stats.interval_point(NOW_MS, 0)
    assert "readings=100000i" in point
    p50 = int(point.split("lag_p50_ms=")[1].split("i")[0])
    assert 45_000 <= p50 <= 55_000  # the median of lags 0..99,999, from a sample across all of them
    [line] = stats.station_points(NOW_MS)
    assert "messages=100000i,lag_min_ms=0i," in line
    assert "lag_max_ms=99999i" in line
