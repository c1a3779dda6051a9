"""Message-feature content: encoding and decoding (old plain texts still read), the rules
every receiver enforces, and their effects on a local store (history and search index)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tidings.client import content, effects
from tidings.client.store import LocalStore, StoredMessage

HOUR_MS = 3600 * 1000


def test_decode_reads_typed_content_and_old_plain_text() -> None:
    payload = content.reply("sure", "m1", "want to come?")
    assert content.decode(json.dumps(payload).encode()) == payload
    assert content.decode(b"hello from an old client") == {
        "t": "text",
        "text": "hello from an old client",
    }
    assert content.decode(b'"a json string"')["text"] == '"a json string"'
    assert content.decode(b'{"no": "type"}')["t"] == "text"
    assert content.decode(b"\xff\xfe")["t"] == "text"


def test_builders_and_checks() -> None:
    assert content.text("hi") == {"t": "text", "text": "hi"}
    assert content.text("hi", ttl=30) == {"t": "text", "text": "hi", "ttl": 30}
    long = "word " * 40
    quoted = content.reply("yes", "m1", long)["excerpt"]
    assert len(quoted) == content.EXCERPT_CHARS
    assert quoted.endswith("…")
    assert content.reaction("m1", " 👍 ")["emoji"] == "👍"
    assert content.reaction("m1", "")["emoji"] == ""
    with pytest.raises(content.BadContent):
        content.reaction("m1", "this is a whole sentence, no emoji")
    with pytest.raises(content.BadContent):
        content.reaction("", "👍")
    with pytest.raises(content.BadContent):
        content.edit("m1", "  ")
    with pytest.raises(content.BadContent):
        content.timer(-1)
    with pytest.raises(content.BadContent):
        content.check({"t": "timer", "seconds": True})
    assert content.ttl_of({"ttl": "60"}) == 0
    assert content.ttl_of({"ttl": 60}) == 60


def test_rules() -> None:
    assert content.change_refusal("edit", "a", 0, "a", HOUR_MS) is None
    assert "only its sender" in str(content.change_refusal("edit", "a", 0, "b", HOUR_MS))
    late = content.EDIT_WINDOW_S * 1000 + 1
    assert "within 24 h" in str(content.change_refusal("delete", "a", 0, "a", late))
    assert content.react({"a": "👍", "b": "😂"}, "a", "❤️") == {"b": "😂", "a": "❤️"}
    assert content.react({"a": "👍"}, "a", "") == {}
    assert content.expires_at(1000, 0) is None
    assert content.expires_at(1000, 5) == 6000


def test_descriptions() -> None:
    assert content.summary({"a": "👍", "b": "👍", "c": "❤️"}) == "👍 2 ❤️"
    assert content.duration(90) == "1m30s"
    assert content.duration(86400) == "1d"
    assert content.describe_timer(0, "you") == "you turned disappearing messages off"
    extra = {"reply_to": "m1", "excerpt": "lunch?", "edited": True, "reactions": {"a": "👍"}}
    assert content.decorate("yes", extra) == '↪ replying to "lunch?" yes (edited) [👍]'
    assert content.decorate("", {"deleted": True}) == "(deleted)"
    assert content.decorate("ok", {"reply_to": "m1", "excerpt": ""}) == "↪ replying to (deleted) ok"


@pytest.fixture
def store(tmp_path: Path) -> LocalStore:
    return LocalStore(tmp_path / "store.db")


def _message(store: LocalStore, server_id: str, sender: str, ts: int, text: str) -> None:
    store.add_message(StoredMessage(server_id, "bob", sender, 1, ts, "text", text, {}, "sent"))


def test_remote_changes_follow_the_rules(store: LocalStore) -> None:
    _message(store, "m1", "alice", 0, "original words")

    def apply(payload: dict[str, object], sender: str, ts: int) -> object:
        return effects.apply_control(store, "c", "bob", (sender, 1), ts, dict(payload), "me")

    assert apply(content.edit("m1", "forged"), "mallory", HOUR_MS) is None
    assert apply(content.edit("m1", "late"), "alice", content.EDIT_WINDOW_S * 1000 + 1) is None
    assert apply(content.edit("nope", "x"), "alice", HOUR_MS) is None
    assert store.message("m1").text == "original words"  # type: ignore[union-attr]
    assert apply(content.edit("m1", "better words"), "alice", HOUR_MS) is not None
    assert [m.server_id for m in store.search("better")] == ["m1"]
    assert store.search("original") == []
    assert apply(content.delete("m1"), "alice", HOUR_MS) is not None
    assert store.message("m1").extra == {"deleted": True}  # type: ignore[union-attr]
    assert store.search("better") == []
    assert apply(content.reaction("m1", "👍"), "bob", HOUR_MS) is None  # deleted


def test_sweep_removes_expired_messages_from_history_and_index(store: LocalStore) -> None:
    for server_id, ttl in (("short", 10), ("long", 100), ("kept", 0)):
        payload = content.text(f"secret {server_id}", ttl)
        effects.keep(store, server_id, "bob", ("alice", 1), 1000, payload, "received")
    assert effects.sweep(store, 10_999) == []
    assert effects.sweep(store, 11_000) == ["short"]
    assert store.get_json(effects.NEXT_EXPIRY) == 101_000
    assert [m.server_id for m in store.search("secret")] == ["long", "kept"]
    assert effects.sweep(store, 200_000) == ["long"]
    assert store.get_json(effects.NEXT_EXPIRY) is None
    assert [m.server_id for m in store.history()] == ["kept"]
