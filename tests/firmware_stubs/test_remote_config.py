"""The config topic, transition by transition: older, equal, newer, empty, invalid, and across a restart."""

from __future__ import annotations

import json

import pytest

from firmware_stubs.buffer import Buffer, BufferFile
from firmware_stubs.remote_config import RemoteConfig
from telemetry.contract import AgentConfig
from tests.firmware_stubs.conftest import S

RUNNING = AgentConfig(rev="r5", generation=5, occupancy_interval_s=10)


@pytest.fixture
def buffer(buffer_file: BufferFile) -> Buffer:
    return buffer_file.buffer(station=S)


def running(buffer: Buffer) -> RemoteConfig:
    """A RemoteConfig that accepted RUNNING from the broker."""
    remote = RemoteConfig(buffer=buffer, name=S)
    assert remote.receive(RUNNING.model_dump_json().encode()) == RUNNING
    return remote


def refuse(remote: RemoteConfig) -> str:
    """Make ``remote`` refuse a config; returns the reason it holds."""
    remote.receive(b"{not json")
    assert remote.error is not None
    return remote.error


def msg(**fields: object) -> bytes:
    return json.dumps(fields).encode()


def test_remote_config_newer_generation_is_applied_saved_and_clears_the_error(buffer: Buffer) -> None:
    remote = running(buffer)
    refuse(remote)
    new = remote.receive(msg(rev="r6", generation=6, occupancy_interval_s=20))
    assert new is not None
    assert (remote.config, remote.error) == (new, None)
    assert (new.rev, new.generation, new.occupancy_interval_s) == ("r6", 6, 20)
    saved = buffer.config()
    assert saved is not None
    assert AgentConfig.model_validate_json(saved) == new


def test_remote_config_older_generation_is_ignored_with_a_warning(buffer: Buffer,
                                                                   caplog: pytest.LogCaptureFixture) -> None:
    remote = running(buffer)
    assert remote.receive(msg(rev="r4", generation=4, occupancy_interval_s=1)) is None
    assert (remote.config, remote.error) == (RUNNING, None)
    assert "older" in caplog.text
    assert [r.levelname for r in caplog.records if "older" in r.getMessage()] == ["WARNING"]
    assert AgentConfig.model_validate_json(buffer.config() or "") == RUNNING


def test_remote_config_equal_generation_and_identical_does_nothing_and_clears_the_error(buffer: Buffer) -> None:
    remote = running(buffer)
    refuse(remote)
    assert remote.receive(RUNNING.model_dump_json().encode()) is None
    assert (remote.config, remote.error) == (RUNNING, None)


def test_remote_config_equal_generation_with_other_settings_is_refused_with_the_reason(buffer: Buffer) -> None:
    remote = running(buffer)
    assert remote.receive(msg(rev="r5b", generation=5, occupancy_interval_s=99)) is None
    assert remote.config == RUNNING
    assert remote.error is not None
    assert "generation 5" in remote.error
    assert "r5" in remote.error


def test_remote_config_empty_payload_changes_nothing(buffer: Buffer) -> None:
    remote = running(buffer)
    refused = refuse(remote)
    for payload in (b"", b"  \n"):
        assert remote.receive(payload) is None
        assert (remote.config, remote.error) == (RUNNING, refused)
    assert AgentConfig.model_validate_json(buffer.config() or "") == RUNNING


@pytest.mark.parametrize(("payload", "reason"), [
    (b"{not json", "json"),
    (msg(rev="r9", generation=9, occupancy_interval_s=0), "occupancy_interval_s"),
    (msg(rev="r9", generation=-1), "generation"),
    (msg(rev="r9", generation="9"), "generation"),
])
def test_remote_config_invalid_is_refused_with_the_reason_and_the_old_one_stays(
        buffer: Buffer, payload: bytes, reason: str) -> None:
    remote = running(buffer)
    assert remote.receive(payload) is None
    assert remote.config == RUNNING
    assert remote.error is not None
    assert remote.error.startswith("config refused")
    assert reason in remote.error.lower()


def test_remote_config_defaults_are_generation_0_and_any_later_generation_replaces_them(buffer: Buffer) -> None:
    remote = RemoteConfig(buffer=buffer, name=S)
    assert remote.config == AgentConfig()
    assert remote.config.generation == 0
    assert remote.receive(msg(rev="r1", generation=1)) is not None


def test_remote_config_restart_runs_the_saved_generation_and_ignores_an_older_retained_one(buffer: Buffer,
                                                                                         buffer_file: BufferFile) -> None:
    running(buffer)
    again = RemoteConfig(buffer=buffer_file.buffer(station=S), name=S)  # the agent boots again
    assert again.config == RUNNING
    assert again.receive(msg(rev="r3", generation=3)) is None, "a broker restored from an old file took it back"
    assert again.config == RUNNING
    assert again.receive(RUNNING.model_dump_json().encode()) is None
    assert again.error is None
