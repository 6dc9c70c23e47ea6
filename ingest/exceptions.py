"""Errors of the ingest service.

    IngestError
    ├── MqttError                     the broker connection failed or was lost
    │   ├── ConnectRefusedError       CONNACK with a non-zero return code (.code)
    │   ├── SubscribeRefusedError     SUBACK refused the topic filter (.topic_filter)
    │   └── MqttProtocolError         the broker sent bytes we cannot parse
    ├── InfluxError                   a write to InfluxDB did not succeed
    │   ├── InfluxUnavailableError    unreachable, timed out or 5xx: retry later, spool meanwhile
    │   ├── InfluxRejectedError       4xx: the points themselves are refused (.status, .message)
    │   └── InfluxQueryError          InfluxQL refused by the server (.query, .message): a bug of ours
    └── SpoolFullError                the disk spool is at INGEST_SPOOL_MAX_MB

Third-party errors (httpx, influxdb-client) are translated to these in ``writer.py`` and
``influxql.py`` only.
"""

from __future__ import annotations

_CONNACK_CODES = {
    1: "unacceptable protocol version",
    2: "client identifier rejected",
    3: "server unavailable",
    4: "bad user name or password",
    5: "not authorized",
}


class IngestError(Exception):
    pass


class MqttError(IngestError):
    pass


class ConnectRefusedError(MqttError):
    def __init__(self, code: int) -> None:
        self.code = code
        super().__init__(f"broker refused the connection: {_CONNACK_CODES.get(code, f'code {code}')}")


class SubscribeRefusedError(MqttError):
    def __init__(self, topic_filter: str) -> None:
        self.topic_filter = topic_filter
        super().__init__(f"broker refused the subscription to {topic_filter}")


class MqttProtocolError(MqttError):
    pass


class InfluxError(IngestError):
    pass


class InfluxUnavailableError(InfluxError):
    pass


class InfluxRejectedError(InfluxError):
    def __init__(self, status: int, message: str) -> None:
        self.status = status
        self.message = message
        super().__init__(f"InfluxDB refused the write ({status}): {message}")


class InfluxQueryError(InfluxError):
    def __init__(self, query: str, message: str) -> None:
        self.query = query
        self.message = message
        super().__init__(f"InfluxQL error: {message} (in {query[:300]!r})")


class SpoolFullError(IngestError):
    pass
