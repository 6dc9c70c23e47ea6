"""The InfluxDB datasource (InfluxQL) that every panel and rule queries, uid ``yizhan-influxdb``.

InfluxQL works on InfluxDB 1.x (database), on 2.x through a DBRP mapping of the database to the
bucket (``deploy/influxdb/init-dbrp.sh``) with a token in the ``Authorization`` header, and on
3.x the same way. ``timeInterval`` 10 s is the shortest ``$__interval``: ingest writes its
statistics every 10 s and readings come at most every 30 s.
"""

from __future__ import annotations

from typing import Final

from dashboards.builder import DATASOURCE_TYPE, DATASOURCE_UID, JSON
from telemetry.settings import InfluxSettings

NAME: Final = "yizhan InfluxDB"
MIN_INTERVAL: Final = "10s"


def _json_data(database: str) -> JSON:
    return {"version": "InfluxQL", "dbName": database, "httpMode": "POST", "timeInterval": MIN_INTERVAL}


def provisioning() -> JSON:
    """For Grafana's file provisioning: URL, database and token from Grafana's environment (2.x/3.x)."""
    return {
        "name": NAME, "uid": DATASOURCE_UID, "type": DATASOURCE_TYPE, "access": "proxy",
        "url": "${INFLUX_URL}", "isDefault": True, "editable": False,
        "jsonData": {**_json_data("${INFLUX_DB}"), "httpHeaderName1": "Authorization"},
        "secureJsonData": {"httpHeaderValue1": "Token ${INFLUX_TOKEN}"},
    }


def api(settings: InfluxSettings) -> tuple[JSON, JSON]:
    """The datasource for the HTTP API, and its write-only secrets, from our settings.

    A token (2.x/3.x) goes in the ``Authorization`` header; otherwise 1.x user and password. Unlike
    the provisioning file (our own Grafana), it does not make itself the default datasource.
    """
    body: JSON = {"name": NAME, "uid": DATASOURCE_UID, "type": DATASOURCE_TYPE, "access": "proxy",
                  "url": settings.influx_url, "jsonData": _json_data(settings.influx_db)}
    secure: JSON = {}
    if settings.influx_token:
        body["jsonData"]["httpHeaderName1"] = "Authorization"
        secure["httpHeaderValue1"] = f"Token {settings.influx_token}"
    elif settings.influx_username:
        body["user"] = settings.influx_username
        if settings.influx_password:
            secure["password"] = settings.influx_password
    return body, secure
