"""Fan-out: which devices must get a copy, and checking the sender covered them.

Like Signal, the sender encrypts once per recipient device and must name exactly the
devices the server knows; otherwise the send is refused with the right list so the
client can fetch the missing bundles and retry.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace

from tidings.core.envelopes import Envelope
from tidings.core.model import Device

DeviceMap = dict[str, dict[int, int]]
"""user id -> {device id -> registration id}"""


def required_devices(devices: Iterable[Device], sender_user: str, sender_device: int) -> DeviceMap:
    """Every device that must get a copy: all given devices except the sending one."""
    required: DeviceMap = {}
    for device in devices:
        if device.user_id == sender_user and device.device_id == sender_device:
            continue
        required.setdefault(device.user_id, {})[device.device_id] = device.registration_id
    return required


@dataclass(frozen=True)
class DeviceListCheck:
    missing: dict[str, list[int]] = field(default_factory=dict)
    extra: dict[str, list[int]] = field(default_factory=dict)
    stale: dict[str, list[int]] = field(default_factory=dict)

    @property
    def mismatched(self) -> bool:
        return bool(self.missing or self.extra)

    @property
    def ok(self) -> bool:
        return not (self.missing or self.extra or self.stale)


def check_device_list(
    required: Mapping[str, Mapping[int, int]],
    supplied: Mapping[str, Mapping[int, int | None]],
) -> DeviceListCheck:
    """Compare the sender's (user -> device -> registration id) list with the truth.

    A supplied registration id of ``None`` means "not asserted" and is never stale.
    """
    missing: dict[str, list[int]] = {}
    extra: dict[str, list[int]] = {}
    stale: dict[str, list[int]] = {}
    for user in sorted(set(required) | set(supplied)):
        want = required.get(user, {})
        have = supplied.get(user, {})
        if lost := sorted(set(want) - set(have)):
            missing[user] = lost
        if unknown := sorted(set(have) - set(want)):
            extra[user] = unknown
        changed = sorted(
            d for d in set(want) & set(have) if have[d] is not None and have[d] != want[d]
        )
        if changed:
            stale[user] = changed
    return DeviceListCheck(missing=missing, extra=extra, stale=stale)


def fan_out(template: Envelope, bodies: Mapping[str, Mapping[int, str]]) -> list[Envelope]:
    """One envelope per (user, device), each carrying that device's ciphertext."""
    return [
        replace(template.for_device(user, device), body=body)
        for user in sorted(bodies)
        for device, body in sorted(bodies[user].items())
    ]


def fan_out_same(template: Envelope, devices: Mapping[str, Iterable[int]]) -> list[Envelope]:
    """One envelope per device, all with the template's body (sender-key group sends)."""
    return [
        template.for_device(user, device)
        for user in sorted(devices)
        for device in sorted(devices[user])
    ]
