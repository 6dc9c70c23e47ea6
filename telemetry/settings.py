"""Settings shared by the services, one class per dependency, read from the environment.

A service's ``Settings`` (in its ``config.py``) inherits the ones it needs, so each dependency's
configuration is written once and named the same everywhere (``MQTT_URL``, ``INFLUX_URL``, ...).
"""

from __future__ import annotations

import ssl
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Literal, NoReturn, Self, TypeVar
from urllib.parse import unquote, urlsplit

from pydantic import AfterValidator, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from telemetry import registry
from telemetry.storage import Tier


def parse_addr(value: str) -> tuple[str, int]:
    """``host:port`` (or ``:port``) for a listening address."""
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) < 65536:
        raise ValueError(f"expected host:port, got {value!r}")
    return host.strip("[]") or "127.0.0.1", int(port)


def _http_url(value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"must be an http:// or https:// URL, got {value!r}")
    return value.rstrip("/")


def _listen_addr(value: str) -> str:
    parse_addr(value)
    return value


HttpUrl = Annotated[str, AfterValidator(_http_url)]
"""An http:// or https:// URL with a host, kept without a trailing slash."""
ListenAddr = Annotated[str, AfterValidator(_listen_addr)]
"""``host:port`` to listen on (see :func:`parse_addr`)."""


T = TypeVar("T")


@dataclass(slots=True, frozen=True)
class Endpoint:
    """A broker URL split into what every client needs: ``scheme://user:password@host:port/path``."""

    host: str
    port: int
    tls: bool
    username: str | None
    password: str | None
    path: str

    @classmethod
    def parse(cls, url: str, *, plain: str, secure: str, ports: tuple[int, int]) -> Endpoint:
        """``url`` with the scheme ``plain`` or ``secure`` (TLS); ``ports`` are their default ports."""
        parts = urlsplit(url.strip())
        if parts.scheme not in (plain, secure):
            raise ValueError(f"scheme must be {plain}:// or {secure}://, got {url!r}")
        if not parts.hostname:
            raise ValueError(f"no host in {url!r}")
        tls = parts.scheme == secure
        try:
            port = parts.port or ports[tls]
        except ValueError as exc:
            raise ValueError(f"bad port in {url!r}") from exc
        return cls(parts.hostname, port, tls, unquote(parts.username) if parts.username else None,
                   unquote(parts.password) if parts.password else None, parts.path)


def parse_url_list(text: str, parse: Callable[[str], T]) -> tuple[T, ...]:
    """One or more URLs, comma-separated (the nodes of a cluster, tried in turn); a bad one names itself."""
    items = [item.strip() for item in text.split(",")]
    if not any(items):
        raise ValueError("no broker URL")
    urls = []
    for n, item in enumerate(items, start=1):
        if not item:
            raise ValueError(f"URL {n} of {len(items)} is empty (a stray comma?)")
        try:
            urls.append(parse(item))
        except ValueError as exc:
            if len(items) == 1:
                raise
            raise ValueError(f"URL {n} of {len(items)}: {exc}") from exc
    return tuple(urls)


@dataclass(slots=True, frozen=True)
class BrokerNode:
    """One broker (a node of a cluster) and how a client logs in there: what ``MQTT_URL`` names, with
    the TLS context built (:meth:`MqttSettings.mqtt_nodes`)."""

    host: str
    port: int
    username: str | None = None
    password: str | None = None
    tls: ssl.SSLContext | None = None


@dataclass(slots=True, frozen=True)
class MqttUrl:
    """``mqtt://user:password@host:port`` or ``mqtts://...`` (TLS), parsed."""

    host: str
    port: int
    tls: bool
    username: str | None = None
    password: str | None = None

    @classmethod
    def parse(cls, url: str) -> MqttUrl:
        e = Endpoint.parse(url, plain="mqtt", secure="mqtts", ports=(1883, 8883))
        return cls(e.host, e.port, e.tls, e.username, e.password)

    @classmethod
    def parse_list(cls, text: str) -> tuple[MqttUrl, ...]:
        """One or more URLs, comma-separated (the nodes of a cluster, tried in turn); a bad one names itself."""
        return parse_url_list(text, cls.parse)


class _Base(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="", case_sensitive=False, extra="ignore")


def _readable(value: Path | None) -> Path | None:
    """A certificate or key file must be readable at start, not fail later with a traceback."""
    if value is not None:
        try:
            with value.open("rb"):
                pass
        except OSError as exc:
            raise ValueError(f"cannot read {value}: {exc.strerror}") from exc
    return value


class MqttSettings(_Base):
    mqtt_url: str = "mqtt://127.0.0.1:1883"
    """One URL, or several comma-separated (see :meth:`MqttUrl.parse_list`)."""
    mqtt_ca_file: Path | None = None
    mqtt_cert_file: Path | None = None
    mqtt_key_file: Path | None = None

    @field_validator("mqtt_url")
    @classmethod
    def _valid_mqtt_url(cls, value: str) -> str:
        MqttUrl.parse_list(value)
        return value

    @field_validator("mqtt_ca_file", "mqtt_cert_file", "mqtt_key_file")
    @classmethod
    def _readable_mqtt_file(cls, value: Path | None) -> Path | None:
        return _readable(value)

    @model_validator(mode="after")
    def _key_needs_cert(self) -> Self:
        if self.mqtt_key_file is not None and self.mqtt_cert_file is None:
            raise ValueError("MQTT_KEY_FILE is set without MQTT_CERT_FILE (the client certificate it belongs to)")
        return self

    @property
    def mqtt_urls(self) -> tuple[MqttUrl, ...]:
        """Every broker of ``MQTT_URL``, in order."""
        return MqttUrl.parse_list(self.mqtt_url)

    @property
    def mqtt(self) -> MqttUrl:
        """The first broker of ``MQTT_URL`` (what a client of one broker uses)."""
        return self.mqtt_urls[0]

    def mqtt_nodes(self) -> list[BrokerNode]:
        """Every broker of ``MQTT_URL`` with its URL's login and TLS context, in order."""
        return [BrokerNode(u.host, u.port, u.username, u.password, self.mqtt_tls_context(u)) for u in self.mqtt_urls]

    def mqtt_tls_context(self, url: MqttUrl | None = None) -> ssl.SSLContext | None:
        """The TLS context for ``url`` (default the first) when it is ``mqtts://`` (system CAs unless
        ``MQTT_CA_FILE``), else None."""
        if not (url or self.mqtt).tls:
            return None
        ctx = ssl.create_default_context(cafile=str(self.mqtt_ca_file) if self.mqtt_ca_file else None)
        if self.mqtt_cert_file:
            ctx.load_cert_chain(self.mqtt_cert_file, self.mqtt_key_file)
        return ctx


class InfluxSettings(_Base):
    influx_url: HttpUrl = "http://127.0.0.1:8086"
    influx_db: str = "yizhan"
    influx_username: str | None = None
    influx_password: str | None = None
    influx_token: str | None = None
    influx_org: str | None = None
    influx_bucket: str | None = None
    influx_rollup_bucket: str | None = None
    influx_monitor_bucket: str | None = None
    influx_ca_file: Path | None = None

    @field_validator("influx_ca_file")
    @classmethod
    def _readable_influx_ca(cls, value: Path | None) -> Path | None:
        return _readable(value)

    @field_validator("influx_db")
    @classmethod
    def _valid_influx_db(cls, value: str) -> str:
        if not value or any(c in value for c in '"\\\n'):
            raise ValueError("database name must be non-empty, without quotes, backslashes or newlines")
        return value

    def bucket(self, tier: Tier) -> str:
        """2.x/3.x: the bucket of a tier (``INFLUX_BUCKET``, else ``INFLUX_DB``; ``_rollup``, ``_monitor`` after it)."""
        raw = self.influx_bucket or self.influx_db
        match tier:
            case Tier.ROLLUP:
                return self.influx_rollup_bucket or f"{raw}_rollup"
            case Tier.MONITOR:
                return self.influx_monitor_bucket or f"{raw}_monitor"
        return raw

    @property
    def influx_v2(self) -> bool:
        """A token selects the 2.x/3.x API (bucket and org); otherwise the 1.x API (database)."""
        return bool(self.influx_token)


class RegistrySettings(_Base):
    stations_file: Path | None = None

    def load_registry(self) -> registry.Registry:
        return registry.load(self.stations_file)


class LogSettings(_Base):
    log_format: Literal["text", "json"] = "text"
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"


S = TypeVar("S", bound=BaseSettings)


def load_or_exit(cls: type[S], program: str) -> S:
    """Read settings from the environment; on a bad value, name the variable and exit 2."""
    try:
        return cls()
    except ValidationError as exc:
        lines = [f"{program}: invalid settings:"]
        for err in exc.errors():
            name = str(err["loc"][0]).upper() if err["loc"] else "settings"
            lines.append(f"  {name}: {err['msg']}")
        _exit("\n".join(lines))


def _exit(message: str) -> NoReturn:
    print(message, file=sys.stderr)  # noqa: T201 - before logging exists
    raise SystemExit(2)
