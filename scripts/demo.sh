#!/usr/bin/env bash
# Run the whole system locally: mosquitto, influxd, ingest, the gateway and the simulator (the 45
# instrumented stations: the last day backfilled, then live), installing what is missing first.
# Data and logs go to ./run; Ctrl-C stops everything. Extra arguments go to the simulator
# (e.g. --network-loss PL-KT-001@10m+30m). Ports: DEMO_MQTT_PORT (1884), DEMO_INFLUX_PORT (8086),
# DEMO_INGEST_PORT (9101), DEMO_GATEWAY_PORT (8000).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh

RUN=${RUN_DIR:-$PWD/run}
MQTT_PORT=${DEMO_MQTT_PORT:-1884}
INFLUX_PORT=${DEMO_INFLUX_PORT:-8086}
INGEST_PORT=${DEMO_INGEST_PORT:-9101}
GATEWAY_PORT=${DEMO_GATEWAY_PORT:-8000}
mkdir -p "$RUN/mosquitto" "$RUN/influxdb"
# A broker user and password per station, for ingest and the gateway (kept across runs), and the ACL.
.venv/bin/python -m gateway provision --out "$RUN/auth" >/dev/null
pw() { .venv/bin/python -c 'import sys, yaml; print(yaml.safe_load(open(sys.argv[1]))[sys.argv[2]])' "$RUN/auth/secrets.yaml" "$1"; }

pids=()
cleanup() {
  trap - INT TERM EXIT
  echo; echo "demo: stopping"
  for ((i=${#pids[@]}-1; i>=0; i--)); do kill "${pids[i]}" 2>/dev/null || true; wait "${pids[i]}" 2>/dev/null || true; done
}
trap cleanup INT TERM EXIT

# The shipped broker config (no silent drops), with a local listener, persistence and log.
{
  grep -vE '^(listener|persistence_location|log_dest|allow_anonymous|password_file|acl_file)\b' \
    deploy/mosquitto/mosquitto.conf
  echo "listener $MQTT_PORT 127.0.0.1"
  echo "allow_anonymous false"
  echo "password_file $RUN/auth/passwd"
  echo "acl_file $RUN/auth/acl"
  echo "persistence_location $RUN/mosquitto/"
  echo "log_dest file $RUN/mosquitto/mosquitto.log"
  if [ "$(id -u)" -eq 0 ]; then echo "user root"; fi
} > "$RUN/mosquitto/mosquitto.conf"
mosquitto -c "$RUN/mosquitto/mosquitto.conf" & pids+=($!)

cat > "$RUN/influxdb/influxdb.conf" <<CONF
reporting-disabled = true
bind-address = "127.0.0.1:$((INFLUX_PORT + 2))"
[meta]
  dir = "$RUN/influxdb/meta"
[data]
  dir = "$RUN/influxdb/data"
  wal-dir = "$RUN/influxdb/wal"
  query-log-enabled = false
[http]
  bind-address = "127.0.0.1:$INFLUX_PORT"
  log-enabled = false
[monitor]
  store-enabled = false
CONF
influxd -config "$RUN/influxdb/influxdb.conf" >"$RUN/influxdb/influxd.log" 2>&1 & pids+=($!)
for _ in $(seq 100); do curl -sf -o /dev/null "http://127.0.0.1:$INFLUX_PORT/ping" && break; sleep 0.2; done

export MQTT_URL="mqtt://127.0.0.1:$MQTT_PORT" INFLUX_URL="http://127.0.0.1:$INFLUX_PORT" INFLUX_DB=yizhan
MQTT_URL="mqtt://ingest:$(pw ingest)@127.0.0.1:$MQTT_PORT" INGEST_HTTP_ADDR="127.0.0.1:$INGEST_PORT" \
  INGEST_SPOOL_DIR="$RUN/spool" MQTT_CLIENT_ID=demo-ingest .venv/bin/python -m ingest 2>"$RUN/ingest.log" & pids+=($!)

export GATEWAY_TOKENS_FILE="$RUN/gateway-tokens.yaml" GATEWAY_ADDR="127.0.0.1:$GATEWAY_PORT"
[ -s "$RUN/operator-token" ] || .venv/bin/python -m gateway token add --role operator demo >"$RUN/operator-token" 2>/dev/null
MQTT_URL="mqtt://gateway:$(pw gateway)@127.0.0.1:$MQTT_PORT" STATION_PASSWORD_FILE="$RUN/auth/passwd" \
  .venv/bin/python -m gateway 2>"$RUN/gateway.log" & pids+=($!)

.venv/bin/python -m simulator --backfill 24h --progress-interval 30 --drain-timeout 5 --buffer-file "$RUN/agents.sqlite" \
  --secrets "$RUN/auth/secrets.yaml" "$@" \
  >"$RUN/simulator-summary.txt" 2>"$RUN/simulator.log" & pids+=($!)

cat <<MSG

yizhan is running (logs in $RUN; the broker refuses anonymous clients, passwords in $RUN/auth/secrets.yaml):
  MQTT broker   $MQTT_URL          publish to stations/v1/<station id>/<kind>
  InfluxDB      $INFLUX_URL         database yizhan
  ingest        http://127.0.0.1:$INGEST_PORT/metrics  and /healthz
  gateway       http://127.0.0.1:$GATEWAY_PORT/docs     token: $(cat "$RUN/operator-token")
  simulator     the 45 stations: the last 24 h backfilled, then live (progress in $RUN/simulator.log)

Try:
  mosquitto_pub -p $MQTT_PORT -u PL-KT-001 -P $(pw PL-KT-001) -q 1 -t stations/v1/PL-KT-001/occupancy -m "{\"ts\": \$(date +%s%3N), \"seq\": 1, \"people\": 5}"
  influx -port $INFLUX_PORT -database yizhan -precision rfc3339 -execute 'SELECT count(people) FROM occupancy'
  curl -s -H "Authorization: Bearer \$(cat $RUN/operator-token)" http://127.0.0.1:$GATEWAY_PORT/v1/summary
Ctrl-C stops everything.
MSG
wait -n "${pids[@]}"
