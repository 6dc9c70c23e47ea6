"""Open ``seq`` gaps: readings a station produced that never arrived (or have not arrived yet).

``seq`` counts a station's readings of every kind, +1 each, so over a range the station produced
``max(seq) - min(seq) + 1`` readings and we hold ``count(seq)`` of them: the difference is the
gaps still open. A replay that delivers the missing readings later closes them, because the count
is taken from what InfluxDB holds now.

The closed hours come from the ``station_1h`` rollups (``seq_first``, ``seq_last``, ``seq_count``
of every kind), the open hour from each raw measurement (InfluxQL cannot union measurements), and
the panel combines the frames per station: merge them, group by station (sum of counts, min of
firsts, max of ends), then two calculations. A late reading recomputes its hour's rollup, so a
replay still closes its gap.
"""

from __future__ import annotations

from typing import Final

from dashboards import rollups
from dashboards.builder import Query, Transformation, binary, group_by, merge, organize
from dashboards.influxql import m, tags
from telemetry.storage import STATION_1H

MEASUREMENTS: Final = ("occupancy", "charger", "temperature")
RECEIVED: Final = "received (sum)"
FIRST: Final = "first_seq (min)"
END: Final = "end_seq (max)"
PRODUCED: Final = "produced"
GAPS: Final = "seq_gaps"


SHIFT: Final = 2**40
"""``first_seq`` is read as ``min(seq) - SHIFT``: below 0 for every real seq (and exact as a float),
so an open hour without readings, filled with 0, never lowers the minimum."""
SPAN: Final = "span"


def _fields(received: str, first: str, last: str) -> str:
    return f'{received} AS "received", {first} - {SHIFT} AS "first_seq", {last} + 1 AS "end_seq"'


def _open_hour(measurement: str, condition: str, group: tuple[str, ...]) -> Query:
    """The open hour's readings of one measurement (:func:`dashboards.rollups.newest_hour`)."""
    hour = rollups.newest_hour(_fields('count("seq")', 'min("seq")', 'max("seq")'), m(measurement), condition,
                               per=group)
    fields = 'sum("received") AS "received", min("first_seq") AS "first_seq", max("end_seq") AS "end_seq"'
    return Query(rollups.daily(fields, hour, group), columns=(*group, "received", "first_seq", "end_seq"),
                 table=True)


def queries(condition: str, group: tuple[str, ...]) -> tuple[Query, ...]:
    """``received``, ``first_seq`` (shifted by :data:`SHIFT`) and ``end_seq`` (max + 1) per group: the
    closed hours from the ``station_1h`` rollups, then the open hour of each raw measurement."""
    closed = rollups.closed(_fields('sum("seq_count")', 'min("seq_first")', 'max("seq_last")'), STATION_1H,
                            condition, group=tags(*group))
    return (Query(closed, columns=(*group, "received", "first_seq", "end_seq"), table=True),
            *(_open_hour(measurement, condition, group) for measurement in MEASUREMENTS))


def transformations(group: tuple[str, ...],
                    extra: dict[str, tuple[str, ...]] | None = None) -> tuple[Transformation, ...]:
    """From the per-measurement frames (and any ``extra`` fields, aggregated as given) to one row per
    group with ``received (sum)``, ``produced`` and ``seq_gaps``."""
    aggregate = {"received": ("sum",), "first_seq": ("min",), "end_seq": ("max",), **(extra or {})}
    return (
        organize(exclude=("Time",)),  # each query's own time: without it, rows merge on the group alone
        merge(),
        group_by(group, aggregate),
        binary(END, "-", FIRST, SPAN),
        binary(SPAN, "-", SHIFT, PRODUCED),
        binary(PRODUCED, "-", RECEIVED, GAPS),
    )
