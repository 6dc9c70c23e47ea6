"""Errors of the gateway.

    GatewayError
    ├── DependencyUnavailableError   the broker or InfluxDB is down: answered 503 (.dependency)
    ├── InfluxQueryError             InfluxDB answered a query with an error (.status, .message)
    └── CredentialsError             a token or password file cannot be read or is malformed
        └── ApplyError               rabbitmqctl failed to apply the RabbitMQ definitions (.command)

Third-party errors (httpx, aiomqtt, rabbitmqctl) are translated at their seams: ``influx.py``, ``mqtt.py`` and
``rabbitmq.py``.
"""

from __future__ import annotations


class GatewayError(Exception):
    pass


class DependencyUnavailableError(GatewayError):
    def __init__(self, dependency: str, detail: str) -> None:
        self.dependency = dependency
        self.detail = detail
        super().__init__(f"{dependency} unavailable: {detail}")


class InfluxQueryError(GatewayError):
    def __init__(self, status: int, message: str) -> None:
        self.status = status
        self.message = message
        super().__init__(f"InfluxDB query failed ({status}): {message}")


class CredentialsError(GatewayError):
    pass


class ApplyError(CredentialsError):
    def __init__(self, command: list[str], detail: str) -> None:
        self.command = command
        super().__init__(f"{' '.join(command)}: {detail}")
