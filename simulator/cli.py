"""The simulator's command line: from flags and settings to a :class:`Simulation`, and its output."""

from __future__ import annotations

import argparse
import asyncio
import logging
import math
import resource
import signal
import sys
import time
from pathlib import Path

from pydantic import ValidationError

from firmware_stubs.config import ReplaySettings
from simulator.config import Settings, fault_flags, parse_start
from simulator.exceptions import SimulatorError
from simulator.faults import MAX_AGE_DAYS, Scenario, load_scenario, scenario_from_flags
from simulator.report import progress_line, summary_table
from simulator.simulation import Broker, Progress, Simulation
from simulator.synthetic import make_registry
from telemetry.codec import describe
from telemetry.credentials import CredentialsFileError, read_credentials
from telemetry.registry import Registry, Station, load

logger = logging.getLogger(__name__)


def write_registry(args: argparse.Namespace) -> None:
    """``make-registry``: the synthetic registry to ``--output`` or stdout."""
    try:
        text = make_registry(args.stations, seed=args.seed)
    except ValueError as exc:
        raise SimulatorError(str(exc)) from exc
    if args.output:
        args.output.write_text(text, encoding="utf-8")
    else:
        sys.stdout.write(text)


def stations(args: argparse.Namespace, settings: Settings) -> tuple[Station, ...]:
    registry: Registry = load(args.registry) if args.registry else settings.load_registry()
    reporting = registry.reporting
    n = len(reporting) if args.stations is None else args.stations
    if not 1 <= n <= len(reporting):
        raise SimulatorError(f"--stations {args.stations}: the registry has {len(reporting)} instrumented stations; "
                             "for more, write one with: python -m simulator make-registry --stations N -o FILE "
                             "(and give it to ingest and the simulator as STATIONS_FILE)")
    chosen = reporting[:n]
    if args.shard:
        k, shards = args.shard
        chosen = chosen[k::shards]
    return chosen


def scenario(args: argparse.Namespace) -> Scenario:
    flags = scenario_from_flags(fault_flags(args), args.malformed_rate)
    return load_scenario(args.scenario).merged(flags) if args.scenario else flags


def simulation(args: argparse.Namespace, settings: Settings) -> Simulation:
    speed: float = args.speed if args.speed is not None else math.inf if args.backfill else 1.0
    start = time.time() - args.backfill if args.backfill else parse_start(args.start)
    if start < time.time() - MAX_AGE_DAYS * 86400:
        raise SimulatorError(f"--start is more than {MAX_AGE_DAYS} days ago: ingest would reject every reading")
    replay = replay_settings(args, settings)
    first, *others = settings.mqtt_nodes()
    chosen = stations(args, settings)
    _raise_file_limit(len(chosen))
    broker = Broker(first.host, first.port, first.username, first.password, first.tls,
                    passwords=_passwords(args.secrets) if args.secrets else None,
                    others=tuple(others))
    return Simulation(
        stations=chosen, broker=broker,
        start=start, speed=None if math.isinf(speed) else speed, duration=args.duration, seed=args.seed,
        scenario=scenario(args),
        replay_rate=replay.agent_replay_rate, buffer_max=replay.agent_buffer_max,
        buffer_path=args.buffer_file or ":memory:", drain_timeout=args.drain_timeout,
        on_progress=_progress if args.progress_interval > 0 else None,
        progress_interval=args.progress_interval or 1.0)


def replay_settings(args: argparse.Namespace, settings: Settings) -> ReplaySettings:
    """AGENT_REPLAY_RATE and AGENT_BUFFER_MAX for the agents, overridden by the flags, checked alike."""
    flags = {"agent_replay_rate": args.replay_rate, "agent_buffer_max": args.buffer_max}
    try:
        return ReplaySettings.model_validate(
            settings.model_dump(include=set(flags)) | {k: v for k, v in flags.items() if v is not None})
    except ValidationError as exc:
        raise SimulatorError(f"--replay-rate/--buffer-max: {describe(exc)}") from exc


def _passwords(path: Path) -> dict[str, str]:
    """The stations' passwords from the secrets file of ``python -m gateway provision``."""
    try:
        return read_credentials(path)
    except CredentialsFileError as exc:
        raise SimulatorError(str(exc)) from exc


def _progress(p: Progress) -> None:
    sys.stderr.write(progress_line(p) + "\n")
    sys.stderr.flush()


def _raise_file_limit(agents: int) -> None:
    """One socket per agent: lift the soft limit on open files as far as the hard one allows."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = agents + 256
    if soft != resource.RLIM_INFINITY and soft < want:
        new = want if hard == resource.RLIM_INFINITY else min(want, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (new, hard))
        if new < want:
            logger.warning("open files limited to %d: not enough for %d agents (raise ulimit -n)", new, agents)


async def main(args: argparse.Namespace, settings: Settings) -> None:
    """Run the simulation until its end or SIGINT/SIGTERM (a second SIGINT stops at once)."""
    sim = simulation(args, settings)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()

    def on_signal(sig: signal.Signals) -> None:
        logger.info("%s: stopping (again to stop at once)", sig.name)
        loop.remove_signal_handler(sig)
        stop.set()

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, on_signal, sig)
    summary = await sim.run(stop=stop)
    sys.stdout.write(summary_table(summary) + "\n")
    sys.stdout.flush()


