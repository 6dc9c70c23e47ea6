"""Errors of the ingest service.

    IngestError
    ├── MqttError                     the broker connection failed or was lost
    │   ├── ConnectRefusedError       CONNACK with a non-zero return code (.code)
    │   ├── SubscribeRefusedError     SUBACK refused, granted QoS 0 or had another id (.topic_filter, .answer)
    │   └── MqttProtocolError         the broker sent bytes we cannot parse or may not send
    ├── AmqpError                     the RabbitMQ connection failed or was lost
    │   ├── AmqpClosedError           the broker closed the connection or channel (.reply_code, .reply_text, .method)
    │   └── AmqpProtocolError         the broker sent frames we cannot parse or may not send (.reply_code)
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
    def __init__(self, topic_filter: str, answer: str = "0x80 (refused)") -> None:
        self.topic_filter = topic_filter
        self.answer = answer
        super().__init__(f"broker did not grant QoS 1 for {topic_filter}: SUBACK with {answer}")


class MqttProtocolError(MqttError):
    pass


class AmqpError(IngestError):
    pass


class AmqpClosedError(AmqpError):
    """``connection.close`` or ``channel.close`` from the broker (403 ACCESS_REFUSED, 404 NOT_FOUND, 406
    PRECONDITION_FAILED, 320 CONNECTION_FORCED...); ``method`` names what it refused, as ``class.method``."""

    def __init__(self, reply_code: int, reply_text: str, method: str = "", *, channel: bool = False) -> None:
        self.reply_code, self.reply_text, self.method, self.channel = reply_code, reply_text, method, channel
        what = "channel" if channel else "connection"
        at = f" at {method}" if method else ""
        super().__init__(f"broker closed the {what}{at}: {reply_code} {reply_text}")


class AmqpProtocolError(AmqpError):
    def __init__(self, message: str, reply_code: int = 505) -> None:
        self.reply_code = reply_code
        super().__init__(message)


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
