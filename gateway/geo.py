"""Nearest stations quickly: a grid over the registry's locations, searched ring by ring from the rider."""

from __future__ import annotations

import heapq
import math
from collections import defaultdict
from collections.abc import Callable, Iterable

from telemetry.registry import Station

_EARTH_M = 6_371_000.0


def distance_m(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Great-circle distance (haversine)."""
    p1, p2, dl = math.radians(lat1), math.radians(lat2), math.radians(lon2 - lon1)
    a = math.sin((p2 - p1) / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * _EARTH_M * math.asin(math.sqrt(a))


class GeoIndex:
    """Stations bucketed in cells of ``cell_deg`` degrees; the search stops once no unseen cell can be closer."""

    def __init__(self, stations: Iterable[Station], *, cell_deg: float = 0.05) -> None:
        self._cell = cell_deg
        self._grid: dict[tuple[int, int], list[Station]] = defaultdict(list)
        for station in stations:
            self._grid[self._key(station.location.lat, station.location.lon)].append(station)
        self._max_lat = max((abs(s.location.lat) for cell in self._grid.values() for s in cell), default=0.0)

    def _key(self, lat: float, lon: float) -> tuple[int, int]:
        return math.floor(lat / self._cell), math.floor(lon / self._cell)

    def nearest(self, lat: float, lon: float, limit: int,
                accept: Callable[[Station], bool]) -> list[tuple[float, Station]]:
        """The ``limit`` nearest accepted stations, closest first, with their distance in metres."""
        if not self._grid:
            return []
        ci, cj = self._key(lat, lon)
        reach = max(max(abs(i - ci), abs(j - cj)) for i, j in self._grid)
        # every point outside ring r is at least this far (a cell's narrowest side, at the widest latitude)
        ring_m = self._cell * math.pi / 180 * _EARTH_M * math.cos(math.radians(min(89.0, max(self._max_lat,
                                                                                            abs(lat)))))
        found: list[tuple[float, str, Station]] = []
        for r in range(reach + 1):
            if 8 * r > len(self._grid):  # far from every station: a ring costs more than all the stations
                return self._scan(lat, lon, limit, accept)
            for key in self._ring(ci, cj, r):
                found.extend((distance_m(lat, lon, s.location.lat, s.location.lon), s.id, s)
                             for s in self._grid.get(key, ()) if accept(s))
            if len(found) >= limit and heapq.nsmallest(limit, found)[-1][0] <= r * ring_m:
                break
        return [(d, s) for d, _, s in heapq.nsmallest(limit, found)]

    def _scan(self, lat: float, lon: float, limit: int,
              accept: Callable[[Station], bool]) -> list[tuple[float, Station]]:
        found = [(distance_m(lat, lon, s.location.lat, s.location.lon), s.id, s)
                 for cell in self._grid.values() for s in cell if accept(s)]
        return [(d, s) for d, _, s in heapq.nsmallest(limit, found)]

    @staticmethod
    def _ring(ci: int, cj: int, r: int) -> Iterable[tuple[int, int]]:
        if r == 0:
            yield ci, cj
            return
        for d in range(-r, r + 1):
            yield ci - r, cj + d
            yield ci + r, cj + d
        for d in range(-r + 1, r):
            yield ci + d, cj - r
            yield ci + d, cj + r
