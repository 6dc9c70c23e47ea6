"""Open ``seq`` gaps: readings a station produced that never arrived (or have not arrived yet).

``seq`` counts a station's readings of every kind, +1 each, so over a range the station produced
``max(seq) - min(seq) + 1`` readings and we hold ``count(seq)`` of them: the difference is the
gaps still open. A replay that delivers the missing readings later closes them, because the count
is taken from what InfluxDB holds now (a late reading recomputes its hour's rollup).

Queries (InfluxQL cannot union measurements):

- the closed hours from the ``station_1h`` rollups: ``received``, ``first_seq``, ``end_seq``;
- the open hour's readings of each raw measurement, ``received_<measurement>``
  (:func:`dashboards.rollups.newest_hour`); a name each, so that Grafana's merge never takes two
  equal counts for one;
- the first and last ``seq`` of the range's last hour (:data:`dashboards.rollups.HOUR_WINDOW`),
  raw, of every measurement in one query: it holds the open hour, and a minimum and a maximum can
  take the closed hours' readings again.

The panel merges the frames, groups them by station (sums of counts, min of firsts, max of ends)
and adds up the counts, then two calculations.
"""

from __future__ import annotations

from typing import Final

from dashboards import rollups
from dashboards.builder import Query, Transformation, binary, group_by, merge, organize, sum_of
from dashboards.influxql import TIME, m, select, tags, where
from telemetry.storage import STATION_1H

MEASUREMENTS: Final = ("occupancy", "charger", "temperature")
RECEIVED: Final = "received"
FIRST: Final = "first_seq (min)"
END: Final = "end_seq (max)"
PRODUCED: Final = "produced"
GAPS: Final = "seq_gaps"
_OPEN: Final = tuple(f"received_{measurement}" for measurement in MEASUREMENTS)
_SUMS: Final = ("received (sum)", *(f"{name} (sum)" for name in _OPEN))
PARTS: Final = (FIRST, END, *_SUMS)
"""The fields the calculations are made of, for the panels to hide."""
_ENDS: Final = 'min("seq") AS "first_seq", max("seq") + 1 AS "end_seq"'


def _open_hour(measurement: str, name: str, condition: str, group: tuple[str, ...]) -> Query:
    hour = rollups.newest_hour(f'count("seq") AS "{name}"', m(measurement), condition, per=group)
    return Query(hour, columns=(*group, name), table=True)


def queries(condition: str, group: tuple[str, ...]) -> tuple[Query, ...]:
    """The closed hours' ``received``, ``first_seq`` and ``end_seq`` (max + 1) per group, each raw
    measurement's ``received_<measurement>`` in the open hour, and the raw ends of the last hour."""
    closed = rollups.closed('sum("seq_count") AS "received", min("seq_first") AS "first_seq", '
                            'max("seq_last") + 1 AS "end_seq"', STATION_1H, condition, group=tags(*group))
    ends = select(_ENDS, ", ".join(m(measurement) for measurement in MEASUREMENTS),
                  conditions=where(TIME, rollups.HOUR_WINDOW, condition), group=tags(*group))
    return (Query(closed, columns=(*group, "received", "first_seq", "end_seq"), table=True),
            *(_open_hour(measurement, name, condition, group) for measurement, name in zip(MEASUREMENTS, _OPEN,
                                                                                         strict=True)),
            Query(ends, columns=(*group, "first_seq", "end_seq"), table=True))


def transformations(group: tuple[str, ...],
                    extra: dict[str, tuple[str, ...]] | None = None) -> tuple[Transformation, ...]:
    """From the frames (and any ``extra`` fields, aggregated as given) to one row per group with
    ``received``, ``produced`` and ``seq_gaps`` (and the :data:`PARTS` they are made of)."""
    aggregate = {"received": ("sum",), **dict.fromkeys(_OPEN, ("sum",)), "first_seq": ("min",),
                 "end_seq": ("max",), **(extra or {})}
    return (
        organize(exclude=("Time",)),  # each query's own time: without it, rows merge on the group alone
        merge(),
        group_by(group, aggregate),
        sum_of(_SUMS, RECEIVED),  # in a day's first hour the closed hours' query has no row
        binary(END, "-", FIRST, PRODUCED),
        binary(PRODUCED, "-", RECEIVED, GAPS),
    )
