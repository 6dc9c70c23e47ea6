"""``python -m ingest [run | rollup ...]``: the command line is in ``ingest/cli.py``."""

from __future__ import annotations

from ingest.cli import main

if __name__ == "__main__":
    main()
