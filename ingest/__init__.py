"""The ingest service: MQTT -> validation -> InfluxDB, losing nothing (``python -m ingest``)."""
