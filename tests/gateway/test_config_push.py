"""The gateway's config push on one broker: the generation it assigns, read back from the retained config
after a restart, and the agent's answer to what it pushes."""

from __future__ import annotations

import json
import time
from pathlib import Path

from tests.gateway.conftest import start_stack
from tests.mqtt import Collector
from tests.rig import Influxd, wait_for

S = "PL-KT-004"


def test_gateway_config_generation_grows_across_a_gateway_restart(tmp_path: Path, influxd: Influxd) -> None:
    stack = start_stack(tmp_path, influxd)
    try:
        before = time.time_ns() // 1_000_000
        first = stack.operator.put(f"/v1/stations/{S}/config", json={"rev": "a", "status_interval_s": 30})
        assert first.status_code == 200, first.text
        g1 = first.json()["config"]["generation"]
        assert g1 >= before, "the generation is the push's time in ms"
        again = stack.operator.put(f"/v1/stations/{S}/config", json={"rev": "a", "status_interval_s": 30})
        g2 = again.json()["config"]["generation"]
        assert g2 > g1, "the same config pushed again gets a greater generation"
        assert again.json()["config"]["rev"] == "a"
        stack.gateway.stop()
        stack.gateway.start()
        wait_for(lambda: stack.viewer.get(f"/v1/stations/{S}/config").status_code == 200,
                 what="the retained config read back after the restart")
        assert stack.viewer.get(f"/v1/stations/{S}/config").json()["config"]["generation"] == g2
        third = stack.operator.put(f"/v1/stations/{S}/config", json={"rev": "b", "status_interval_s": 20})
        g3 = third.json()["config"]["generation"]
        assert g3 > g2
        retained = Collector(stack.broker.port, f"stations/v1/{S}/config")
        try:
            wait_for(lambda: retained.messages, what="the retained config")
            assert json.loads(retained.messages[0].payload) == third.json()["config"]
        finally:
            retained.close()
    finally:
        stack.close()


def test_gateway_generation_in_the_body_is_replaced_and_the_rev_ignores_it(tmp_path: Path,
                                                                            influxd: Influxd) -> None:
    stack = start_stack(tmp_path, influxd)
    try:
        one = stack.operator.put(f"/v1/stations/{S}/config", json={"generation": 1, "occupancy_interval_s": 15})
        two = stack.operator.put(f"/v1/stations/{S}/config", json={"generation": 2, "occupancy_interval_s": 15})
        assert one.status_code == two.status_code == 200, (one.text, two.text)
        assert one.json()["config"]["generation"] > 2
        assert one.json()["config"]["rev"] == two.json()["config"]["rev"], "rev derived from the settings only"
    finally:
        stack.close()
