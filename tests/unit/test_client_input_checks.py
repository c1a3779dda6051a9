"""What people type into the client: search words, contacts, ``tidings code``."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from tidings.cli import main as tidings
from tidings.client.account import CommandError, check_contact
from tidings.client.store import LocalStore, StoredMessage, fts_query

TEXTS = [
    "it's end-to-end encrypted",
    "hi bob, NOT now",
    'to: carol "quoted"',
    "naïve café 42",
]


@pytest.fixture
def store(tmp_path: Path) -> Iterator[LocalStore]:
    store = LocalStore(tmp_path / "me.db")
    for i, text in enumerate(TEXTS):
        store.add_message(StoredMessage(f"s{i}", "c", "u", 1, i, "text", text, {}, "received"))
    yield store
    store.close()


@pytest.mark.parametrize(
    ("words", "found"),
    [
        ("end-to-end", [0]),  # FTS5 syntax read it as a column filter: "no such column: to"
        ("it's", [0]),
        ("bob,", [1]),
        ("NOT", [1]),
        ("AND OR NOT", []),  # operators are words like any other
        ("to:", [0, 2]),
        ('"quoted"', [2]),
        ("NEAR(bob hi)", []),
        ("caf*", [3]),  # a trailing * still means "starting with"
        ("naive CAFE", [3]),  # the index folds case and accents
        ("hi now", [1]),  # every word, in any order
    ],
)
def test_search_takes_plain_words(store: LocalStore, words: str, found: list[int]) -> None:
    assert [m.text for m in store.search(words)] == [TEXTS[i] for i in found]


def test_words_are_quoted_for_fts5_and_punctuation_alone_is_dropped() -> None:
    assert fts_query('say "hi" NOT it*') == '"say" """hi""" "NOT" "it"*'
    assert fts_query(" , - * ") == ""


@pytest.mark.parametrize(
    "who",
    ["+15550002", "0c6f3a52-8a9e-4c1e-9a6b-2f4d5e6f7a8b"],
)
def test_phone_numbers_and_user_ids_are_accepted(who: str) -> None:
    check_contact(who)


@pytest.mark.parametrize(
    ("who", "hint"),
    [
        ("5550002", "not an E.164 number"),
        ("555-0002", "not an E.164 number"),
        ("+1 555 0002", "not an E.164 number"),
        ("+0555", "not an E.164 number"),
        ("bob", "neither a phone number"),
    ],
)
def test_other_contacts_are_refused_with_a_hint(who: str, hint: str) -> None:
    with pytest.raises(CommandError, match=hint):
        check_contact(who)


def test_code_says_which_outbox_it_read(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # no server data directory here
    monkeypatch.delenv("TIDINGS_DATA_DIR", raising=False)
    assert tidings(["code", "+15550001"]) == 1
    err = capsys.readouterr().err
    assert str(tmp_path / ".tidings-data" / "otp-outbox.jsonl") in err
    assert "--data-dir" in err

    data = tmp_path / "server-data"
    data.mkdir()
    (data / "otp-outbox.jsonl").write_text(
        json.dumps({"phone": "+15550001", "code": "123456", "at": 1}) + "\n"
    )
    assert tidings(["code", "+15550002", "--data-dir", str(data)]) == 1
    assert f"looked in {data / 'otp-outbox.jsonl'}" in capsys.readouterr().err
    monkeypatch.setenv("TIDINGS_DATA_DIR", str(data))  # found as the server finds it
    assert tidings(["code", "+15550001"]) == 0
    assert capsys.readouterr().out == "123456\n"
