#!/bin/bash
# InfluxDB 2.x first start (docker-entrypoint-initdb.d, after the setup of org, bucket and admin
# token): the retention tiers of telemetry/storage.py as buckets, each mapped to a retention policy
# of the InfluxQL database INFLUX_DB, so the dashboards' and the rollups' InfluxQL (and
# `influx v1 shell`) read what ingest writes:
#   <bucket>          -> INFLUX_DB/autogen (default)  raw readings    (INFLUX_RETENTION, made by the setup)
#   <bucket>_rollup   -> INFLUX_DB/rollup             hourly rollups  (INFLUX_ROLLUP_RETENTION, 3650d)
#   <bucket>_monitor  -> INFLUX_DB/monitor            ingest's own    (INFLUX_MONITOR_RETENTION, 30d)
# ingest writes the last two to INFLUX_ROLLUP_BUCKET and INFLUX_MONITOR_BUCKET, by default these names.
# The entrypoint runs it once, with the CLI already configured with the admin token.
set -euo pipefail

org="${DOCKER_INFLUXDB_INIT_ORG}"
db="${INFLUX_DB:-yizhan}"

influx v1 dbrp create --org "$org" --bucket-id "${DOCKER_INFLUXDB_INIT_BUCKET_ID}" --db "$db" --rp autogen --default

tier() {  # tier <bucket> <retention> <rp>
  influx bucket create --org "$org" --name "$1" --retention "$2"
  id="$(influx bucket list --org "$org" --name "$1" --hide-headers | cut -f1)"
  influx v1 dbrp create --org "$org" --bucket-id "$id" --db "$db" --rp "$3"
}

tier "${DOCKER_INFLUXDB_INIT_BUCKET}_rollup" "${INFLUX_ROLLUP_RETENTION:-3650d}" rollup
tier "${DOCKER_INFLUXDB_INIT_BUCKET}_monitor" "${INFLUX_MONITOR_RETENTION:-30d}" monitor
