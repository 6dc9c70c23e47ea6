"""``MQTT_URL``: one broker or a comma-separated list, each element checked and named when bad."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from firmware_stubs.config import Settings as AgentSettings
from firmware_stubs.service import addresses
from telemetry import registry
from telemetry.settings import MqttSettings, MqttUrl


def test_settings_one_mqtt_url_works_as_before() -> None:
    s = MqttSettings(mqtt_url="mqtt://user:p%40ss@broker.example:1884")
    assert s.mqtt == MqttUrl("broker.example", 1884, False, "user", "p@ss")
    assert s.mqtt_urls == (s.mqtt,)
    assert s.mqtt_tls_context() is None


def test_settings_mqtt_url_list_in_order_with_spaces_and_the_first_as_the_single_broker() -> None:
    s = MqttSettings(mqtt_url="mqtt://a:1883, mqtt://b:1884 ,mqtts://c")
    assert [(u.host, u.port, u.tls) for u in s.mqtt_urls] == [("a", 1883, False), ("b", 1884, False),
                                                              ("c", 8883, True)]
    assert s.mqtt.host == "a", "a client of one broker (ingest) uses the first"
    assert s.mqtt_tls_context() is None
    assert s.mqtt_tls_context(s.mqtt_urls[2]) is not None


@pytest.mark.parametrize(("value", "expected"), [
    ("mqtt://a:1883,http://b", "URL 2 of 2: scheme must be mqtt:// or mqtts://, got 'http://b'"),
    ("mqtt://a:1883,,mqtt://c", "URL 2 of 3 is empty"),
    ("mqtt://a:99999", "bad port in 'mqtt://a:99999'"),  # one URL: no position
    (" , ", "no broker URL"),
])
def test_settings_bad_element_of_the_mqtt_url_list_names_itself(value: str, expected: str) -> None:
    with pytest.raises(ValidationError, match="mqtt_url") as info:
        MqttSettings(mqtt_url=value)
    assert expected in str(info.value)


def test_settings_agent_logs_in_on_every_broker_as_its_url_says_or_as_the_station() -> None:
    station = registry.load().get("PL-KT-001")
    assert station is not None
    s = AgentSettings(mqtt_url="mqtt://a:1,mqtt://u:pw@b:2", station_password="secret")
    assert [(a.host, a.port, a.username, a.password) for a in addresses(s, station)] == [
        ("a", 1, "PL-KT-001", "secret"), ("b", 2, "u", "secret")]
