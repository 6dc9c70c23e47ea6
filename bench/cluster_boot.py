"""How long the test cluster (tests/cluster.py) takes: three RabbitMQ nodes booted as the fixture
does (node 0, then the other two at once), or one after the other; then a node SIGKILLed and
started again, a graceful stop and start, a vhost.

    .venv/bin/python -m bench.cluster_boot [--runs 2] [--serial]

Prints seconds per step and the load average before each run: the nodes' boot is CPU-bound, so on
a shared 2-core machine the figures follow the load.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from tests.cluster import SIZE, Cluster


def _timed(step: Callable[[], object]) -> float:
    start = time.monotonic()
    step()
    return time.monotonic() - start


def _serial(cluster: Cluster) -> None:
    try:
        for i in range(SIZE):
            cluster.start(i)
    except BaseException:
        cluster.down()
        raise


def run(directory: Path, *, serial: bool) -> dict[str, float]:
    cluster = Cluster(directory)
    figures = {"boot": _timed(lambda: _serial(cluster) if serial else cluster.up())}
    try:
        figures["kill"] = _timed(lambda: cluster.kill(1))
        figures["start after kill"] = _timed(lambda: cluster.start(1))
        figures["graceful stop"] = _timed(lambda: cluster.stop(2))
        figures["start after stop"] = _timed(lambda: cluster.start(2))
        figures["new_vhost"] = _timed(cluster.new_vhost)
    finally:
        figures["down"] = _timed(cluster.down)
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=2)
    parser.add_argument("--serial", action="store_true", help="boot node 0, then 1, then 2 (each joins the last)")
    args = parser.parse_args()
    for n in range(args.runs):
        load = os.getloadavg()
        with tempfile.TemporaryDirectory(prefix="yizhan-cluster-boot-") as tmp:
            figures = run(Path(tmp), serial=args.serial)
        steps = ", ".join(f"{k} {v:.1f} s" for k, v in figures.items())
        print(f"run {n + 1} ({'serial' if args.serial else 'as the fixture'}, load {load[0]:.1f}): {steps}")


if __name__ == "__main__":
    main()
