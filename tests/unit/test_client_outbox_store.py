"""The outbox's rows (texts, other content, files) in the local store, how queued
messages are listed, and the file size limit checked before anything is queued."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from tidings.client import content, outbox, sending
from tidings.client.outbox_store import OutboxStore, Queued
from tidings.client.sending import FileTooLarge, seal_file
from tidings.client.store import LocalStore

FILE = {"t": "file", "key": "k", "digest": "d", "name": "a.png", "size": 3}


def test_entries_keep_their_order_payload_and_sealed_bytes(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "a.db")
    try:
        assert store.queue_outgoing("c1", "bob", "hi") == 1
        store.outbox.queue(Queued("c2", "bob", "a.png", FILE, b"sealed"))
        reply = content.reply("yes", "s1", "question")
        assert store.outbox.queue(Queued("c3", "group:g", "yes", reply)) == 3
        store.outbox.queue(Queued("c1", "bob", "again"))  # a client id is queued once
        entries = store.outbox.entries()
        assert [(q.client_id, q.kind) for q in entries] == [
            ("c1", "text"),
            ("c2", "file"),
            ("c3", "reply"),
        ]
        assert entries[0].text == "hi"
        assert entries[1].payload == FILE
        assert entries[1].blob == b"sealed"
        assert entries[1].media_id is None
        assert store.outgoing() == [
            ("c1", "bob", "hi"),
            ("c2", "bob", "a.png"),
            ("c3", "group:g", "yes"),
        ]

        store.outbox.uploaded("c2", "m1")  # the bytes are no longer needed here
        uploaded = store.outbox.entries()[1]
        assert (uploaded.media_id, uploaded.blob) == ("m1", None)
        store.drop_outgoing("c2")
        assert [q.client_id for q in store.outbox.entries()] == ["c1", "c3"]
    finally:
        store.close()


def test_an_older_store_with_a_texts_only_outbox_is_upgraded() -> None:
    db = sqlite3.connect(":memory:", isolation_level=None)
    db.execute(
        "CREATE TABLE outbox (seq INTEGER PRIMARY KEY AUTOINCREMENT, "
        "client_id TEXT NOT NULL UNIQUE, conversation TEXT NOT NULL, text TEXT NOT NULL)"
    )
    db.execute("INSERT INTO outbox(client_id, conversation, text) VALUES('c1', 'bob', 'hi')")
    store = OutboxStore(db)
    store.queue(Queued("c2", "bob", "a.png", FILE, b"x"))
    assert [(q.client_id, q.kind, q.blob) for q in store.entries()] == [
        ("c1", "text", None),
        ("c2", "file", b"x"),
    ]
    OutboxStore(db)  # opening again adds nothing twice


def test_queued_messages_say_what_they_are() -> None:
    listed = [
        Queued("c", "bob", "hi"),
        Queued("c", "bob", "yes", content.reply("yes", "s1", "q")),
        Queued("c", "bob", "👍", content.reaction("s2", "👍")),
        Queued("c", "bob", "", content.reaction("s2", "")),
        Queued("c", "bob", "new", content.edit("s3", "new")),
        Queued("c", "bob", "", content.delete("s4")),
        Queued("c", "bob", "a.png", FILE, b"x"),
    ]
    assert [outbox.listed(q) for q in listed] == [
        "hi",
        "[reply to s1] yes",
        "[reaction to s2] 👍",
        "[reaction to s2]",
        "[edit of s3] new",
        "[delete of s4]",
        "[file, 3 bytes] a.png",
    ]
    assert [outbox.summary(q.payload) for q in listed[1:] if q.payload] == [
        "yes",
        "👍",
        "",
        "new",
        "",
        "a.png",
    ]


async def test_a_file_over_the_limit_is_refused_before_it_is_queued(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "big.bin"
    path.write_bytes(b"x" * 100)
    payload, blob = await seal_file(path)
    assert payload["name"] == "big.bin"
    assert payload["size"] == 100
    assert "media_id" not in payload
    assert len(blob) > 100
    assert b"x" * 100 not in blob
    monkeypatch.setattr(sending, "MEDIA_BYTES", 99)
    with pytest.raises(FileTooLarge, match="at most 99 bytes"):
        await seal_file(path)
    monkeypatch.setattr(sending, "MEDIA_BYTES", 101)  # fits, but not once encrypted
    with pytest.raises(FileTooLarge):
        await seal_file(path)
