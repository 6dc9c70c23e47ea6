#!/bin/bash
# InfluxDB 2.x first start (docker-entrypoint-initdb.d, after the setup of org, bucket and admin
# token): map the InfluxQL database INFLUX_DB, retention policy autogen, to the bucket, so the
# dashboards' InfluxQL (and `influx v1 shell`) read what ingest writes to the bucket.
# The entrypoint runs it once, with the CLI already configured with the admin token.
set -euo pipefail

influx v1 dbrp create \
  --org "${DOCKER_INFLUXDB_INIT_ORG}" \
  --bucket-id "${DOCKER_INFLUXDB_INIT_BUCKET_ID}" \
  --db "${INFLUX_DB:-yizhan}" \
  --rp autogen \
  --default
