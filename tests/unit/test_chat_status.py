"""The terminal chat's pure decisions: the status bar's text and the typing throttle."""

from __future__ import annotations

from tidings.client.chat_status import (
    TYPING_PAUSE_S,
    TYPING_REPEAT_S,
    TYPING_SHOWN_S,
    PeersTyping,
    Presence,
    TypingThrottle,
    presence_text,
    status_text,
    typing_text,
)

NOW = 1_800_000_000.0


def test_presence_reads_as_people_say_it() -> None:
    assert presence_text(None, NOW) == ""
    assert presence_text(Presence(online=False, visible=False), NOW) == ""
    assert presence_text(Presence(online=True, last_seen=NOW - 999), NOW) == "online"
    assert presence_text(Presence(online=False), NOW) == "offline"
    assert presence_text(Presence(False, NOW - 20), NOW) == "last seen just now"
    assert presence_text(Presence(False, NOW - 300), NOW) == "last seen 5 min ago"
    assert presence_text(Presence(False, NOW - 3 * 3600), NOW) == "last seen 3 h ago"
    assert presence_text(Presence(False, NOW - 3 * 86400), NOW).startswith("last seen 20")


def test_status_bar_shows_conversation_presence_unread_and_typing() -> None:
    assert status_text(None, None, {}, [], NOW) == "no conversation open (/to, /group)"
    assert status_text("Ann", None, {}, [], NOW) == "Ann"
    assert status_text("Ann", Presence(True), {}, [], NOW) == "Ann (online)"
    bar = status_text("Ann", Presence(True), {"Ben": 2, "team": 1, "Cat": 0}, ["Ann"], NOW)
    assert bar == "Ann (online) | unread: Ben 2, team 1 | Ann is typing…"


def test_typing_names() -> None:
    assert typing_text([]) == ""
    assert typing_text(["Ann", "Ben"]) == "Ann and Ben are typing…"
    assert typing_text(["Ann", "Ben", "Cat", "Dan"]) == "Ann, Ben and 2 more are typing…"


def test_typing_is_sent_at_start_repeated_while_typing_and_stopped_after_a_pause() -> None:
    throttle = TypingThrottle()
    assert throttle.key(0.0)  # the first key: started
    assert not throttle.key(0.5)  # then not for every key
    assert not throttle.key(TYPING_REPEAT_S - 0.1)
    assert not throttle.tick(TYPING_REPEAT_S)  # still typing: no pause yet
    assert throttle.key(TYPING_REPEAT_S + 0.1)  # repeated, so the peer's indicator stays
    last = TYPING_REPEAT_S + 0.1
    assert not throttle.tick(last + TYPING_PAUSE_S - 0.1)
    assert throttle.tick(last + TYPING_PAUSE_S)  # a pause: stopped, once
    assert not throttle.tick(last + TYPING_PAUSE_S + 10)
    assert throttle.key(100.0)  # typing again right after the pause: started again


def test_sending_stops_typing_once() -> None:
    throttle = TypingThrottle()
    assert not throttle.done()  # never typed: nothing to stop
    throttle.key(0.0)
    assert throttle.done()
    assert not throttle.done()
    assert not throttle.tick(100.0)  # the pause after a send sends nothing more
    assert throttle.key(100.5)  # the next message starts it again at once


def test_typing_never_exceeds_the_servers_rate() -> None:
    """Keys every 10 ms for a minute with a send every 7 s: at most 2 frames a second."""
    throttle = TypingThrottle()
    frames: list[float] = []
    for step in range(6000):
        now = step / 100
        if throttle.key(now) or throttle.tick(now):
            frames.append(now)
        if step % 700 == 699 and throttle.done():
            frames.append(now)
    for i in range(len(frames) - 2):
        assert frames[i + 2] - frames[i] >= 1.0


def test_peers_typing_shows_and_expires() -> None:
    peers = PeersTyping()
    peers.event("ann-id", "Ann", "started", NOW)
    peers.event("group:g", "Ben", "started", NOW)
    assert peers.in_conversation("ann-id", NOW + 1) == ["Ann"]
    assert peers.in_conversation("group:g", NOW + 1) == ["Ben"]
    assert peers.in_conversation(None, NOW) == []
    peers.event("ann-id", "Ann", "stopped", NOW + 2)
    assert peers.in_conversation("ann-id", NOW + 2) == []
    peers.stopped("group:g", "Ben")  # his message arrived
    assert peers.in_conversation("group:g", NOW + 2) == []
    peers.event("ann-id", "Ann", "started", NOW)
    assert peers.in_conversation("ann-id", NOW + TYPING_SHOWN_S) == []  # a lost stopped
