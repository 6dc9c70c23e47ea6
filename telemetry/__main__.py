"""``python -m telemetry schema [DIR]``: write the contract's JSON Schema files (default docs/schema)."""

from __future__ import annotations

import argparse
from pathlib import Path

from telemetry import schema


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m telemetry")
    sub = parser.add_subparsers(dest="command", required=True)
    cmd = sub.add_parser("schema", help="write the JSON Schema of every topic's payload")
    cmd.add_argument("directory", nargs="?", type=Path, default=Path("docs/schema"))
    args = parser.parse_args()
    for path in schema.write(args.directory):
        print(path)  # noqa: T201 - command output


if __name__ == "__main__":
    main()
