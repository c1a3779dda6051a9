"""MessageStore contract: idempotent appends, cursor order, acks and range deletes."""

from __future__ import annotations

import asyncio
import itertools
import time
import uuid
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from contract_support import sqlite_or_cassandra
from tidings.core.envelopes import Envelope, EnvelopeKind
from tidings.core.model import InboxItem
from tidings.engines.cassandra_inbox import CassandraMessageStore
from tidings.engines.embedded.inbox import SqliteMessageStore
from tidings.ports import MessageStore

# --------------------------------------------------------------------------- fixture


@pytest.fixture(params=["embedded", "cassandra"])
async def inbox(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[MessageStore]:
    async with sqlite_or_cassandra(
        request,
        lambda: SqliteMessageStore.at(tmp_path / "inbox.db"),
        lambda engine: engine.messages,
    ) as found:
        yield found


class Mail:
    """Envelopes as the delivery worker appends them, for one test.

    The first ``rows`` of a server id builds a real encoded ``Envelope`` (body
    ``env-<id>``) with a timestamp after every earlier one; later ``rows`` of the same
    id repeat the same bytes, as a replayed delivery batch does. User ids carry a
    per-test prefix: the Cassandra keyspace is shared (the embedded engine gets the
    same names, so the assertions are the same for both).
    """

    def __init__(self) -> None:
        self.tag = uuid.uuid4().hex[:12]
        self._clock = itertools.count(int(time.time() * 1000))
        self._sent: dict[tuple[str, int, str], bytes] = {}

    def user(self, name: str) -> str:
        return f"{self.tag}-{name}"

    def envelope(self, user: str, device: int, server_id: str, body: str | None = None) -> bytes:
        """A new envelope (a later timestamp) for ``server_id``."""
        return Envelope(
            server_id=server_id,
            kind=EnvelopeKind.MESSAGE,
            timestamp=next(self._clock),
            sender_user=self.user("sender"),
            sender_device=1,
            recipient_user=user,
            recipient_device=device,
            body=f"env-{server_id}" if body is None else body,
        ).encode()

    def rows(self, user: str, device: int, ids: Sequence[str]) -> list[tuple[str, int, str, bytes]]:
        out = []
        for sid in ids:
            key = (user, device, sid)
            if key not in self._sent:
                self._sent[key] = self.envelope(user, device, sid)
            out.append((user, device, sid, self._sent[key]))
        return out


@pytest.fixture
def mail() -> Mail:
    return Mail()


def body(item: InboxItem) -> str | None:
    return Envelope.decode(item.envelope).body


# --------------------------------------------------------------------------- inbox


async def test_inbox_append_is_idempotent_on_server_id(inbox: MessageStore, mail: Mail) -> None:
    bob = mail.user("bob")
    assert await inbox.append(mail.rows(bob, 1, ["a", "b", "c"])) == 3
    assert await inbox.append(mail.rows(bob, 1, ["a", "b", "c"])) == 0
    assert await inbox.append(mail.rows(bob, 1, ["c", "d"])) == 1
    assert await inbox.append([(bob, 1, "a", mail.envelope(bob, 1, "a", "different"))]) == 0
    items = await inbox.fetch(bob, 1, None, 100)
    assert [i.server_id for i in items] == ["a", "b", "c", "d"]
    assert body(items[0]) == "env-a"  # the first copy wins
    assert await inbox.pending(bob, 1) == 4


async def test_inbox_same_server_id_for_two_devices_is_two_items(
    inbox: MessageStore, mail: Mail
) -> None:
    bob = mail.user("bob")
    assert await inbox.append(mail.rows(bob, 1, ["a"]) + mail.rows(bob, 2, ["a"])) == 2
    assert [i.server_id for i in await inbox.fetch(bob, 2, None, 10)] == ["a"]
    assert await inbox.fetch(bob, 3, None, 10) == []


async def test_inbox_fetch_order_and_cursor_paging(inbox: MessageStore, mail: Mail) -> None:
    bob, carol = mail.user("bob"), mail.user("carol")
    ids = [f"m{i:02d}" for i in range(11)]
    for sid in ids:  # separate appends, interleaved with another device
        await inbox.append(mail.rows(bob, 1, [sid]) + mail.rows(carol, 1, [sid]))
    pages: list[list[str]] = []
    cursor: str | None = None
    while page := await inbox.fetch(bob, 1, cursor, 4):
        pages.append([i.server_id for i in page])
        cursor = page[-1].cursor
    assert pages == [ids[0:4], ids[4:8], ids[8:11]]
    assert await inbox.fetch(bob, 1, cursor, 4) == []


async def test_inbox_order_is_append_order(inbox: MessageStore, mail: Mail) -> None:
    """An envelope stamped before others but appended after them comes after them, and
    a cursor handed out before it arrived still reaches it."""
    bob = mail.user("bob")
    late = mail.rows(bob, 1, ["late"])  # stamped first
    await inbox.append(mail.rows(bob, 1, ["a", "b"]))
    page = await inbox.fetch(bob, 1, None, 10)
    assert [i.server_id for i in page] == ["a", "b"]
    await inbox.append(late)
    assert [i.server_id for i in await inbox.fetch(bob, 1, page[-1].cursor, 10)] == ["late"]
    await inbox.ack(bob, 1, ["a", "b"])
    assert [i.server_id for i in await inbox.fetch(bob, 1, None, 10)] == ["late"]
    (acked,) = await inbox.ack(bob, 1, ["late"])
    assert page[0].cursor < page[1].cursor < acked.cursor  # cursors sort in inbox order


async def test_inbox_concurrent_appends_to_one_device_never_land_behind_a_cursor(
    inbox: MessageStore, mail: Mail, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The delivery worker appends messages and receipts for one device from two consumers
    at once. Whatever a fetch has paged past, an append still in progress must come after
    it: here the older envelope's append is held up (on Cassandra, in its first read)
    while a newer one is appended and fetched."""
    bob = mail.user("bob")
    older, newer = mail.rows(bob, 1, ["older"]), mail.rows(bob, 1, ["newer"])
    held = asyncio.Event()
    if isinstance(inbox, CassandraMessageStore):
        real_seen = inbox._seen

        async def slow_first_read(user_id: str, device_id: int, ids: list[str]) -> Any:
            if ids == ["older"]:
                held.set()
                await asyncio.sleep(0.5)
            return await real_seen(user_id, device_id, ids)

        monkeypatch.setattr(inbox, "_seen", slow_first_read)
    else:
        held.set()  # one SQLite transaction per append: nothing to hold up

    slow = asyncio.create_task(inbox.append(older))
    await held.wait()
    await inbox.append(newer)
    first = await inbox.fetch(bob, 1, None, 10)
    await slow
    rest = await inbox.fetch(bob, 1, first[-1].cursor, 10) if first else []
    assert sorted(i.server_id for i in first + rest) == ["newer", "older"]


async def test_inbox_a_fetch_during_an_append_sees_a_prefix_of_it(
    inbox: MessageStore, mail: Mail, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Rows of one append become visible in order: a fetch that runs meanwhile sees the
    first few, never a later one without the earlier ones (its cursor would pass them).
    On Cassandra the append writes its rows in several requests; the first is held up."""
    if isinstance(inbox, CassandraMessageStore):
        real_write, held = inbox.cql.write_shared, [False]

        async def first_rows_late(name: str, parts: Any) -> None:
            if name == "inbox: rows" and not held[0]:
                held[0] = True
                await asyncio.sleep(0.3)
            await real_write(name, parts)

        monkeypatch.setattr(inbox.cql, "write_shared", first_rows_late)
    bob = mail.user("bob")
    await inbox.append(mail.rows(bob, 1, ["first"]))  # the day's partition is known
    ids = ["first"] + [f"m{i:02d}" for i in range(40)]
    rows = [(bob, 1, sid, mail.envelope(bob, 1, sid, "x" * 1500)) for sid in ids[1:]]
    appending = asyncio.create_task(inbox.append(rows))
    views: list[list[str]] = []
    while not appending.done():
        views.append([i.server_id for i in await inbox.fetch(bob, 1, None, 100)])
        await asyncio.sleep(0)  # a read may finish without yielding (SQLite reads at once)
    await appending
    views.append([i.server_id for i in await inbox.fetch(bob, 1, None, 100)])
    assert views[-1] == ids
    assert all(view == ids[: len(view)] for view in views), [v for v in views if v]


async def test_inbox_ack_by_cursor_needs_no_lookup_of_the_ids(
    inbox: MessageStore, mail: Mail, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The gateway hands each ack the cursor its fetch gave: the store can find the row
    even while the appending worker has not indexed it yet (no lookup is made here)."""
    bob = mail.user("bob")
    await inbox.append(mail.rows(bob, 1, ["a", "b", "c"]))
    items = await inbox.fetch(bob, 1, None, 10)
    if isinstance(inbox, CassandraMessageStore):

        async def unindexed(user_id: str, device_id: int, ids: list[str]) -> Any:
            return []

        monkeypatch.setattr(inbox, "_locate", unindexed)
    cursors = {i.server_id: i.cursor for i in items[:2]}
    acked = await inbox.ack(bob, 1, ["a", "b"], cursors)
    assert [i.server_id for i in acked] == ["a", "b"]
    assert [i.server_id for i in await inbox.fetch(bob, 1, None, 10)] == ["c"]


async def test_inbox_ack_removes_and_returns_pending_items(inbox: MessageStore, mail: Mail) -> None:
    bob, carol = mail.user("bob"), mail.user("carol")
    await inbox.append(mail.rows(bob, 1, ["a", "b", "c", "d"]))
    acked = await inbox.ack(bob, 1, ["c", "a"])
    assert [(i.server_id, body(i)) for i in acked] == [("a", "env-a"), ("c", "env-c")]
    assert [i.server_id for i in await inbox.fetch(bob, 1, None, 10)] == ["b", "d"]
    assert await inbox.pending(bob, 1) == 2

    assert await inbox.ack(bob, 1, ["a", "c"]) == []  # already acked: nothing pending
    assert await inbox.ack(bob, 1, ["nope"]) == []
    assert await inbox.ack(bob, 1, []) == []
    assert await inbox.ack(carol, 1, ["b"]) == []  # another inbox

    assert [i.server_id for i in await inbox.ack(bob, 1, ["b", "d", "zzz"])] == ["b", "d"]
    assert await inbox.fetch(bob, 1, None, 10) == []
    assert await inbox.pending(bob, 1) == 0


async def test_inbox_out_of_order_acks_within_the_window(inbox: MessageStore, mail: Mail) -> None:
    bob = mail.user("bob")
    ids = [f"m{i:02d}" for i in range(40)]
    await inbox.append(mail.rows(bob, 1, ids))
    in_flight = await inbox.fetch(bob, 1, None, 32)
    odd = [i.server_id for i in in_flight[1::2]]
    assert [i.server_id for i in await inbox.ack(bob, 1, odd[::-1])] == odd
    assert [i.server_id for i in await inbox.fetch(bob, 1, None, 100)] == ids[0:32:2] + ids[32:]
    assert await inbox.pending(bob, 1) == 40 - 16
    even = [i.server_id for i in in_flight[0::2]]
    assert [i.server_id for i in await inbox.ack(bob, 1, even)] == even
    assert [i.server_id for i in await inbox.fetch(bob, 1, None, 100)] == ids[32:]
    assert await inbox.pending(bob, 1) == 8


async def test_inbox_cursor_still_pages_after_acks(inbox: MessageStore, mail: Mail) -> None:
    bob = mail.user("bob")
    await inbox.append(mail.rows(bob, 1, ["a", "b", "c", "d", "e"]))
    page = await inbox.fetch(bob, 1, None, 2)
    await inbox.ack(bob, 1, [i.server_id for i in page])
    assert [i.server_id for i in await inbox.fetch(bob, 1, page[-1].cursor, 2)] == ["c", "d"]
    await inbox.append(mail.rows(bob, 1, ["f"]))
    assert [i.server_id for i in await inbox.fetch(bob, 1, None, 10)] == ["c", "d", "e", "f"]


async def test_inbox_acked_item_is_never_fetched_again_even_if_replayed(
    inbox: MessageStore, mail: Mail
) -> None:
    """A delivery batch replayed after a crash re-appends envelopes already acked."""
    bob = mail.user("bob")
    await inbox.append(mail.rows(bob, 1, ["a", "b"]))
    await inbox.ack(bob, 1, ["a", "b"])
    assert await inbox.append(mail.rows(bob, 1, ["a", "b", "c"])) == 1
    assert [i.server_id for i in await inbox.fetch(bob, 1, None, 10)] == ["c"]


async def test_inbox_purge_device(inbox: MessageStore, mail: Mail) -> None:
    bob = mail.user("bob")
    await inbox.append(mail.rows(bob, 1, ["a", "b"]) + mail.rows(bob, 2, ["a"]))
    await inbox.ack(bob, 1, ["a"])
    await inbox.purge_device(bob, 1)
    assert await inbox.fetch(bob, 1, None, 10) == []
    assert await inbox.pending(bob, 1) == 0
    assert [i.server_id for i in await inbox.fetch(bob, 2, None, 10)] == ["a"]
    # a purged (relinked) device starts with an empty inbox that works as usual
    assert await inbox.append(mail.rows(bob, 1, ["x"])) == 1
    assert [i.server_id for i in await inbox.fetch(bob, 1, None, 10)] == ["x"]


async def test_inbox_ping(inbox: MessageStore) -> None:
    await inbox.ping()
