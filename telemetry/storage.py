"""Where the data lives in InfluxDB: retention tiers and the measurements of each.

Every package that reads or writes InfluxDB names its measurements through this module. InfluxDB
1.x keeps the three tiers as retention policies of the one database; 2.x/3.x as buckets mapped to
the same database and retention policy names (DBRP), so one InfluxQL text reads both.

- ``autogen`` (the database's default, raw readings: ``occupancy``, ``charger``, ``temperature``,
  ``station_status``; default 400 days)
- ``rollup`` (hourly and daily rollups, :data:`ROLLUPS`; default 10 years), defined in ``docs/rollups.md``
- ``monitor`` (ingest's own ``ingest_stats``, ``ingest_station_lag``, ``ingest_rejects``; 30 days)
"""

from __future__ import annotations

from enum import StrEnum
from typing import Final
from zoneinfo import ZoneInfo

HOUR_MS: Final = 3600 * 1000
DAY_MS: Final = 24 * HOUR_MS
BEIJING: Final = ZoneInfo("Asia/Shanghai")
"""The union's time zone: its days, months and years are Beijing time's (UTC+8, no daylight saving)."""
_BEIJING_OFFSET_MS: Final = 8 * HOUR_MS


class Tier(StrEnum):
    """A retention policy (1.x) or the bucket mapped to it (2.x/3.x)."""

    RAW = "autogen"
    ROLLUP = "rollup"
    MONITOR = "monitor"


OCCUPANCY_1H: Final = "occupancy_1h"
CHARGER_1H: Final = "charger_1h"
TEMPERATURE_1H: Final = "temperature_1h"
STATION_1H: Final = "station_1h"
HOURLY: Final = (OCCUPANCY_1H, CHARGER_1H, TEMPERATURE_1H, STATION_1H)
OCCUPANCY_1D: Final = "occupancy_1d"
CHARGER_1D: Final = "charger_1d"
TEMPERATURE_1D: Final = "temperature_1d"
STATION_1D: Final = "station_1d"
DAILY: Final = (OCCUPANCY_1D, CHARGER_1D, TEMPERATURE_1D, STATION_1D)
DAY_OF: Final = dict(zip(HOURLY, DAILY, strict=True))
"""Each hourly rollup's daily one (Beijing days, computed from the hours)."""
ROLLUPS: Final = (*HOURLY, *DAILY)

INGEST_STATS: Final = "ingest_stats"
INGEST_STATION_LAG: Final = "ingest_station_lag"
INGEST_REJECTS: Final = "ingest_rejects"
MONITOR_MEASUREMENTS: Final = frozenset({INGEST_STATS, INGEST_STATION_LAG, INGEST_REJECTS})


def qualified(tier: Tier, measurement: str) -> str:
    """``"rollup"."occupancy_1h"``: a measurement of a tier, quoted for InfluxQL's FROM."""
    return f'"{tier.value}"."{measurement}"'


def hour_of(ts_ms: int) -> int:
    """The start of the hour (UTC, which is also Beijing time's hour) holding ``ts_ms``."""
    return ts_ms - ts_ms % HOUR_MS


def day_of(ts_ms: int) -> int:
    """The start of the Beijing day holding ``ts_ms`` (InfluxQL's ``GROUP BY time(1d, -8h)``)."""
    return (ts_ms + _BEIJING_OFFSET_MS) // DAY_MS * DAY_MS - _BEIJING_OFFSET_MS
