"""The grid search finds exactly what comparing every station would."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.geo import GeoIndex, distance_m
from simulator.synthetic import make_registry
from telemetry import registry

STATIONS = registry.parse(make_registry(2000, seed=3, as_json=True)).stations
INDEX = GeoIndex(STATIONS)


@settings(max_examples=100, deadline=None)
@given(lat=st.one_of(st.floats(34.5, 36.0), st.floats(-90, 90)),
       lon=st.one_of(st.floats(105.0, 108.5), st.floats(-180, 180)), limit=st.integers(1, 20),
       modulo=st.integers(1, 50))
def test_geo_nearest_equals_brute_force(lat: float, lon: float, limit: int, modulo: int) -> None:
    def accept(s: object) -> bool:
        return int(getattr(s, "id")[-4:]) % modulo == 0  # noqa: B009 - any filter will do

    expected = sorted((distance_m(lat, lon, s.location.lat, s.location.lon), s.id) for s in STATIONS if accept(s))
    got = [(d, s.id) for d, s in INDEX.nearest(lat, lon, limit, accept)]
    assert got == expected[:limit]


def test_geo_far_away_and_empty() -> None:
    assert [s.id for _, s in INDEX.nearest(0.0, 0.0, 1, lambda _s: True)]  # finds the closest, however far
    assert INDEX.nearest(35.5, 106.6, 3, lambda _s: False) == []
    assert GeoIndex([]).nearest(35.5, 106.6, 3, lambda _s: True) == []
