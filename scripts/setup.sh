#!/usr/bin/env bash
# Install what is missing on a Debian/Ubuntu machine: Debian's mosquitto, influxdb and rabbitmq-server packages,
# a virtualenv in .venv with yizhan and its development tools. Idempotent and quick when done.
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
command -v mosquitto >/dev/null || need+=(mosquitto)
command -v mosquitto_pub >/dev/null || need+=(mosquitto-clients)
command -v influxd >/dev/null || need+=(influxdb)
command -v influx >/dev/null || need+=(influxdb-client)
# the three-node cluster of tests/cluster.py (pulls Erlang); its own node on 5672 is left alone
[ -x /usr/lib/rabbitmq/bin/rabbitmq-server ] || need+=(rabbitmq-server)
command -v curl >/dev/null || need+=(curl)
command -v wrk >/dev/null || need+=(wrk)  # load generator of bench/gateway_load.py
# the monthly report's CJK font (docs/reports.md: why not Noto CJK) and the tests' pdftotext/pdffonts/pdftoppm
[ -f /usr/share/fonts/truetype/wqy/wqy-microhei.ttc ] || need+=(fonts-wqy-microhei)
command -v pdftotext >/dev/null || need+=(poppler-utils)
python3 -c 'import venv, ensurepip' 2>/dev/null || need+=(python3-venv)
if [ ${#need[@]} -gt 0 ]; then
  echo "setup: installing ${need[*]}"
  sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${need[@]}" >/dev/null
fi
python3 -c 'import sys; sys.exit(sys.version_info < (3, 11))' || { echo "setup: Python 3.11+ is needed" >&2; exit 1; }

stamp=.venv/.installed
if [ ! -x .venv/bin/python ] || [ pyproject.toml -nt "$stamp" ]; then
  echo "setup: installing Python packages into .venv (log: .venv/install.log)"
  python3 -m venv .venv
  # grafana-client depends on niquests, whose urllib3-future replaces urllib3 in place unless built
  # from source with URLLIB3_NO_OVERRIDE; replaced, it breaks requests-based tools (schemathesis).
  if ! { .venv/bin/pip install --upgrade pip &&
         URLLIB3_NO_OVERRIDE=1 PIP_NO_BINARY=urllib3-future .venv/bin/pip install -e '.[dev]'; } \
       >.venv/install.log 2>&1; then
    tail -30 .venv/install.log >&2
    exit 1
  fi
  touch "$stamp"
fi
