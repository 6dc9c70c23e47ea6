"""The decoder: contract rules, reject reasons, and that it never raises."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from telemetry import registry
from telemetry.codec import Decoded, Decoder
from telemetry.contract import MAX_PAYLOAD_BYTES, AgentConfig, Charger, Kind, Occupancy, RejectReason, Temperature

REG = registry.load()
NOW_MS = 1_795_000_000_000
DECODER = Decoder(REG, clock=lambda: NOW_MS / 1000)
S = "PL-KT-001"


def decode(kind: str, payload: Any, station: str = S) -> tuple[list[Any], list[tuple[str, str]]]:
    raw = payload if isinstance(payload, bytes) else json.dumps(payload, separators=(",", ":")).encode()
    out = DECODER.decode(f"stations/v1/{station}/{kind}", raw)
    return out.readings, [(r.reason.value, r.detail) for r in out.rejects]


def test_codec_valid_readings_of_each_kind() -> None:
    readings, rejects = decode("occupancy", {"ts": NOW_MS, "seq": 0, "people": 0, "entries": 5, "exits": 5})
    assert rejects == []
    assert readings == [Occupancy(ts=NOW_MS, seq=0, people=0, entries=5, exits=5)]
    readings, _ = decode("charger", {"ts": "2026-11-18T08:26:40Z", "seq": 1, "charger_id": "C2",
                                     "sockets_in_use": 10, "power_w": 0, "energy_wh": 1.5, "fault": "过流,E=1"})
    assert readings == [Charger(ts=1_794_990_400_000, seq=1, charger_id="C2", sockets_in_use=10, power_w=0.0,
                                energy_wh=1.5, fault="过流,E=1")]
    readings, _ = decode("temperature", [{"ts": NOW_MS - i, "seq": i, "sensor": "outdoor", "celsius": -60}
                                         for i in range(1000)])
    assert len(readings) == 1000
    assert isinstance(readings[0], Temperature)


@pytest.mark.parametrize(("payload", "detail"), [
    ({"ts": NOW_MS, "seq": 1, "people": "3"}, "people: Input should be a valid integer"),
    ({"ts": NOW_MS, "seq": 1, "people": 3.0}, "people: Input should be a valid integer"),
    ({"ts": NOW_MS, "seq": 1, "people": True}, "people: Input should be a valid integer"),
    ({"ts": NOW_MS, "seq": -1, "people": 3}, "seq: Input should be greater than or equal to 0"),
    ({"ts": NOW_MS, "seq": 2**63, "people": 3}, "seq: Input should be less than or equal to 9223372036854775807"),
    ({"ts": "2026-11-18T08:26:40", "seq": 1, "people": 3}, "ts: Value error, ts must be an RFC 3339 string"),
    ({"ts": "2026-11-18", "seq": 1, "people": 3}, "ts: Value error, ts must be an RFC 3339 string"),
    ({"ts": 1.5, "seq": 1, "people": 3}, "ts: Value error, ts must be an RFC 3339 string"),
    ({"ts": None, "seq": 1, "people": 3}, "ts: Value error, ts must be an RFC 3339 string"),
    ({"seq": 1, "people": 3}, "ts: Field required"),
    ({"ts": NOW_MS, "seq": 1, "people": 3, "extra": None}, "extra: Extra inputs are not permitted"),
    ([], "a batch holds 1 to 1000 readings, this one 0"),
    ([{"ts": NOW_MS, "seq": 1, "people": 1}] * 1001, "a batch holds 1 to 1000 readings, this one 1001"),
    ("people", "reading: Input should be a valid dictionary or instance of Occupancy"),
    ([[{"ts": NOW_MS}]], "[0] reading: Input should be a valid dictionary or instance of Occupancy"),
])
def test_codec_schema_rejects(payload: Any, detail: str) -> None:
    readings, rejects = decode("occupancy", payload)
    assert readings == []
    assert len(rejects) == 1
    assert rejects[0][0] == "schema"
    assert rejects[0][1].startswith(detail)


@pytest.mark.parametrize(("payload", "detail"), [
    (b'{"ts": 1, "seq": 1, "people": NaN}', "NaN is not valid JSON"),
    (b'{"ts": 1, "seq": 1, "people": Infinity}', "Infinity is not valid JSON"),
    (b'{"ts": 1, "seq": 1, "people": 1, "people": 2}', "duplicate key 'people'"),
    (b"\xef\xbb\xbf{}", "Unexpected UTF-8 BOM (decode using utf-8-sig) at line 1 column 1"),
    (b'{"a": "\xc3\x28"}', "not UTF-8: invalid continuation byte at byte 7"),
    (b"[" * 50_000, "nested too deeply"),
    (b"", "Expecting value at line 1 column 1"),
])
def test_codec_bad_json_rejects(payload: bytes, detail: str) -> None:
    assert decode("occupancy", payload) == ([], [("bad_json", detail)])


def test_codec_huge_float_is_not_infinity() -> None:
    _, rejects = decode("charger", b'{"ts": 1795000000000, "seq": 1, "charger_id": "C1", "sockets_in_use": 1,'
                                   b' "power_w": 1e400, "energy_wh": 1}')
    assert rejects == [("schema", "power_w: Input should be a finite number")]


def test_codec_too_large_is_checked_before_parsing() -> None:
    assert decode("occupancy", b"x" * (MAX_PAYLOAD_BYTES + 1)) == (
        [], [("too_large", f"payload is {MAX_PAYLOAD_BYTES + 1} bytes, at most {MAX_PAYLOAD_BYTES}")])


def test_codec_control_characters_in_strings_are_rejected() -> None:
    _, rejects = decode("charger", {"ts": NOW_MS, "seq": 1, "charger_id": "C1", "sockets_in_use": 1,
                                    "power_w": 1, "energy_wh": 1, "fault": "E1\nweather,x=1 2"})
    assert rejects == [("schema", "fault: String should match pattern '^[^\\x00-\\x1f\\x7f]*$'")]


def test_codec_config_topic_is_ignored_and_status_is_not_a_batch() -> None:
    out = DECODER.decode(f"stations/v1/{S}/config", b"not even json")
    assert (out.readings, out.rejects, out.status) == ([], [], None)
    _, rejects = decode("status", [{"state": "online"}])
    assert rejects[0][0] == "schema"


def test_codec_agent_config_defaults() -> None:
    assert AgentConfig().model_dump() == {"rev": "default", "generation": 0, "occupancy_interval_s": 60,
                                          "charger_interval_s": 30, "temperature_interval_s": 60,
                                          "status_interval_s": 60}


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=40),
    lambda children: st.lists(children, max_size=5) | st.dictionaries(
        st.sampled_from(["ts", "seq", "people", "entries", "exits", "charger_id", "sockets_in_use", "power_w",
                         "energy_wh", "fault", "sensor", "celsius", "humidity_pct", "state", "fw", "x"]) | st.text(),
        children, max_size=8),
    max_leaves=30)
topics = st.one_of(
    st.builds(lambda sid, kind: f"stations/v1/{sid}/{kind}",
              st.sampled_from([S, "PL-KT-042", "PL-KT-999", "", "+", "#", "x" * 300]),
              st.sampled_from(["occupancy", "charger", "temperature", "status", "config", "", "other"])),
    st.text(max_size=80))


@settings(max_examples=400, deadline=None)
@given(topic=topics, payload=st.one_of(st.binary(max_size=300), json_values.map(lambda v: json.dumps(v).encode())))
def test_codec_never_raises_and_every_outcome_is_points_or_counted_rejects(topic: str, payload: bytes) -> None:
    out = DECODER.decode(topic, payload)
    valid = len(out.readings) + (out.status is not None)
    ignored = out.kind is not None and out.kind.value == "config"
    assert valid or out.rejects or ignored
    for reject in out.rejects:
        assert isinstance(reject.reason, RejectReason)
        assert len(reject.detail) <= 256
        assert len(reject.topic) <= 256


SLOW = Decoder(REG, clock=lambda: NOW_MS / 1000, fast=False)
FIELDS = ["ts", "seq", "people", "entries", "exits", "charger_id", "sockets_in_use", "power_w", "energy_wh", "fault",
          "sensor", "celsius", "humidity_pct", "extra"]
VALUES = [str(NOW_MS), str(NOW_MS - 1), "0", "1", "3", "10", "11", "-1", "1001", "2.5", "3.0", "1e400", "-0",
          str(2**63), "true", "null", "NaN", '"C1"', '"C2"', '"indoor"', '"outdoor"', '"E:1"', '"a\\"b"',
          '"\\u0043\\u0031"', '"2026-11-18T08:26:40Z"', '"2026-11-18T08:26:40+08:00"', "{}", "[]", '"\\u003a"',
          '"x y"']
SPACES = ["", "", "", "", "", " ", "\n", "\t"]  # mostly compact, so the fast path runs often


TEMPLATES = {
    "occupancy": [("ts", str(NOW_MS)), ("seq", "1"), ("people", "3"), ("entries", "5"), ("exits", "2")],
    "charger": [("ts", '"2026-11-18T08:26:40+08:00"'), ("seq", "7"), ("charger_id", '"C1"'), ("sockets_in_use", "3"),
                ("power_w", "2.5"), ("energy_wh", "10"), ("fault", '"E:1"')],
    "temperature": [("ts", str(NOW_MS - 5)), ("seq", "0"), ("sensor", '"indoor"'), ("celsius", "-3.5"),
                    ("humidity_pct", "40")],
}


@st.composite
def reading_json(draw: st.DrawFn, kind: str) -> str:
    """A valid reading of ``kind``, often mutated: values swapped, keys duplicated, dropped or added, escapes."""
    pairs = list(TEMPLATES[kind])
    for _ in range(draw(st.integers(0, 2))):
        match draw(st.integers(0, 4)):
            case 0:
                i = draw(st.integers(0, len(pairs) - 1))
                pairs[i] = (pairs[i][0], draw(st.sampled_from(VALUES)))
            case 1:
                pairs.insert(draw(st.integers(0, len(pairs))), draw(st.sampled_from(pairs)))
            case 2 if len(pairs) > 1:
                pairs.pop(draw(st.integers(0, len(pairs) - 1)))
            case 3:
                pairs.append((draw(st.sampled_from(FIELDS)), draw(st.sampled_from(VALUES))))
            case _:
                i = draw(st.integers(0, len(pairs) - 1))
                pairs[i] = (pairs[i][0], pairs[i][1].replace("C", "\\u0043").replace("i", "\\u0069"))
    sp, key_sp = draw(st.sampled_from(SPACES)), draw(st.sampled_from(SPACES))
    body = ("," + sp).join(f'"{k}"{key_sp}:{sp}{v}' for k, v in pairs)
    return "{" + sp + body + sp + "}"


@st.composite
def payloads(draw: st.DrawFn, kind: str) -> bytes:
    items = draw(st.lists(reading_json(kind), min_size=1, max_size=4))
    text = items[0] if draw(st.booleans()) else "[" + ",".join(items) + "]"
    raw = text.encode()
    if draw(st.integers(0, 9)) == 0 and raw:  # sometimes damage it
        pos = draw(st.integers(0, len(raw) - 1))
        raw = raw[:pos] + draw(st.binary(min_size=0, max_size=2)) + raw[pos + 1:]
    return raw


@settings(max_examples=1500, deadline=None)
@given(data=st.data(), kind=st.sampled_from(["occupancy", "charger", "temperature"]))
def test_codec_fast_path_decides_exactly_as_the_reference_path(data: st.DataObject, kind: str) -> None:
    """The fast path (pydantic-core from bytes) never accepts what the reference path rejects, nor differs."""
    payload = data.draw(payloads(kind))
    topic = f"stations/v1/{S}/{kind}"
    fast, slow = DECODER.decode(topic, payload), SLOW.decode(topic, payload)
    assert (fast.readings, fast.rejects) == (slow.readings, slow.rejects)


# Messages that are not one JSON object each, made so that joined with their neighbours into one
# array they would read as valid readings: the grouped decode must still decide each alone.
CROSSING = [
    b'{"ts":%d,"seq":1,"people":2},{"ts":%d,"seq":2,"people":3}' % (NOW_MS, NOW_MS),  # two objects in one
    b'{"ts":%d,"seq":1,"people":2,"fault":"}' % NOW_MS,  # a string left open...
    b'{","seq":2}',  # ...closed by the next message
    b'{"ts":%d,"seq":1,"people":2,"x":[{"y":1}' % NOW_MS,  # an array left open...
    b'{"z":2}]}',  # ...closed by the next message
    b'{"ts":%d,"seq":1,"people":2} ' % NOW_MS,
    b'{"ts":%d,"seq":1,"people":2,"people":2}' % NOW_MS,
    b"{}",
    b"{",
    b"}",
    b'{"ts":[{}',  # a nested value opened under a key repeated later...
    b'{}],"ts":%d,"seq":1,"people":2}' % NOW_MS,  # ...so that pydantic-core never validates it
    b'{"ts":%d,"seq":%d,"people":2}' % (NOW_MS, 10**400),
    b'{"ts":%d,"seq":1,"people":2}' % 10**400,
]


@settings(max_examples=400, deadline=None)
@given(data=st.data())
def test_codec_decode_many_decides_each_message_as_decode_alone(data: st.DataObject) -> None:
    """Messages validated together (one JSON array per kind) get exactly the verdicts they get one by one."""
    messages = []
    for _ in range(data.draw(st.integers(1, 12))):
        kind = data.draw(st.sampled_from(["occupancy", "charger", "temperature"]))
        station = data.draw(st.sampled_from([S, "PL-KT-002", "PL-NOPE-1"]))
        payload = data.draw(st.one_of(payloads(kind), payloads(kind).filter(lambda p: p.startswith(b"{")),
                                      st.sampled_from(CROSSING)))
        messages.append((f"stations/v1/{station}/{kind}", payload))
    many = DECODER.decode_many(messages)
    for (topic, payload), out in zip(messages, many, strict=True):
        slow = SLOW.decode(topic, payload)
        assert (out.readings, out.rejects) == (slow.readings, slow.rejects), payload


def test_codec_decode_many_groups_only_what_it_can_vouch_for() -> None:
    topic = f"stations/v1/{S}/occupancy"
    DECODER.decode(topic, b"{}")  # the topic's route is known from here on
    ok = [b'{"ts":%d,"seq":%d,"people":2}' % (NOW_MS, i) for i in range(3)]
    assert all(out is not None and len(out.readings) == 1 for out in DECODER.decode_grouped([(topic, p) for p in ok]))
    # a string left open (odd quotes) is left to decode alone, the rest grouped
    mixed = [ok[0], CROSSING[1], ok[1], ok[2]]
    assert [out is not None for out in DECODER.decode_grouped([(topic, p) for p in mixed])] == [True, False, True, True]
    # an invalid member fails the group's validation: it is decided alone, the others grouped again
    mixed = [ok[0], b'{"ts":%d,"seq":1,"people":"2"}' % NOW_MS, ok[1]]
    assert [out is not None for out in DECODER.decode_grouped([(topic, p) for p in mixed])] == [True, False, True]
    # a huge ts is a counted reject, grouped or not (its seconds ahead are no float)
    huge = [ok[0], b'{"ts":%d,"seq":1,"people":2}' % 10**400]
    assert [r.reason.value for out in DECODER.decode_many([(topic, p) for p in huge]) for r in out.rejects] == [
        "ts_out_of_range"]
    assert [len(out.rejects) for out in DECODER.decode_many([(topic, p) for p in mixed])] == [0, 1, 0]


@pytest.mark.parametrize(("payload", "decided"), [
    (b'{"ts":1795000000000,"seq":1,"people":2}', True),
    (b'[{"ts": 1795000000000, "seq": 1, "people": 2}, {"ts": 1795000000001, "seq": 2, "people": 3}]', True),
    (b'{"ts":1795000000000,"seq":1,"people":2,"people":3}', False),  # duplicate key: the reference path rejects
    (b'{"ts":1795000000000,"seq":1,"people":"2"}', False),  # invalid: the reference path gives the reason
    (b'{"ts" :1795000000000,"seq":1,"people":2}', True),
    (b'{"ts":1795000000000,"seq":1,"people":2,"people" : 3}', False),  # a duplicate, however spaced
    (b'{"ts":1795000000000,"seq":1,"peo\\u0070le":2,"people":3}', False),  # escaped: the reference path
])
def test_codec_fast_path_decides_the_common_forms_only(payload: bytes, decided: bool) -> None:
    out = Decoded(station=REG.get(S), kind=Kind.OCCUPANCY)
    assert DECODER._readings_fast(payload, f"stations/v1/{S}/occupancy", out) is decided
    assert len(out.readings) == (payload.count(b"seq") if decided else 0)
