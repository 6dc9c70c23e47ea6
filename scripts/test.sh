#!/usr/bin/env bash
# Run the test suite (starts its own mosquitto and influxd processes on free ports).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/python -m pytest "$@"
