"""Provisioning crypto (link request -> sealed blob -> identity on the new device) and the
encrypted backup format."""

from __future__ import annotations

import base64
import struct
from pathlib import Path

import pytest

from tidings.client import backup, provisioning
from tidings.client.backup import BackupError
from tidings.client.crypto.identity import DeviceKeys, IdentityKeyPair, PreKeyBundle
from tidings.client.provisioning import ProvisioningError, ProvisionPayload
from tidings.client.store import LocalStore, StoredMessage

FAST = 10  # scrypt log2(N) for tests: the real default (17) costs ~0.5 s per derivation


def _payload() -> ProvisionPayload:
    return ProvisionPayload(IdentityKeyPair.generate().seed, "link-code-123", "user-1", "+1555")


def _tamper(blob: str, index: int) -> str:
    prefix = provisioning.BLOB_PREFIX
    raw = bytearray(base64.urlsafe_b64decode(blob[len(prefix) :] + "=="))
    raw[index] ^= 1
    return prefix + base64.urlsafe_b64encode(bytes(raw)).decode().rstrip("=")


def test_blob_opens_only_with_the_requesting_devices_key() -> None:
    private, request = provisioning.new_link_request()
    assert request.startswith(provisioning.REQUEST_PREFIX)
    payload = _payload()
    blob = provisioning.seal(request, payload)
    assert blob.startswith(provisioning.BLOB_PREFIX)
    assert payload.link_code not in blob
    assert provisioning.open_blob(blob, private) == payload
    # Copy/paste may wrap lines.
    assert provisioning.open_blob(blob[:30] + "\n" + blob[30:], private) == payload

    other, _ = provisioning.new_link_request()
    with pytest.raises(ProvisioningError, match="does not open"):
        provisioning.open_blob(blob, other)


@pytest.mark.parametrize("index", [1, 20, 40, 50, -1])
def test_tampered_blob_is_refused(index: int) -> None:
    private, request = provisioning.new_link_request()
    blob = provisioning.seal(request, _payload())
    with pytest.raises(ProvisioningError):
        provisioning.open_blob(_tamper(blob, index), private)


@pytest.mark.parametrize(
    "text",
    ["", "hello", provisioning.REQUEST_PREFIX + "AAAA", "tidings-provision:1:AAAA"],
)
def test_malformed_link_requests_are_refused(text: str) -> None:
    with pytest.raises(ProvisioningError):
        provisioning.seal(text, _payload())


def test_truncated_or_foreign_blob_is_refused() -> None:
    private, _ = provisioning.new_link_request()
    with pytest.raises(ProvisioningError, match="truncated"):
        provisioning.open_blob(provisioning.BLOB_PREFIX + "AAAA", private)
    with pytest.raises(ProvisioningError, match="not a provisioning blob"):
        provisioning.open_blob("something else", private)


def test_linked_device_keys_sign_under_the_shared_identity() -> None:
    primary = DeviceKeys.generate()
    private, request = provisioning.new_link_request()
    payload = ProvisionPayload(primary.identity.seed, "c", "u")
    opened = provisioning.open_blob(provisioning.seal(request, payload), private)
    linked = DeviceKeys.from_identity(IdentityKeyPair(opened.identity_seed))
    assert linked.identity.public_key == primary.identity.public_key
    assert linked.signed_prekey.private_key != primary.signed_prekey.private_key
    upload = linked.signed_prekey_upload()
    bundle = PreKeyBundle(
        primary.identity.public_key,
        upload["key_id"],
        base64.b64decode(upload["public_key"]),
        base64.b64decode(upload["signature"]),
    )
    bundle.verify()  # the server runs the same check


# backup -----------------------------------------------------------------------------
def _filled_store(path: Path) -> LocalStore:
    store = LocalStore(path)
    store.put("device_keys", DeviceKeys.generate().to_bytes())
    store.put_json("tokens", {"user_id": "u", "device_id": 1, "access_token": "a"})
    store.put("link_request", b"pending")
    store.put_session("bob", 1, b"\x00\x01session")
    store.put_own_sender_key("g", b"own", ["bob", "cat"])
    store.put_group_receiver("g", b"recv")
    store.add_message(
        StoredMessage("s1", "bob", "bob", 1, 10, "text", "pineapple pizza", {}, "read")
    )
    store.add_message(StoredMessage("s2", "bob", "u", 1, 11, "text", "no thanks", {"x": 1}, "sent"))
    store.mark_processed("s1")
    return store


def test_backup_round_trip_restores_every_table(tmp_path: Path) -> None:
    original = _filled_store(tmp_path / "a.db")
    blob = backup.export_store(original, "pässphrase", log2_n=FAST)
    assert blob.startswith(backup.MAGIC)
    assert b"pineapple" not in blob
    assert b"session" not in blob
    backup.restore_store(blob, "pässphrase", tmp_path / "b.db")
    restored = LocalStore(tmp_path / "b.db")
    try:
        assert restored.get("device_keys") == original.get("device_keys")
        assert restored.get_json("tokens") == original.get_json("tokens")
        assert restored.get("link_request") is None
        assert restored.session("bob", 1) == b"\x00\x01session"
        assert restored.own_sender_key("g") == (b"own", ["bob", "cat"])
        assert restored.group_receiver("g") == b"recv"
        assert restored.history() == original.history()
        assert [m.server_id for m in restored.search("pineapple")] == ["s1"]
        assert restored.processed("s1")
        assert not restored.processed("s2")
    finally:
        original.close()
        restored.close()


def test_wrong_passphrase_and_tampering_fail_loudly(tmp_path: Path) -> None:
    store = _filled_store(tmp_path / "a.db")
    blob = backup.export_store(store, "right", log2_n=FAST)
    store.close()
    with pytest.raises(BackupError, match="wrong passphrase"):
        backup.decrypt_backup(blob, "wrong")
    with pytest.raises(BackupError, match="wrong passphrase"):
        backup.decrypt_backup(blob[:-1] + bytes([blob[-1] ^ 1]), "right")
    # The KDF parameters are authenticated: lowering the cost does not go unnoticed.
    header = bytearray(blob)
    header[len(backup.MAGIC) + 1] = FAST + 1
    with pytest.raises(BackupError, match="wrong passphrase"):
        backup.decrypt_backup(bytes(header), "right")
    with pytest.raises(BackupError, match="bad magic"):
        backup.decrypt_backup(b"X" * len(blob), "right")
    with pytest.raises(BackupError, match="too short"):
        backup.decrypt_backup(blob[:20], "right")
    empty = LocalStore(tmp_path / "c.db")
    with pytest.raises(BackupError, match="empty"):
        backup.export_store(empty, "", log2_n=FAST)
    empty.close()
    assert not (tmp_path / "never.db").exists()
    with pytest.raises(BackupError):
        backup.restore_store(blob, "wrong", tmp_path / "never.db")
    assert not (tmp_path / "never.db").exists()


def test_header_layout_and_default_cost() -> None:
    blob = backup.encrypt_backup({"v": 1, "tables": {}}, "pw", log2_n=FAST)
    magic, version, log2_n, r, p = struct.unpack_from(">5sBBBB", blob)
    assert (magic, version, log2_n, r, p) == (b"TDGBK", 1, FAST, 8, 1)
    assert backup.LOG2_N >= 17  # 128 MiB of scrypt memory by default
    implausible = bytearray(blob)
    implausible[6] = 30
    with pytest.raises(BackupError, match="implausible"):
        backup.decrypt_backup(bytes(implausible), "pw")


def test_restore_refuses_a_store_that_already_has_an_account(tmp_path: Path) -> None:
    store = _filled_store(tmp_path / "a.db")
    blob = backup.export_store(store, "pw", log2_n=FAST)
    store.close()
    with pytest.raises(BackupError, match="already holds an account"):
        backup.restore_store(blob, "pw", tmp_path / "a.db")
