"""MessageStore contract: idempotent appends, cursor order, acks and range deletes."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import pytest

from tidings.engines.embedded.inbox import SqliteMessageStore
from tidings.ports import MessageStore

# --------------------------------------------------------------------------- fixture


@pytest.fixture(params=["embedded"])
async def inbox(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[MessageStore]:
    assert request.param == "embedded"
    engine = SqliteMessageStore.at(tmp_path / "inbox.db")
    await engine.start()
    try:
        yield engine
    finally:
        await engine.close()


# --------------------------------------------------------------------------- inbox


def rows(user: str, device: int, ids: Sequence[str]) -> list[tuple[str, int, str, bytes]]:
    return [(user, device, sid, f"env-{sid}".encode()) for sid in ids]


async def test_inbox_append_is_idempotent_on_server_id(inbox: MessageStore) -> None:
    assert await inbox.append(rows("bob", 1, ["a", "b", "c"])) == 3
    assert await inbox.append(rows("bob", 1, ["a", "b", "c"])) == 0
    assert await inbox.append(rows("bob", 1, ["c", "d"])) == 1
    assert await inbox.append([("bob", 1, "a", b"different bytes")]) == 0
    items = await inbox.fetch("bob", 1, None, 100)
    assert [i.server_id for i in items] == ["a", "b", "c", "d"]
    assert items[0].envelope == b"env-a"  # the first copy wins
    assert await inbox.pending("bob", 1) == 4


async def test_inbox_same_server_id_for_two_devices_is_two_items(inbox: MessageStore) -> None:
    assert await inbox.append(rows("bob", 1, ["a"]) + rows("bob", 2, ["a"])) == 2
    assert [i.server_id for i in await inbox.fetch("bob", 2, None, 10)] == ["a"]
    assert await inbox.fetch("bob", 3, None, 10) == []


async def test_inbox_fetch_order_and_cursor_paging(inbox: MessageStore) -> None:
    ids = [f"m{i:02d}" for i in range(11)]
    for sid in ids:  # separate appends, interleaved with another device
        await inbox.append(rows("bob", 1, [sid]) + rows("carol", 1, [sid]))
    pages: list[list[str]] = []
    cursor: str | None = None
    while page := await inbox.fetch("bob", 1, cursor, 4):
        pages.append([i.server_id for i in page])
        cursor = page[-1].cursor
    assert pages == [ids[0:4], ids[4:8], ids[8:11]]
    assert await inbox.fetch("bob", 1, cursor, 4) == []


async def test_inbox_ack_removes_and_returns_pending_items(inbox: MessageStore) -> None:
    await inbox.append(rows("bob", 1, ["a", "b", "c", "d"]))
    acked = await inbox.ack("bob", 1, ["c", "a"])
    assert [(i.server_id, i.envelope) for i in acked] == [("a", b"env-a"), ("c", b"env-c")]
    assert [i.server_id for i in await inbox.fetch("bob", 1, None, 10)] == ["b", "d"]
    assert await inbox.pending("bob", 1) == 2

    assert await inbox.ack("bob", 1, ["a", "c"]) == []  # already acked: nothing pending
    assert await inbox.ack("bob", 1, ["nope"]) == []
    assert await inbox.ack("bob", 1, []) == []
    assert await inbox.ack("carol", 1, ["b"]) == []  # another inbox

    assert [i.server_id for i in await inbox.ack("bob", 1, ["b", "d", "zzz"])] == ["b", "d"]
    assert await inbox.fetch("bob", 1, None, 10) == []
    assert await inbox.pending("bob", 1) == 0


async def test_inbox_cursor_still_pages_after_acks(inbox: MessageStore) -> None:
    await inbox.append(rows("bob", 1, ["a", "b", "c", "d", "e"]))
    page = await inbox.fetch("bob", 1, None, 2)
    await inbox.ack("bob", 1, [i.server_id for i in page])
    assert [i.server_id for i in await inbox.fetch("bob", 1, page[-1].cursor, 2)] == ["c", "d"]
    await inbox.append(rows("bob", 1, ["f"]))
    assert [i.server_id for i in await inbox.fetch("bob", 1, None, 10)] == ["c", "d", "e", "f"]


async def test_inbox_acked_item_is_never_fetched_again_even_if_replayed(
    inbox: MessageStore,
) -> None:
    """A delivery batch replayed after a crash re-appends envelopes already acked."""
    await inbox.append(rows("bob", 1, ["a", "b"]))
    await inbox.ack("bob", 1, ["a", "b"])
    assert await inbox.append(rows("bob", 1, ["a", "b", "c"])) == 1
    assert [i.server_id for i in await inbox.fetch("bob", 1, None, 10)] == ["c"]


async def test_inbox_purge_device(inbox: MessageStore) -> None:
    await inbox.append(rows("bob", 1, ["a", "b"]) + rows("bob", 2, ["a"]))
    await inbox.ack("bob", 1, ["a"])
    await inbox.purge_device("bob", 1)
    assert await inbox.fetch("bob", 1, None, 10) == []
    assert await inbox.pending("bob", 1) == 0
    assert [i.server_id for i in await inbox.fetch("bob", 2, None, 10)] == ["a"]
    # a purged (relinked) device starts with an empty inbox that works as usual
    assert await inbox.append(rows("bob", 1, ["x"])) == 1
    assert [i.server_id for i in await inbox.fetch("bob", 1, None, 10)] == ["x"]


async def test_inbox_ping(inbox: MessageStore) -> None:
    await inbox.ping()
