"""``AMQP_URL`` and the AMQP settings of ingest: parsed, or refused naming the variable."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from ingest.amqp_url import AmqpUrl
from ingest.config import Settings


@pytest.mark.parametrize(("url", "expected"), [
    ("amqp://ingest:s%40cret@node1:5673/%2F", AmqpUrl("node1", 5673, False, "ingest", "s@cret", "/")),
    ("amqp://node1", AmqpUrl("node1", 5672, False, "guest", "guest", "/")),
    ("amqp://node1/", AmqpUrl("node1", 5672, False, "guest", "guest", "/")),
    ("amqps://u:p@node1/city", AmqpUrl("node1", 5671, True, "u", "p", "city")),
])
def test_amqp_url_parses_host_port_credentials_and_vhost(url: str, expected: AmqpUrl) -> None:
    assert AmqpUrl.parse(url) == expected


@pytest.mark.parametrize("url", ["mqtt://node1", "amqp://", "amqp://node1:port", "amqp://node1/a/b"])
def test_amqp_url_refuses_what_is_not_one_node(url: str) -> None:
    with pytest.raises(ValueError, match="amqp"):
        AmqpUrl.parse(url)


def test_amqp_url_list_keeps_the_order_of_the_nodes() -> None:
    nodes = AmqpUrl.parse_list(" amqp://a:1, amqp://b:2,amqp://c:3 ")
    assert [n.node for n in nodes] == ["a:1", "b:2", "c:3"]


@pytest.mark.parametrize(("value", "error"), [("amqp://a:1,,amqp://c:3", "URL 2 of 3 is empty"),
                                               ("amqp://a:1,http://b", "URL 2 of 2: scheme must be amqp://"),
                                               (" , ", "no broker URL")])
def test_amqp_url_list_names_the_bad_node(value: str, error: str) -> None:
    with pytest.raises(ValueError, match=error):
        AmqpUrl.parse_list(value)


def test_amqp_settings_empty_url_is_the_mqtt_source(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AMQP_URL", raising=False)
    settings = Settings()
    assert settings.amqp_urls == []
    assert settings.amqp_tls_context() is None
    assert (settings.ingest_queue, settings.ingest_amqp_prefetch) == ("yizhan.ingest", 2000)


@pytest.mark.parametrize(("name", "value"), [("AMQP_URL", "http://node1"), ("INGEST_QUEUE", "amq.ingest"),
                                             ("INGEST_QUEUE", "two words"), ("INGEST_AMQP_PREFETCH", "0"),
                                             ("INGEST_AMQP_HEARTBEAT_SECONDS", "1")])
def test_amqp_settings_refuse_bad_values_naming_them(monkeypatch: pytest.MonkeyPatch, name: str, value: str) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(ValidationError, match=name.lower()):
        Settings()


def test_amqp_settings_tls_context_for_amqps(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AMQP_URL", "amqp://a,amqps://b")
    assert Settings().amqp_tls_context() is not None
