"""``AMQP_URL``: one or more ``amqp://user:password@host:port/vhost`` (``amqps://`` for TLS), comma-separated."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import unquote, urlsplit


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
        parts = urlsplit(url.strip())
        if parts.scheme not in ("amqp", "amqps"):
            raise ValueError(f"scheme must be amqp:// or amqps://, got {url!r}")
        if not parts.hostname:
            raise ValueError(f"no host in {url!r}")
        tls = parts.scheme == "amqps"
        try:
            port = parts.port or (5671 if tls else 5672)
        except ValueError as exc:
            raise ValueError(f"bad port in {url!r}") from exc
        path = parts.path.removeprefix("/")
        if "/" in path:
            raise ValueError(f"the vhost is one path segment (write / as %2F), got {url!r}")
        return cls(parts.hostname, port, tls, unquote(parts.username) if parts.username else "guest",
                   unquote(parts.password) if parts.password else "guest", unquote(path) or "/")

    @classmethod
    def parse_list(cls, value: str) -> list[AmqpUrl]:
        """The nodes of a comma-separated ``AMQP_URL``, in order (failover goes through them in turn)."""
        urls = [cls.parse(part) for part in value.split(",") if part.strip()]
        if not urls:
            raise ValueError("no amqp:// URL given")
        return urls

    @property
    def node(self) -> str:
        """``host:port``, for logs and the ``node`` label."""
        return f"{self.host}:{self.port}"
