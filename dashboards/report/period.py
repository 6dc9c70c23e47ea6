"""The period a report covers: a calendar month or year in Asia/Shanghai, as epoch milliseconds."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta

from telemetry.storage import BEIJING as TZ
from telemetry.storage import DAY_MS, HOUR_MS

_MONTH = re.compile(r"(\d{4})-(0[1-9]|1[0-2])")
_YEAR = re.compile(r"\d{4}")


@dataclass(slots=True, frozen=True, order=True)
class Period:
    """A month (``month`` 1-12) or a whole year (``month`` None) of Beijing time."""

    year: int
    month: int | None = None

    @classmethod
    def parse(cls, text: str) -> Period:
        """``2026-01`` (a month) or ``2026`` (a year)."""
        if m := _MONTH.fullmatch(text):
            return cls(int(m.group(1)), int(m.group(2)))
        if _YEAR.fullmatch(text):
            return cls(int(text))
        raise ValueError(f"expected a month YYYY-MM or a year YYYY, got {text!r}")

    @classmethod
    def month_of(cls, when: datetime) -> Period:
        """The month holding ``when`` (an aware datetime), in Beijing time."""
        local = when.astimezone(TZ)
        return cls(local.year, local.month)

    @property
    def is_year(self) -> bool:
        return self.month is None

    @property
    def name(self) -> str:
        """``2026-01`` or ``2026``: the report's file name without ``.pdf``."""
        return f"{self.year:04d}" if self.month is None else f"{self.year:04d}-{self.month:02d}"

    @property
    def title(self) -> str:
        return f"{self.year}年" if self.month is None else f"{self.year}年{self.month}月"

    @property
    def start(self) -> datetime:
        return datetime(self.year, self.month or 1, 1, tzinfo=TZ)

    @property
    def end(self) -> datetime:
        if self.month is None:
            return datetime(self.year + 1, 1, 1, tzinfo=TZ)
        return self.following().start

    @property
    def start_ms(self) -> int:
        return int(self.start.timestamp() * 1000)

    @property
    def end_ms(self) -> int:
        return int(self.end.timestamp() * 1000)

    @property
    def minutes(self) -> int:
        return (self.end_ms - self.start_ms) // 60_000

    def previous(self) -> Period:
        """The month (or year) before."""
        if self.month is None:
            return Period(self.year - 1)
        return Period(self.year - 1, 12) if self.month == 1 else Period(self.year, self.month - 1)

    def following(self) -> Period:
        if self.month is None:
            return Period(self.year + 1)
        return Period(self.year + 1, 1) if self.month == 12 else Period(self.year, self.month + 1)

    def year_before(self) -> Period:
        """The same month (or the year) a year before."""
        return Period(self.year - 1, self.month)

    def days(self) -> list[int]:
        """The start (epoch ms) of each Beijing day of the period."""
        return list(range(self.start_ms, self.end_ms, DAY_MS))

    def months(self) -> list[Period]:
        """The months of a year (a month: itself)."""
        return [self] if self.month is not None else [Period(self.year, m) for m in range(1, 13)]


def local_hour(ts_ms: int) -> int:
    """The hour of the Beijing day (0-23) that ``ts_ms`` falls in (UTC+8, no daylight saving)."""
    return int((ts_ms // HOUR_MS + 8) % 24)


def local_time(ts_ms: int) -> datetime:
    return datetime.fromtimestamp(ts_ms / 1000, TZ)


def due(now: datetime, delay: timedelta) -> Period:
    """The last month that closed at least ``delay`` before ``now``: the one whose report is due."""
    return Period.month_of(now - delay).previous()
