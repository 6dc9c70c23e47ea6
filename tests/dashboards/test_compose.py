"""docker-compose.yml, parsed and checked (Docker cannot run here): services, images and builds,
healthchecks, restart policies, volumes, mounted paths, and every environment variable against the
settings of the service that reads it."""

from __future__ import annotations

import importlib
import os
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic_settings import BaseSettings

from dashboards import provisioning
from dashboards.overview import GAZETTEER
from dashboards.report import scheduler
from tests.rig import ROOT

COMPOSE: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text(encoding="utf-8"))
SERVICES: dict[str, dict[str, Any]] = COMPOSE["services"]
PYTHON = {"ingest": "ingest.config", "gateway": "gateway.config", "simulator": "simulator.config",
          "reports": "dashboards.config", "ingest-cluster-1": "ingest.config", "ingest-cluster-2": "ingest.config"}
COMMANDS = {"reports": "dashboards", "ingest-cluster-1": "ingest", "ingest-cluster-2": "ingest"}
"""The module a service runs (``python -m``) when it is not named for it."""
RABBITMQ_NODES = ("rabbitmq1", "rabbitmq2", "rabbitmq3")
INGEST_REPLICAS = ("ingest-cluster-1", "ingest-cluster-2")
_INTERPOLATION = re.compile(r"\$\$|\$\{(\w+)(?::([-?])([^}]*))?\}")


def env_example() -> dict[str, str]:
    values = {}
    for line in (ROOT / ".env.example").read_text(encoding="utf-8").splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            key, _, value = line.partition("=")
            values[key.strip()] = value.strip()
    return values


def interpolate(text: str, env: dict[str, str]) -> str:
    """Compose's ``${VAR}``, ``${VAR:-default}`` and ``${VAR:?error}``; ``$$`` is a literal ``$``."""
    def one(m: re.Match[str]) -> str:
        if m.group(0) == "$$":
            return "$"
        value = env.get(m.group(1), "")
        if m.group(2) == "-":
            return value or m.group(3)
        if m.group(2) == "?" and not value:
            raise AssertionError(f"{m.group(1)} is required: {m.group(3)}")
        return value
    return _INTERPOLATION.sub(one, text)


def settings_class(service: str) -> type[BaseSettings]:
    cls: type[BaseSettings] = importlib.import_module(PYTHON[service]).Settings
    return cls


def names(cls: type[BaseSettings]) -> set[str]:
    return {name.upper() for name in cls.model_fields}


def environment(service: str) -> dict[str, str]:
    return {k: interpolate(str(v), env_example()) for k, v in SERVICES[service].get("environment", {}).items()}


def test_compose_runs_the_whole_stack_with_the_simulator_and_the_cluster_under_profiles() -> None:
    assert set(SERVICES) == {"mosquitto", "influxdb", "grafana", "ingest", "gateway", "reports", "simulator",
                             *RABBITMQ_NODES, *INGEST_REPLICAS}
    assert {name: s["profiles"] for name, s in SERVICES.items() if s.get("profiles")} == {
        "simulator": ["simulator"], **{name: ["cluster"] for name in (*RABBITMQ_NODES, *INGEST_REPLICAS)}}
    for name, service in SERVICES.items():
        assert service.get("image") or service.get("build"), f"{name}: neither image nor build"
    for name in PYTHON:
        assert SERVICES[name]["build"] == "."
        assert SERVICES[name]["image"] == "yizhan:latest"
        assert SERVICES[name]["command"][0] == COMMANDS.get(name, name), "the entry point is python -m: the command is the module"
    assert (ROOT / "Dockerfile").is_file()
    assert 'ENTRYPOINT ["python", "-m"]' in (ROOT / "Dockerfile").read_text(encoding="utf-8")


def test_every_long_running_service_has_a_healthcheck_and_a_restart_policy() -> None:
    for name, service in SERVICES.items():
        assert service.get("restart") in ("unless-stopped", "always", "no", "on-failure"), name
        if name == "simulator":  # a load generator without an endpoint, not restarted on purpose
            assert service["restart"] == "no"
            assert "healthcheck" not in service
            continue
        assert service["restart"] == "unless-stopped", name
        check = service["healthcheck"]["test"]
        assert check[0] == "CMD", name
        assert len(check) > 1, name
    for name, service in SERVICES.items():
        for dependency, condition in service.get("depends_on", {}).items():
            assert condition == {"condition": "service_healthy"}, f"{name} waits for {dependency} to be healthy"
            assert "healthcheck" in SERVICES[dependency]


def test_volumes_are_named_and_declared_and_mounted_files_exist() -> None:
    declared = set(COMPOSE["volumes"])
    used = set()
    for name, service in SERVICES.items():
        for mount in service.get("volumes", []):
            source, target = mount.split(":")[:2]
            if source.startswith("."):
                assert (ROOT / source).exists(), f"{name}: {source} does not exist"
            else:
                assert source in declared, f"{name}: volume {source} is not declared"
                used.add(source)
            assert target.startswith("/"), mount
    assert used == declared, f"declared but unused: {declared - used}"
    for stateful in ("mosquitto", "influxdb", "grafana", "ingest", "reports", *RABBITMQ_NODES, *INGEST_REPLICAS):
        assert any(not m.startswith(".") for m in SERVICES[stateful]["volumes"]), f"{stateful} keeps no state"


def _mounts(service: str) -> dict[str, str]:
    return {m.split(":")[1]: m.split(":")[0] for m in SERVICES[service]["volumes"]}


def test_grafana_mounts_the_provisioning_the_code_builds() -> None:
    mounts = _mounts("grafana")
    for kind in ("datasources", "dashboards", "alerting"):
        assert mounts[f"{provisioning.GRAFANA_DIR}/{kind}"] == f"./dashboards/provisioning/{kind}"
    provider = yaml.safe_load((ROOT / "dashboards/provisioning/dashboards/yizhan.yaml").read_text(encoding="utf-8"))
    path = provider["providers"][0]["options"]["path"]
    assert path.startswith(f"{provisioning.GRAFANA_DIR}/dashboards/")
    assert (ROOT / "dashboards/provisioning" / path.removeprefix(f"{provisioning.GRAFANA_DIR}/")).is_dir()
    home = environment("grafana")["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    assert (ROOT / "dashboards/provisioning" / home.removeprefix(f"{provisioning.GRAFANA_DIR}/")).is_file()
    assert mounts[f"/usr/share/grafana/{GAZETTEER}"] == "./dashboards/provisioning/gazetteer/yizhan-stations.json"


def test_mosquitto_mounts_the_shipped_config_and_keeps_its_persistence_in_a_volume() -> None:
    mounts = _mounts("mosquitto")
    assert mounts["/mosquitto/config/mosquitto.conf"] == "./deploy/mosquitto/mosquitto.conf"
    conf = (ROOT / "deploy/mosquitto/mosquitto.conf").read_text(encoding="utf-8")
    location = re.search(r"^persistence_location\s+(\S+)", conf, re.MULTILINE)
    assert location
    assert mounts[location.group(1).rstrip("/")] == "mosquitto-data"
    assert mounts["/mosquitto/auth"] == "mosquitto-auth", "password file and ACL go to their own volume"


def test_influxdb_is_set_up_with_org_bucket_token_and_the_dbrp_mapping() -> None:
    env = environment("influxdb")
    assert env["DOCKER_INFLUXDB_INIT_MODE"] == "setup"
    assert env["DOCKER_INFLUXDB_INIT_ADMIN_TOKEN"] == env_example()["INFLUX_TOKEN"]
    assert env["DOCKER_INFLUXDB_INIT_BUCKET"] == env_example()["INFLUX_BUCKET"]
    script = _mounts("influxdb")["/docker-entrypoint-initdb.d/init-dbrp.sh"]
    text = (ROOT / script).read_text(encoding="utf-8")
    assert "influx v1 dbrp create" in text
    assert "--rp autogen" in text
    assert "${DOCKER_INFLUXDB_INIT_BUCKET_ID}" in text
    assert "${INFLUX_DB" in text
    assert (ROOT / script).stat().st_mode & 0o111, "the entrypoint runs it: it must be executable"
    others = {k for k in env if not k.startswith("DOCKER_INFLUXDB_INIT_")}
    assert all(f"${{{k}" in text for k in others), f"{others}: set but not read by the init script"


def _operator_file(service: str, key: str, value: str, tmp_path: Path) -> str:
    """A file setting that names the operator's file in a mounted directory of the repository (the
    RabbitMQ CA, not in git) checks as a file of this machine standing in for it."""
    if not key.endswith("_FILE") or Path(value).exists():
        return value
    for target, source in _mounts(service).items():
        if value.startswith(f"{target}/") and source.startswith("."):
            assert (ROOT / source).is_dir(), f"{service}: {key} is in {source}, which does not exist"
            stand_in = tmp_path / value.removeprefix(f"{target}/")
            stand_in.write_text("operator's file\n")
            return str(stand_in)
    return value


@pytest.mark.parametrize("service", sorted(PYTHON))
def test_python_services_env_names_are_their_settings_and_validate(service: str, tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    env = environment(service)
    cls = settings_class(service)
    known = names(cls)
    assert set(env) <= known, f"{service} does not read {sorted(set(env) - known)}"
    for name in [n for n in list(os.environ) if n.upper() in known]:
        monkeypatch.delenv(name)
    for key, value in env.items():
        monkeypatch.setenv(key, _operator_file(service, key, value, tmp_path))
    cls()  # a bad value would stop the service at start


def test_grafana_env_is_grafana_s_own_or_read_by_the_provisioning_files() -> None:
    env = environment("grafana")
    dashboards_settings = importlib.import_module("dashboards.config").Settings
    referenced = set()
    for path in (ROOT / "dashboards/provisioning").rglob("*.yaml"):
        referenced |= set(re.findall(r"\$\{(\w+)\}", path.read_text(encoding="utf-8")))
    ours = {k for k in env if not k.startswith("GF_")}
    assert referenced <= ours, f"the provisioning files read {sorted(referenced - ours)}, which Grafana is not given"
    assert ours <= referenced, f"{sorted(ours - referenced)} given to Grafana but read by nothing"
    assert ours <= names(dashboards_settings), "named as dashboards/config.py names them"


def _strings(doc: Any) -> list[str]:
    if isinstance(doc, dict):
        return [s for v in doc.values() for s in _strings(v)]
    if isinstance(doc, list):
        return [s for v in doc for s in _strings(v)]
    return [doc] if isinstance(doc, str) else []


def test_every_variable_compose_interpolates_is_in_env_example() -> None:
    matches = [m for text in _strings(COMPOSE) for m in _INTERPOLATION.finditer(text) if m.group(1)]
    used = {m.group(1) for m in matches}
    assert used <= set(env_example()), f"missing from .env.example: {sorted(used - set(env_example()))}"
    required = {m.group(1) for m in matches if m.group(2) == "?"}
    assert required == {"INFLUX_TOKEN", "INFLUX_ADMIN_PASSWORD", "GRAFANA_ADMIN_PASSWORD", "MQTT_INGEST_PASSWORD",
                        "MQTT_GATEWAY_PASSWORD", "RABBITMQ_COOKIE"}


def test_compose_interpolation_refuses_a_missing_required_variable() -> None:
    with pytest.raises(AssertionError, match="INFLUX_TOKEN is required"):
        interpolate("${INFLUX_TOKEN:?set it}", {})
    assert interpolate("${A:-x} $${B}", {"A": ""}) == "x ${B}"


def test_services_share_one_registry_file() -> None:
    for name in PYTHON:
        assert environment(name)["STATIONS_FILE"] == "/etc/yizhan/stations.yaml"
        assert _mounts(name)["/etc/yizhan/stations.yaml"] == "./telemetry/stations.yaml"
    assert Path(ROOT / "telemetry/stations.yaml").is_file()


def test_reports_are_made_into_a_volume_that_the_gateway_serves() -> None:
    reports = SERVICES["reports"]
    assert reports["command"] == ["dashboards", "report-scheduler"]
    directory = environment("reports")["REPORTS_DIR"]
    assert _mounts("reports")[directory] == "reports"
    assert environment("gateway")["GATEWAY_REPORTS_DIR"] == directory
    assert f"reports:{directory}:ro" in SERVICES["gateway"]["volumes"], "the gateway only reads the reports"
    check = " ".join(reports["healthcheck"]["test"])
    assert f"{directory}/{scheduler.HEARTBEAT}" in check, "the healthcheck reads the scheduler's heartbeat"
    assert "fonts-wqy-microhei" in (ROOT / "Dockerfile").read_text(encoding="utf-8"), "the report's font"
    assert directory in (ROOT / "Dockerfile").read_text(encoding="utf-8"), "created for the yizhan user"


def test_broker_refuses_anonymous_clients_and_reads_the_provisioned_files() -> None:
    import yaml  # noqa: PLC0415

    from tests.rig import ROOT  # noqa: PLC0415

    conf = (ROOT / "deploy" / "mosquitto" / "mosquitto.conf").read_text().splitlines()
    assert {"allow_anonymous false", "password_file /mosquitto/auth/passwd", "acl_file /mosquitto/auth/acl"} <= set(conf)
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    assert "mosquitto-auth:/mosquitto/auth" in compose["services"]["mosquitto"]["volumes"]
    assert compose["services"]["gateway"]["environment"]["STATION_PASSWORD_FILE"] == "/mosquitto/auth/passwd"
    for name in ("ingest", "gateway"):
        assert compose["services"][name]["environment"]["MQTT_URL"].startswith(f"mqtt://{name}:")


def test_cluster_nodes_share_the_shipped_config_a_cookie_and_the_provisioned_definitions() -> None:
    conf = (ROOT / "deploy/rabbitmq/rabbitmq.conf").read_text(encoding="utf-8")
    settings = dict(line.split(" = ", 1) for line in conf.splitlines() if line.strip() and not line.startswith("#"))
    peers = sorted(v for k, v in settings.items() if k.startswith("cluster_formation.classic_config.nodes."))
    assert peers == [f"rabbit@{name}" for name in RABBITMQ_NODES]
    assert settings["cluster_formation.peer_discovery_backend"] == "classic_config"
    assert settings["mqtt.allow_anonymous"] == "false"
    assert (settings["listeners.tcp"], settings["mqtt.listeners.tcp"]) == ("none", "none"), "TLS only"
    definitions = settings["definitions.local.path"]
    for name in RABBITMQ_NODES:
        node = SERVICES[name]
        assert node["image"] == "rabbitmq:3.10"
        assert node["hostname"] == name, "the node name rabbit@<hostname> is what the peers list"
        mounts = _mounts(name)
        assert mounts["/etc/rabbitmq/rabbitmq.conf"] == "./deploy/rabbitmq/rabbitmq.conf"
        assert mounts["/etc/rabbitmq/enabled_plugins"] == "./deploy/rabbitmq/enabled_plugins"
        assert mounts[str(Path(definitions).parent)] == "mosquitto-auth", "where gateway provision writes"
        for key in ("ssl_options.cacertfile", "ssl_options.certfile", "ssl_options.keyfile"):
            assert mounts[str(Path(settings[key]).parent)] == "./deploy/rabbitmq/certs"
        assert mounts["/var/lib/rabbitmq"] == f"{name}-data"
        assert "RABBITMQ_COOKIE" in " ".join(node["entrypoint"]), "the shared cookie"
        assert environment(name)["RABBITMQ_COOKIE"] == env_example()["RABBITMQ_COOKIE"]
        assert node["healthcheck"]["test"][:2] == ["CMD", "rabbitmq-diagnostics"]
    assert "rabbitmq_mqtt" in (ROOT / "deploy/rabbitmq/enabled_plugins").read_text(encoding="utf-8")
    assert len({SERVICES[name]["ports"][0] for name in RABBITMQ_NODES}) == 3


def test_ingest_replicas_consume_the_queue_through_every_node() -> None:
    spools, names = set(), set()
    for name in INGEST_REPLICAS:
        env = environment(name)
        names.add(env.get("MQTT_CLIENT_ID", "yizhan-ingest"))
        urls = env["AMQP_URL"].split(",")
        assert [u.split("@")[1].split(":")[0] for u in urls] == list(RABBITMQ_NODES)
        assert all(u.startswith(f"amqps://ingest:{env_example()['MQTT_INGEST_PASSWORD']}@") for u in urls)
        assert all(u.endswith(":5671/yizhan") for u in urls), "the TLS listener and the provisioned vhost"
        assert env["INGEST_QUEUE"] == "yizhan.ingest"
        assert _mounts(name)[str(Path(env["AMQP_CA_FILE"]).parent)] == "./deploy/rabbitmq/certs"
        assert "MQTT_URL" not in env, "AMQP_URL makes the queue the source"
        spools.add(_mounts(name)[env["INGEST_SPOOL_DIR"]])
        assert set(SERVICES[name]["depends_on"]) == {*RABBITMQ_NODES, "influxdb"}
    assert len(spools) == len(INGEST_REPLICAS), "each replica keeps its own spool"
    assert len(names) == len(INGEST_REPLICAS), "each replica has its own name in ingest_stats (MQTT_CLIENT_ID)"
