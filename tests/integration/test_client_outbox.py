"""The SDK's outbox against the real embedded gateway: a queued text goes out under the
client id it was queued with, so sending it again (an answer lost on the way back) is
deduplicated by the server, not delivered twice."""

from __future__ import annotations

from pathlib import Path

from harness import Gateway
from sdk_support import receive, sdk_client
from tidings.client import outbox


async def test_a_retried_outbox_text_is_delivered_once(
    embedded_gateway: Gateway, tmp_path: Path
) -> None:
    alice = await sdk_client(embedded_gateway, tmp_path, "alice")
    bob = await sdk_client(embedded_gateway, tmp_path, "bob")
    try:
        nobody = "99999999-9999-4999-8999-999999999999"  # refused: holds nothing back
        alice.store.queue_outgoing("00000000-0000-4000-8000-000000000000", nobody, "lost")
        alice.store.queue_outgoing("11111111-1111-4111-8111-111111111111", bob.user_id, "one")
        alice.store.queue_outgoing("22222222-2222-4222-8222-222222222222", bob.user_id, "two")
        flushed = await outbox.flush(alice)
        assert [(r.conversation, r.text) for r in flushed.refused] == [(nobody, "lost")]
        first = flushed.sent
        assert [client_id[0] for client_id, _ in first] == ["1", "2"]
        assert alice.store.outgoing() == []
        # The answer to "two" was lost: the outbox sends it again, under the same id.
        again = await alice.send_text(bob.user_id, "two", client_id=first[1][0])
        assert again == first[1][1]
        sent = await outbox.send_or_queue(alice, bob.user_id, "three")
        got = await receive(bob, 3)  # a second "two" would come before "three"
        assert [e.text for e in got] == ["one", "two", "three"]
        assert [e.server_id for e in got] == [first[0][1], first[1][1], sent.server_id]
    finally:
        await alice.close()
        await bob.close()
