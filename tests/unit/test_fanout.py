"""Fan-out: who needs a copy, checking the sender's device list, building envelopes."""

from __future__ import annotations

from tidings.core.envelopes import Envelope, EnvelopeKind
from tidings.core.fanout import (
    DeviceListCheck,
    check_device_list,
    fan_out,
    fan_out_same,
    required_devices,
)
from tidings.core.model import Device


def _device(user: str, device_id: int, registration_id: int) -> Device:
    return Device(user, device_id, f"{user}-{device_id}", registration_id, 0.0)


def _template(body: str | None = None) -> Envelope:
    return Envelope(
        server_id="sid",
        kind=EnvelopeKind.MESSAGE,
        timestamp=1_700_000_000_000,
        sender_user="alice",
        sender_device=1,
        recipient_user="",
        recipient_device=0,
        client_id="c1",
        body=body,
    )


def test_required_devices_excludes_only_the_sending_device() -> None:
    devices = [
        _device("alice", 1, 11),
        _device("alice", 2, 12),
        _device("bob", 1, 21),
        _device("bob", 3, 23),
    ]
    assert required_devices(devices, "alice", 1) == {
        "alice": {2: 12},
        "bob": {1: 21, 3: 23},
    }


def test_required_devices_omits_sender_user_when_sender_has_one_device() -> None:
    devices = [_device("alice", 1, 11), _device("bob", 1, 21)]
    assert required_devices(devices, "alice", 1) == {"bob": {1: 21}}


def test_required_devices_keeps_same_device_id_of_another_user() -> None:
    devices = [_device("alice", 2, 12), _device("bob", 2, 22)]
    assert required_devices(devices, "alice", 2) == {"bob": {2: 22}}


def test_required_devices_empty() -> None:
    assert required_devices([], "alice", 1) == {}


def test_check_device_list_exact_match_is_ok() -> None:
    required = {"bob": {1: 21, 2: 22}}
    result = check_device_list(required, {"bob": {1: 21, 2: 22}})
    assert result == DeviceListCheck()
    assert result.ok
    assert not result.mismatched


def test_check_device_list_reports_missing_devices() -> None:
    required = {"bob": {1: 21, 2: 22, 3: 23}, "carol": {1: 31}}
    result = check_device_list(required, {"bob": {2: 22}})
    assert result.missing == {"bob": [1, 3], "carol": [1]}
    assert result.extra == {}
    assert result.stale == {}
    assert result.mismatched
    assert not result.ok


def test_check_device_list_reports_extra_devices_and_unknown_users() -> None:
    required = {"bob": {1: 21}}
    result = check_device_list(required, {"bob": {1: 21, 5: 25, 4: 24}, "mallory": {1: 1}})
    assert result.missing == {}
    assert result.extra == {"bob": [4, 5], "mallory": [1]}
    assert result.mismatched


def test_check_device_list_reports_stale_registration_ids() -> None:
    required = {"bob": {1: 21, 2: 22}}
    result = check_device_list(required, {"bob": {1: 999, 2: 22}})
    assert result.stale == {"bob": [1]}
    assert not result.mismatched
    assert not result.ok


def test_check_device_list_none_registration_id_is_never_stale() -> None:
    required = {"bob": {1: 21, 2: 22}}
    result = check_device_list(required, {"bob": {1: None, 2: None}})
    assert result.ok
    assert result.stale == {}


def test_check_device_list_combines_missing_extra_and_stale() -> None:
    required = {"bob": {1: 21, 2: 22}, "carol": {1: 31}}
    supplied: dict[str, dict[int, int | None]] = {"bob": {1: 7, 3: None}, "carol": {1: None}}
    result = check_device_list(required, supplied)
    assert result.missing == {"bob": [2]}
    assert result.extra == {"bob": [3]}
    assert result.stale == {"bob": [1]}


def test_fan_out_one_envelope_per_device_with_its_own_body() -> None:
    template = _template()
    bodies = {"bob": {2: "b2", 1: "b1"}, "alice": {3: "a3"}}
    envelopes = fan_out(template, bodies)
    assert [(e.recipient_user, e.recipient_device, e.body) for e in envelopes] == [
        ("alice", 3, "a3"),
        ("bob", 1, "b1"),
        ("bob", 2, "b2"),
    ]
    for envelope in envelopes:
        assert envelope.server_id == template.server_id
        assert envelope.sender_user == "alice"
        assert envelope.sender_device == 1
        assert envelope.timestamp == template.timestamp
        assert envelope.client_id == "c1"


def test_fan_out_empty() -> None:
    assert fan_out(_template(), {}) == []


def test_fan_out_same_copies_the_template_body_to_every_device() -> None:
    template = _template(body="sender-key-ciphertext")
    envelopes = fan_out_same(template, {"carol": [2, 1], "bob": {1}})
    assert [(e.recipient_user, e.recipient_device) for e in envelopes] == [
        ("bob", 1),
        ("carol", 1),
        ("carol", 2),
    ]
    assert {e.body for e in envelopes} == {"sender-key-ciphertext"}
    assert all(e.server_id == "sid" for e in envelopes)
