"""``AMQP_URL``: one or more ``amqp://user:password@host:port/vhost`` (``amqps://`` for TLS), comma-separated."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import unquote

from telemetry.settings import Endpoint, parse_url_list


@dataclass(slots=True, frozen=True)
class AmqpUrl:
    """One node of the cluster, parsed.

    The vhost is the path's one segment, percent-decoded (``%2F`` is ``/``); no path or an empty one is
    the default vhost ``/`` (RabbitMQ's URI spec makes ``amqp://host/`` the empty vhost, which nobody
    creates: taken here as ``/``, as most clients do).
    """

    host: str
    port: int
    tls: bool
    username: str = "guest"
    password: str = "guest"  # noqa: S105 - RabbitMQ's default user, as a URL without credentials means
    vhost: str = "/"

    @classmethod
    def parse(cls, url: str) -> AmqpUrl:
        e = Endpoint.parse(url, plain="amqp", secure="amqps", ports=(5672, 5671))
        path = e.path.removeprefix("/")
        if "/" in path:
            raise ValueError(f"the vhost is one path segment (write / as %2F), got {url!r}")
        return cls(e.host, e.port, e.tls, e.username or "guest", e.password or "guest", unquote(path) or "/")

    @classmethod
    def parse_list(cls, value: str) -> list[AmqpUrl]:
        """The nodes of a comma-separated ``AMQP_URL``, in order (failover goes through them in turn)."""
        return list(parse_url_list(value, cls.parse))

    @property
    def node(self) -> str:
        """``host:port``, for logs and the ``node`` label."""
        return f"{self.host}:{self.port}"
