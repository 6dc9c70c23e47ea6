"""Open ``seq`` gaps: readings a station produced that never arrived (or have not arrived yet).

``seq`` counts a station's readings of every kind, +1 each, so over a range the station produced
``max(seq) - min(seq) + 1`` readings and we hold ``count(seq)`` of them: the difference is the
gaps still open. A replay that delivers the missing readings later closes them, because the count
is taken from what InfluxDB holds now.

InfluxQL cannot union measurements, so each measurement is one query (count, first and end of
its ``seq``) and the panel combines them per station: merge the frames, group by station (sum of
counts, min of firsts, max of ends), then two calculations.
"""

from __future__ import annotations

from typing import Final

from dashboards.builder import Query, Transformation, binary, group_by, merge, organize
from dashboards.influxql import TIME, m, select, tags, where

MEASUREMENTS: Final = ("occupancy", "charger", "temperature")
RECEIVED: Final = "received (sum)"
FIRST: Final = "first_seq (min)"
END: Final = "end_seq (max)"
PRODUCED: Final = "produced"
GAPS: Final = "seq_gaps"


def queries(condition: str, group: tuple[str, ...]) -> tuple[Query, ...]:
    """One table query per measurement: ``received``, ``first_seq`` and ``end_seq`` (max + 1) per group."""
    fields = 'count("seq") AS "received", min("seq") AS "first_seq", max("seq") + 1 AS "end_seq"'
    return tuple(
        Query(select(fields, m(measurement), conditions=where(TIME, condition), group=tags(*group)),
              columns=(*group, "received", "first_seq", "end_seq"), table=True)
        for measurement in MEASUREMENTS)


def transformations(group: tuple[str, ...],
                    extra: dict[str, tuple[str, ...]] | None = None) -> tuple[Transformation, ...]:
    """From the per-measurement frames (and any ``extra`` fields, aggregated as given) to one row per
    group with ``received (sum)``, ``produced`` and ``seq_gaps``."""
    aggregate = {"received": ("sum",), "first_seq": ("min",), "end_seq": ("max",), **(extra or {})}
    return (
        organize(exclude=("Time",)),  # each query's own time: without it, rows merge on the group alone
        merge(),
        group_by(group, aggregate),
        binary(END, "-", FIRST, PRODUCED),
        binary(PRODUCED, "-", RECEIVED, GAPS),
    )
