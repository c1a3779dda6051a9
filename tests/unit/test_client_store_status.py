"""The local store moves message statuses forward only."""

from __future__ import annotations

from pathlib import Path

from tidings.client.store import LocalStore, StoredMessage


def _message(server_id: str, status: str) -> StoredMessage:
    return StoredMessage(server_id, "bob", "me", 1, 1_700_000_000_000, "text", "hi", {}, status)


def test_a_late_delivered_receipt_never_undoes_read(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "me.db")
    try:
        _check(store)
    finally:
        store.close()


def _check(store: LocalStore) -> None:
    store.add_message(_message("m1", "sent"))
    store.add_message(_message("m2", "received"))
    store.set_status(["m1"], "read")
    store.set_status(["m1"], "delivered")  # travelled slower than the read receipt
    store.set_status(["m2"], "read")
    store.set_status(["m1", "m2"], "no-such-status")
    statuses = {m.server_id: m.status for m in store.history("bob")}
    assert statuses == {"m1": "read", "m2": "read"}
