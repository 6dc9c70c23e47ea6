"""Settings of the simulator: the environment for what it shares with the services, flags for the run.

From the environment: ``MQTT_URL`` (and ``MQTT_CA_FILE`` ... for TLS), ``STATIONS_FILE``,
``LOG_FORMAT``, ``LOG_LEVEL``, and the agents' ``AGENT_REPLAY_RATE`` and ``AGENT_BUFFER_MAX``
(flags override them). Everything about the run itself is a flag (``python -m simulator --help``).
"""

from __future__ import annotations

import argparse
import math
import re
import time
from datetime import datetime
from pathlib import Path

from firmware_stubs.config import ReplaySettings
from simulator.exceptions import SimulatorError
from simulator.faults import parse_duration
from telemetry.settings import LogSettings, MqttSettings, RegistrySettings


class Settings(MqttSettings, RegistrySettings, LogSettings, ReplaySettings):
    pass


FAULT_FLAGS = {
    "network_loss": "STATION@AT+FOR: the station loses its network (its buffer replays after)",
    "reboot": "STATION@AT[+FOR]: the device loses power for FOR (default 30s) and boots again",
    "flatline": "STATION/SENSOR@AT+FOR: the sensor keeps reporting one value",
    "dropout": "STATION/SENSOR@AT+FOR: the sensor stops answering (driver errors)",
    "heating_failure": "STATION@AT+FOR: the heating fails, indoors falls towards outdoors",
    "charger_fault": "STATION/CHARGER[:CODE]@AT+FOR: the charger faults (code E07 by default)",
    "clock_skew": "STATION=SKEW[@AT[+FOR]]: the station's clock is off by SKEW (e.g. +4m, -30s)",
}
_FLAG_KIND = {"flatline": "sensor_flatline", "dropout": "sensor_dropout"}
_RELATIVE = re.compile(r"(?:now)?\s*-\s*(.+)")


def parse_start(text: str, *, now: float | None = None) -> float:
    """``now``, ``now-2h`` (or ``-2h``), or RFC 3339 with an offset -> epoch seconds."""
    now = time.time() if now is None else now
    text = text.strip()
    if text == "now":
        return now
    if m := _RELATIVE.fullmatch(text):
        return now - parse_duration(m.group(1))
    try:
        moment = datetime.fromisoformat(text)
    except ValueError as exc:
        raise SimulatorError(f"--start {text}: expected now, now-2h or RFC 3339 with an offset") from exc
    if moment.tzinfo is None:
        raise SimulatorError(f"--start {text}: give an offset (+08:00 for Pingliang, or Z)")
    return moment.timestamp()


def _duration(text: str) -> float:
    try:
        seconds = parse_duration(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc
    if seconds <= 0:
        raise argparse.ArgumentTypeError(f"must be positive: {text}")
    return seconds


def _speed(text: str) -> float:
    if text == "max":
        return math.inf
    try:
        value = float(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"a number or max, not {text!r}") from exc
    if not value > 0:
        raise argparse.ArgumentTypeError("must be positive")
    return value


def _shard(text: str) -> tuple[int, int]:
    k, sep, n = text.partition("/")
    if not sep or not k.isdigit() or not n.isdigit() or not 0 <= int(k) < int(n):
        raise argparse.ArgumentTypeError(f"expected K/N with 0 <= K < N, not {text!r}")
    return int(k), int(n)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m simulator",
        description="Run the stations' real agents on simulated drivers and time against MQTT_URL.",
        epilog="AT and FOR are durations from --start in simulated time (90s, 30m, 1h30m). "
               "Ingest must know the simulated stations: give it the same STATIONS_FILE.")
    run = p.add_argument_group("run")
    run.add_argument("--registry", type=Path, help="registry file (default STATIONS_FILE, else the shipped one)")
    run.add_argument("--stations", type=int, metavar="N",
                     help="the first N instrumented stations of the registry (default all; more: make-registry)")
    run.add_argument("--shard", type=_shard, metavar="K/N",
                     help="only every N-th of those stations, from the K-th (0-based): one process per shard")
    run.add_argument("--speed", type=_speed, metavar="X",
                     help="simulated seconds per real second, or max (default 1, with --backfill max); "
                          "simulated time never passes the present")
    run.add_argument("--start", default="now", help="now, now-2h, or RFC 3339 with offset (default now)")
    run.add_argument("--duration", type=_duration, metavar="D", help="simulated time to run (default: until Ctrl-C)")
    run.add_argument("--backfill", type=_duration, metavar="D",
                     help="start D ago at --speed max (unless given), then go on live: fills dashboards")
    run.add_argument("--seed", type=int, default=1, help="same seed and start, same readings (default 1)")
    run.add_argument("--replay-rate", type=float, help="agents' AGENT_REPLAY_RATE (readings/s)")
    run.add_argument("--buffer-max", type=int, help="agents' AGENT_BUFFER_MAX")
    run.add_argument("--buffer-file", type=Path, help="one SQLite file for every agent's buffer (default: memory)")
    run.add_argument("--secrets", type=Path, metavar="FILE",
                     help="each agent logs in as its station with its password from this file (the secrets.yaml "
                          "of python -m gateway provision); default: every agent uses MQTT_URL's credentials")
    run.add_argument("--drain-timeout", type=float, default=30.0, metavar="S",
                     help="real seconds for the agents to empty their buffers at the end (default 30)")
    run.add_argument("--progress-interval", type=float, default=5.0, metavar="S",
                     help="real seconds between progress lines on stderr (default 5; 0: none)")
    faults = p.add_argument_group("faults (repeatable; or all in a --scenario file)")
    faults.add_argument("--scenario", type=Path, help="a scenario YAML file (docs/simulator.md)")
    for name, text in FAULT_FLAGS.items():
        faults.add_argument(f"--{name.replace('_', '-')}", action="append", default=[], metavar="SPEC", help=text)
    faults.add_argument("--malformed-rate", type=float, metavar="R",
                        help="fraction of readings followed by a malformed payload, every reject kind in turn")
    sub = p.add_subparsers(dest="command", metavar="{make-registry}")
    make = sub.add_parser("make-registry", help="write a synthetic registry of N stations (YAML) for scale tests")
    make.add_argument("--stations", type=int, required=True, metavar="N")
    make.add_argument("--seed", type=int, default=1)
    make.add_argument("--output", "-o", type=Path, help="file to write (default stdout)")
    return p


def fault_flags(args: argparse.Namespace) -> list[tuple[str, str]]:
    """``(fault kind, spec)`` of every fault flag given."""
    return [(_FLAG_KIND.get(name, name), spec) for name in FAULT_FLAGS for spec in getattr(args, name)]
