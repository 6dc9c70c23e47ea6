"""Long ranges: a year of the 45 stations (or 30 days of 1,000) in a real influxd, every panel timed.

    .venv/bin/python -m bench.long_range --data-dir DIR [--stations 45] [--days 365] [--reuse]
        [--label before|after] [--rebuild [--rebuild-days N]] [--fill-rollups] [--ranges 1,30,365]
        [--timeout 600] [--skip-raw-over DAYS] [--no-timing] [--daily-only]

1. **Load** (skipped with ``--reuse`` when ``DIR`` holds this case already): the stations of the
   shipped registry (``--stations 45``) or of a synthetic one (``python -m simulator make-registry``,
   any other number) at the agents' real rates, generated a day at a time by
   ``bench/station_data.py`` as the line protocol ingest writes, ending at the last UTC midnight,
   written to the bench's own influxd (``DIR/influxd``, a free port) with ``/write`` batches of
   5,000 points over ``--connections`` connections. Memory stays bounded (one day in flight).
2. **Rebuild** (``--rebuild``): ``python -m ingest rollup --since DATE --until DATE`` over the
   whole range (or its last ``--rebuild-days``), timed: wall, CPU of the command and of influxd.
   ``--fill-rollups`` then copies the rebuilt hours over the rest of the longest range, shifted by
   whole multiples of their span (:func:`fill_rollups`): for timing the rollup dashboards where
   the machine had no time to rebuild it all (a query costs what its points and series cost).
3. **Time** every panel query of every committed dashboard (built from the case's registry) at each
   of ``--ranges`` days ending at the data's end (and at the panel's own relative time, ``timeFrom``,
   where it has one), and every alert rule's query over its own range (``relativeTimeRange``),
   interpolated as Grafana does (``tests/dashboards/grafana.py``: ``$timeFilter``, ``$__interval``,
   variables as "All" or the first value), each over HTTP with ``--timeout`` seconds (a query still
   running then is killed in influxd and shown as ``> T``). A panel's figure is the sum of its queries. The figures are
   kept in ``DIR/timings-LABEL.json``, so a run on the raw dashboards (``--label before``) and
   one on the rollup dashboards (``--label after``, after ``--rebuild``) give one table.
4. **Storage**: bytes on disk of the raw tier and of the rollups (TSM and WAL), per station per year.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import queue
import resource
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from http.client import HTTPConnection
from pathlib import Path
from types import TracebackType
from typing import Any, Final, Self

from bench.ingest_throughput import proc_stats
from bench.station_data import DAY_MS, StationDays
from dashboards import alerts, datasource, provisioning
from dashboards.builder import Dashboard
from ingest.influxql import InfluxQL
from ingest.lineprotocol import string_field, tag
from ingest.retention import ensure
from simulator.synthetic import make_registry
from telemetry import registry
from telemetry.storage import HOUR_MS, ROLLUPS, STATION_1H, Tier, qualified
from tests.dashboards.grafana import TimeRange, VariableValue, interpolate, interval_ms, panel_range
from tests.rig import ROOT, Influxd, child_env

DB = "yizhan"
BATCH = 5_000
MAX_DATA_POINTS = 1000
SHIPPED = 45


@dataclass(slots=True, frozen=True)
class Store:
    """The database the bench writes and times, in its influxd."""

    influxd: Influxd
    db: str = DB

    def query(self, text: str, timeout: float) -> tuple[float | None, int]:
        """Seconds and rows of one query; (None, 0) when it did not answer within ``timeout`` (then killed)."""
        url = f"{self.influxd.url}/query?{urllib.parse.urlencode({'q': text, 'db': self.db, 'epoch': 'ms'})}"
        started = time.perf_counter()
        try:
            with urllib.request.urlopen(url, timeout=timeout) as r:  # noqa: S310 - the bench's own influxd
                body = json.loads(r.read())
        except TimeoutError:
            self.kill(text)
            return None, 0
        seconds = time.perf_counter() - started
        result = body["results"][0]
        if "error" in result:
            raise RuntimeError(f"InfluxQL error for {text!r}: {result['error']}")
        return seconds, sum(len(s.get("values", [])) for s in result.get("series", []))

    def kill(self, text: str) -> None:
        """``KILL QUERY`` every running query with this text (an abandoned one would go on using the cores)."""
        for series in self.influxd.query("SHOW QUERIES"):
            for row in series["values"]:
                entry = dict(zip(series["columns"], row, strict=True))
                if entry["query"] == text:
                    self.influxd.query(f"KILL QUERY {entry['qid']}")


# --- loading ---------------------------------------------------------------------------------------

class Writer:
    """Batched ``/write`` over a few keep-alive connections; at most two batches queued per connection."""

    def __init__(self, *, url: str, db: str, connections: int, tier: Tier = Tier.RAW) -> None:
        parsed = urllib.parse.urlsplit(url)
        self.host, self.port = parsed.hostname or "127.0.0.1", parsed.port or 8086
        self.path = f"/write?db={urllib.parse.quote(db)}&rp={tier.value}&precision=ms"
        self.queue: queue.Queue[bytes | None] = queue.Queue(maxsize=2 * connections)
        self.threads = [threading.Thread(target=self._run, name=f"writer-{i}") for i in range(connections)]
        self.error: BaseException | None = None
        self.points = 0

    def __enter__(self) -> Self:
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        for _ in self.threads:
            self.queue.put(None)
        for t in self.threads:
            t.join()
        if self.error is not None and exc is None:
            raise RuntimeError("a write failed") from self.error

    def write(self, lines: list[str]) -> None:
        if self.error is not None:
            raise RuntimeError("a write failed") from self.error
        self.queue.put("\n".join(lines).encode())
        self.points += len(lines)

    def _run(self) -> None:
        conn = HTTPConnection(self.host, self.port, timeout=300)
        try:
            while (body := self.queue.get()) is not None:
                if self.error is None:
                    self._post(conn, body)
        finally:
            conn.close()

    def _post(self, conn: HTTPConnection, body: bytes) -> None:
        try:
            conn.request("POST", self.path, body)
            response = conn.getresponse()
            text = response.read()
            if response.status != 204:
                raise RuntimeError(f"/write answered {response.status}: {text[:300]!r}")
        except BaseException as exc:  # noqa: BLE001 - handed to the producer, which raises it
            self.error = exc


@dataclass(slots=True, frozen=True)
class Case:
    """What a data directory holds: which stations, how many days, ending when, how many points."""

    stations: int
    days: int
    seed: int
    end_ms: int
    points: int = 0
    load_seconds: float = 0.0

    @property
    def start_ms(self) -> int:
        return self.end_ms - self.days * DAY_MS


def case_registry(stations: int, directory: Path) -> registry.Registry:
    """The shipped registry for 45 stations, else a synthetic one of ``stations`` (kept in ``directory``)."""
    if stations == SHIPPED:
        return registry.load()
    path = directory / f"stations-{stations}.json"
    if not path.exists():
        path.write_text(make_registry(stations, as_json=True), encoding="utf-8")
    return registry.load(path)


def registry_file(stations: int, directory: Path) -> Path | None:
    return None if stations == SHIPPED else directory / f"stations-{stations}.json"


def batches(days: StationDays, case: Case) -> Iterator[list[str]]:
    """The case's lines in batches of ``BATCH``, a day of every station at a time."""
    pending: list[str] = []
    for day in range(case.days):
        started = time.monotonic()
        for lines in days.day(case.start_ms + day * DAY_MS):
            pending += lines
            while len(pending) >= BATCH:
                yield pending[:BATCH]
                del pending[:BATCH]
        _progress(f"day {day + 1}/{case.days} generated in {time.monotonic() - started:.1f} s")
    if pending:
        yield pending


def _progress(text: str) -> None:
    sys.stderr.write(f"{datetime.now(UTC):%H:%M:%S} {text}\n")


RETENTION_DAYS: Final = {Tier.RAW: 400, Tier.ROLLUP: 3650, Tier.MONITOR: 30}
"""ingest's defaults (docs/configuration.md)."""


async def _retention(store: Store) -> None:
    async with InfluxQL(url=store.influxd.url, database=store.db) as ql:
        await ensure(ql, database=store.db, days=RETENTION_DAYS)


def load(store: Store, case: Case, stations: registry.Registry, connections: int) -> Case:
    """Generate and write the case; the returned case says how many points and how long it took.

    The database and its retention policies are made as ingest makes them at start.
    """
    store.influxd.query(f'CREATE DATABASE "{store.db}"')
    asyncio.run(_retention(store))
    days = StationDays(list(stations.reporting), seed=case.seed, start_ms=case.start_ms)
    started = time.monotonic()
    with Writer(url=store.influxd.url, db=store.db, connections=connections) as writer:
        for batch in batches(days, case):
            writer.write(batch)
    seconds = time.monotonic() - started
    _progress(f"{writer.points:,} points in {seconds:.0f} s ({writer.points / seconds:,.0f}/s)")
    return Case(case.stations, case.days, case.seed, case.end_ms, writer.points, round(seconds, 1))


# --- timing ----------------------------------------------------------------------------------------

@dataclass(slots=True, frozen=True)
class Timed:
    """One panel (or alert rule) over one range: its queries' total seconds, or None past the timeout."""

    dashboard: str
    panel: str
    own_range: str
    days: int
    seconds: float | None
    queries: int
    rows: int


def variables(store: Store, dashboard: Dashboard) -> dict[str, VariableValue]:
    """Each variable as a user first sees it: "All" where it has it, else its first value."""
    chosen: dict[str, VariableValue] = {}
    for v in dashboard.variables:
        text = interpolate(v.query, TimeRange(0, 0), 1000, chosen)
        values = sorted(str(r["value"]) for r in store.influxd.rows(text, store.db)) or ["none"]
        chosen[v.name] = (VariableValue(v.name, values, all=True, all_value=v.all_value, multi=True)
                          if v.include_all else VariableValue(v.name, values[:1], multi=v.multi))
    return chosen


def _rollup(measurement: str) -> str:
    return qualified(Tier.ROLLUP, measurement)


_STATIONS: Final = _rollup(STATION_1H)


def time_queries(store: Store, texts: tuple[str, ...], window: TimeRange, min_interval: str,
                 chosen: dict[str, VariableValue], timeout: float) -> tuple[float | None, int]:
    """The queries of one panel one after the other: total seconds (None past the timeout) and rows."""
    interval = interval_ms(window, max_data_points=MAX_DATA_POINTS, min_interval=min_interval)
    total, rows = 0.0, 0
    for text in texts:
        seconds, n = store.query(interpolate(text, window, interval, chosen), timeout)
        if seconds is None:
            return None, rows
        total, rows = total + seconds, rows + n
    return total, rows


def time_all(store: Store, stations: registry.Registry, case: Case, ranges: list[int], *, timeout: float,
             skip_over: int | None) -> list[Timed]:
    """Every panel over each range (the range replacing a panel's own, as the worst case) and, for a
    panel with a relative time of its own (``timeFrom``), over that as Grafana runs it; every alert
    rule over its own range."""
    out = []
    for dashboard in provisioning.dashboards(stations).values():
        chosen, dashboard_json = variables(store, dashboard), dashboard.to_json()
        for panel in (p for row in dashboard.rows for p in row.panels):
            texts = tuple(q.text for q in panel.queries)
            for days in ([OWN_RANGE] if panel.time_from else []) + ranges:
                window = (panel_range(dashboard_json, {"timeFrom": panel.time_from}, case.end_ms)
                          if days == OWN_RANGE else TimeRange(case.end_ms - days * DAY_MS, case.end_ms))
                seconds, rows = (None, 0) if skip_over is not None and days > skip_over else time_queries(
                    store, texts, window, panel.interval or datasource.MIN_INTERVAL, chosen, timeout)
                out.append(Timed(dashboard.uid, panel.title or "", panel.time_from or "", days,
                                 None if seconds is None else round(seconds, 3), len(texts), rows))
                _progress(f"{dashboard.uid}: {panel.title} {days} d: {seconds} s, {rows} rows")
    out += time_alerts(store, case, timeout=timeout)
    return out


OWN_RANGE: Final = 0
"""``Timed.days`` of a figure over the panel's or alert rule's own range, as Grafana runs it."""


def time_alerts(store: Store, case: Case, *, timeout: float) -> list[Timed]:
    """Every alert rule over its own ``relativeTimeRange`` (``window_s``) ending at the data's end, at
    the 1 s interval the rule's query model sets (``intervalMs``)."""
    out = []
    for rule in alerts.RULES:
        window = TimeRange(case.end_ms - rule.window_s * 1000, case.end_ms)
        seconds, rows = store.query(interpolate(rule.query.text, window, 1000, {}), timeout)
        out.append(Timed("alert", rule.title, f"{rule.window_s}s", OWN_RANGE,
                         None if seconds is None else round(seconds, 3), 1, rows))
        _progress(f"alert: {rule.title} over {rule.window_s} s: {seconds} s, {rows} rows")
    return out


# --- rebuild and storage -------------------------------------------------------------------------------

def rebuild(store: Store, case: Case, directory: Path, *, days: int | None = None,
            chunk_hours: int = 24, workers: int = 1, concurrency: int = 2,
            daily_only: bool = False) -> dict[str, object]:
    """``python -m ingest rollup`` over the case's range (its last ``days``; ``daily_only``: the daily
    rollups from the hourly ones stored): wall and CPU seconds of it and influxd."""
    influxd = store.influxd
    env = {"INFLUX_URL": influxd.url, "INFLUX_DB": store.db, "LOG_LEVEL": "INFO",
           "INGEST_SPOOL_DIR": str(directory / "spool")}
    if path := registry_file(case.stations, directory):
        env["STATIONS_FILE"] = str(path)
    since, until = (datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
                    for ms in (case.end_ms - (days or case.days) * DAY_MS, case.end_ms))
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    influx_cpu = _cpu(influxd)
    started = time.monotonic()
    with (directory / "rebuild.log").open("ab") as log:
        done = subprocess.run([sys.executable, "-m", "ingest", "rollup", "--since", since, "--until", until,
                               "--chunk-hours", str(chunk_hours), "--workers", str(workers),
                               "--concurrency", str(concurrency), "--restart",
                               *(["--daily-only"] if daily_only else [])],
                              cwd=ROOT, env=child_env(env), stdout=log, stderr=log, check=False)
    seconds = time.monotonic() - started
    if done.returncode != 0:
        raise RuntimeError(f"the rebuild exited {done.returncode}: {(directory / 'rebuild.log').read_text()[-2000:]}")
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return {"seconds": round(seconds, 1), "since": since, "until": until, "chunk_hours": chunk_hours,
            "workers": workers, "concurrency": concurrency, "daily_only": daily_only,
            "rebuild_cpu_s": round(after.ru_utime + after.ru_stime - children.ru_utime - children.ru_stime, 1),
            "influxd_cpu_s": round(_cpu(influxd) - influx_cpu, 1)}


def _cpu(influxd: Influxd) -> float:
    return proc_stats(influxd.proc.pid)[0] if influxd.proc else 0.0


_FIELD = {"integer": lambda v: f"{int(v)}i", "float": lambda v: repr(float(v)), "boolean": lambda v: str(v).lower(),
          "string": lambda v: string_field(str(v))}


def rebuilt_hours(store: Store) -> tuple[int, int] | None:
    """[first, end) of the first run of hours without a gap that the rollups hold (``station_1h``)."""
    found = store.influxd.query(f'SELECT "seq_count" FROM {_STATIONS} ORDER BY time ASC LIMIT 1', store.db)
    if not found:
        return None
    first = int(found[0]["values"][0][0])
    hours = store.influxd.query(f'SELECT count("seq_count") FROM {_STATIONS} WHERE time >= {first}ms '
                                "GROUP BY time(1h) fill(0)", store.db)[0]["values"]
    end = next((int(t) for t, n in hours if not n), int(hours[-1][0]) + HOUR_MS)
    return first, end


def rollup_station_years(store: Store) -> float:
    """Station-years the rollups hold: their station-hours (a ``station_1h`` point each) over a year's hours."""
    found = store.influxd.query(f'SELECT count("seq_count") FROM {_STATIONS}', store.db)
    return int(found[0]["values"][0][1]) / (365 * 24) if found else 0.0


def _rollup_lines(store: Store, measurement: str, built: tuple[int, int]) -> list[tuple[str, int]]:
    """The rollup points of ``built`` as (line without its timestamp, timestamp)."""
    types = {row[0]: row[1] for s in store.influxd.query(f"SHOW FIELD KEYS FROM {_rollup(measurement)}", store.db)
             for row in s["values"]}
    out = []
    for s in store.influxd.query(f"SELECT * FROM {_rollup(measurement)} WHERE time >= {built[0]}ms AND "
                                 f"time < {built[1]}ms GROUP BY *", store.db):
        head = measurement + "".join(f",{k}={tag(v)}" for k, v in sorted(s["tags"].items()) if v)
        names = s["columns"][1:]
        for row in s["values"]:
            fields = ",".join(f"{n}={_FIELD[types[n]](v)}" for n, v in zip(names, row[1:], strict=True)
                              if v is not None)
            out.append((f"{head} {fields} ", int(row[0])))
    return out


def fill_rollups(store: Store, span: tuple[int, int], connections: int) -> dict[str, object]:
    """Copy the rebuilt hours' rollup points, shifted by whole multiples of their span, over the rest of ``span``.

    For timing only, where the machine had no time to rebuild the whole range: a query over rollups
    costs what their number of points and series cost, whatever their values.
    """
    built = rebuilt_hours(store)
    if built is None:
        raise RuntimeError("no rollups to copy: run with --rebuild first")
    width = built[1] - built[0]
    copies = range(-((built[0] - span[0]) // width + 1), (span[1] - built[1]) // width + 2)
    written = 0
    with Writer(url=store.influxd.url, db=store.db, connections=connections, tier=Tier.ROLLUP) as writer:
        for measurement in ROLLUPS:
            points = _rollup_lines(store, measurement, built)
            for k in (k for k in copies if k):
                batch = [f"{line}{ts + k * width}" for line, ts in points if span[0] <= ts + k * width < span[1]]
                for i in range(0, len(batch), BATCH):
                    writer.write(batch[i:i + BATCH])
                written += len(batch)
    return {"built_from_ms": built[0], "built_until_ms": built[1], "copied_points": written}


def tier_bytes(directory: Path, tier: Tier) -> int:
    """TSM and WAL bytes of a retention policy of the bench's database."""
    return sum(f.stat().st_size for base in ("data", "wal") for f in (directory / base / DB / tier.value).rglob("*")
               if f.is_file())


def storage(directory: Path, case: Case, rollup_years: float) -> dict[str, float]:
    """Bytes of each tier, per station per year: raw over the case's days, rollups over their station-hours."""
    raw, rollup = tier_bytes(directory, Tier.RAW), tier_bytes(directory, Tier.ROLLUP)
    return {"raw_bytes": raw, "rollup_bytes": rollup,
            "raw_bytes_per_station_year": round(raw / (case.stations * case.days / 365)),
            "rollup_station_years": round(rollup_years, 2),
            "rollup_bytes_per_station_year": round(rollup / rollup_years) if rollup_years else 0}


# --- the table -----------------------------------------------------------------------------------------

def table(directory: Path) -> str:
    """Markdown, a row per panel: seconds at each range for each label (before, after), from ``directory``'s runs."""
    runs = {p.stem.removeprefix("timings-"): {(t["dashboard"], t["panel"], t["days"]): t
                                               for t in json.loads(p.read_text())}
            for p in sorted(directory.glob("timings-*.json"), key=lambda p: p.stem != "timings-before")}
    keys = list(dict.fromkeys(k for timings in runs.values() for k in timings))
    panels = list(dict.fromkeys(k[:2] for k in keys))
    columns = [(days, label) for days in dict.fromkeys(k[2] for k in keys) for label in runs]
    lines = ["| dashboard | panel | own range | " + " | ".join(
        f"{'own range' if d == OWN_RANGE else f'{d} d'} {x} (s)" for d, x in columns) + " |",
             "| --- | --- | --- | " + " | ".join("---:" for _ in columns) + " |"]
    for panel in panels:
        own = next(r[k]["own_range"] for r in runs.values() for k in r if k[:2] == panel)
        cells = [_cell(runs[label].get((*panel, days))) for days, label in columns]
        lines.append(f"| {panel[0]} | {panel[1]} | {own} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _cell(timed: dict[str, Any] | None) -> str:
    if timed is None:
        return ""
    return "skipped" if timed["seconds"] is None and timed.get("skipped") else (
        f"> {timed['timeout']:g}" if timed["seconds"] is None else f"{timed['seconds']:.3f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, required=True)
    parser.add_argument("--stations", type=int, default=SHIPPED)
    parser.add_argument("--days", type=int, default=365)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--reuse", action="store_true", help="keep the data already loaded in --data-dir")
    parser.add_argument("--connections", type=int, default=3)
    parser.add_argument("--rebuild", action="store_true", help="run python -m ingest rollup over the range")
    parser.add_argument("--label", default="before", help="the name the timings are kept under")
    parser.add_argument("--ranges", default="1,30,365", help="days, comma-separated")
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds per query")
    parser.add_argument("--skip-raw-over", type=int, default=None, help="time no range longer than this (days)")
    parser.add_argument("--no-timing", action="store_true")
    parser.add_argument("--fill-rollups", action="store_true",
                        help="copy the rebuilt rollups over the rest of the longest range (for timing: fill_rollups)")
    parser.add_argument("--chunk-hours", type=int, default=24, help="the rebuild's --chunk-hours")
    parser.add_argument("--rebuild-days", type=int, default=None, help="rebuild only the last N days of the range")
    parser.add_argument("--workers", type=int, default=1, help="the rebuild's --workers")
    parser.add_argument("--concurrency", type=int, default=2, help="the rebuild's --concurrency")
    parser.add_argument("--daily-only", action="store_true",
                        help="the rebuild's --daily-only: daily rollups from the hourly ones stored (filled ones too)")
    args = parser.parse_args()
    run(args)


def run(args: argparse.Namespace) -> None:
    directory: Path = args.data_dir
    directory.mkdir(parents=True, exist_ok=True)
    marker = directory / "case.json"
    stations = case_registry(args.stations, directory)
    case = Case(args.stations, args.days, args.seed, (int(time.time() * 1000) // DAY_MS) * DAY_MS)
    if args.reuse and marker.exists():
        case = Case(**json.loads(marker.read_text()))
        if (case.stations, case.days) != (args.stations, args.days):
            raise SystemExit(f"{directory} holds {case.stations} stations over {case.days} days")
    elif any((directory / "influxd").glob("data/*")):
        raise SystemExit(f"{directory}/influxd holds data: give --reuse, or a new --data-dir")
    influxd = Influxd(directory / "influxd").start()
    store = Store(influxd)
    report: dict[str, Any] = {"case": asdict(case)}
    try:
        if not (args.reuse and marker.exists()):
            case = load(store, case, stations, args.connections)
            marker.write_text(json.dumps(asdict(case)))
        report["case"] = asdict(case)
        if args.rebuild:
            report["rebuild"] = rebuild(store, case, directory, days=args.rebuild_days, chunk_hours=args.chunk_hours,
                                        workers=args.workers, concurrency=args.concurrency, daily_only=args.daily_only)
        ranges = [int(x) for x in args.ranges.split(",")]
        if args.fill_rollups:
            report["fill"] = fill_rollups(store, (case.end_ms - max(ranges) * DAY_MS, case.end_ms), args.connections)
        if not args.no_timing:
            timed = time_all(store, stations, case, ranges, timeout=args.timeout, skip_over=args.skip_raw_over)
            (directory / f"timings-{args.label}.json").write_text(json.dumps(
                [asdict(t) | {"timeout": args.timeout, "skipped": args.skip_raw_over is not None
                              and t.days > args.skip_raw_over} for t in timed], ensure_ascii=False, indent=1))
        rollup_years = rollup_station_years(store)
    finally:
        influxd.stop()
    report["storage"] = storage(directory / "influxd", case, rollup_years)
    print(json.dumps(report, ensure_ascii=False, indent=2))
    if any(directory.glob("timings-*.json")):
        print(table(directory))


if __name__ == "__main__":
    main()
