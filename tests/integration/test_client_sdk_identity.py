"""Safety numbers and identity-key changes between SDK clients on the real gateway.

A contact that registers again from a fresh install has a new identity key: the other
side must notice it (a notice in the conversation, the history kept), and must refuse
to send to that contact if the user had verified the old key, until the user accepts.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from harness import Gateway
from sdk_support import receive, sdk_client
from tidings.client.crypto.fingerprint import grouped
from tidings.client.sdk import (
    Client,
    Event,
    SafetyNumberMismatch,
    Trust,
    UntrustedIdentity,
)


async def _reinstall(gateway: Gateway, old: Client, home: Path, name: str) -> Client:
    """The same phone number registered again from an empty store: a new identity key.
    Registered again when the new random registration id happens to equal the old one
    (1 in 16380), since the server tells re-registrations apart by that id."""
    phone = old.store.get_json("phone")
    while True:
        fresh = Client(gateway.url, home / f"{name}.db")

        async def code(number: str) -> str:
            return gateway.code_for(number)

        await fresh.register(phone, code)
        if fresh.store.get_json("registration_id") != old.store.get_json("registration_id"):
            return fresh
        await fresh.close()  # pragma: no cover - 1 in 16380
        (home / f"{name}.db").unlink()  # pragma: no cover


async def _events_until_text(client: Client, text: str) -> list[Event]:
    """Every event up to and including the text message ``text``."""
    got: list[Event] = []
    listener = asyncio.create_task(client.listen())
    try:
        async with asyncio.timeout(15):
            while not got or (got[-1].kind, got[-1].text) != ("text", text):
                got.append(await client.events.get())
    finally:
        listener.cancel()
        await asyncio.gather(listener, return_exceptions=True)
    return got


async def test_both_sides_compute_the_same_safety_number(gateway: Gateway, tmp_path: Path) -> None:
    alice = await sdk_client(gateway, tmp_path, "alice")
    bob = await sdk_client(gateway, tmp_path, "bob")
    carol = await sdk_client(gateway, tmp_path, "carol")
    try:
        # Before any message: asking for the number fetches the contact's key.
        from_alice = await alice.safety_number(bob.user_id)
        from_bob = await bob.safety_number(alice.user_id)
        assert from_alice.digits == from_bob.digits
        assert len(from_alice.digits) == 60
        assert from_alice.digits.isdigit()
        assert len(grouped(from_alice.digits)) == 12
        assert from_alice.trust is Trust.UNVERIFIED
        assert (await alice.safety_number(carol.user_id)).digits != from_alice.digits
        with pytest.raises(ValueError, match="someone else"):
            await alice.safety_number(alice.user_id)

        with pytest.raises(SafetyNumberMismatch):
            await bob.mark_verified(alice.user_id, compared="1" * 60)
        assert (await bob.safety_number(alice.user_id)).trust is Trust.UNVERIFIED
        read_out = " ".join(grouped(from_alice.digits))  # as read from Alice's screen
        marked = await bob.mark_verified(alice.user_id, compared=read_out)
        assert marked.trust is Trust.VERIFIED
        assert (await bob.safety_number(alice.user_id)).trust is Trust.VERIFIED
    finally:
        for client in (alice, bob, carol):
            await client.close()


async def test_a_new_identity_key_is_shown_and_the_history_kept(
    gateway: Gateway, tmp_path: Path
) -> None:
    alice = await sdk_client(gateway, tmp_path, "alice")
    bob = await sdk_client(gateway, tmp_path, "bob")
    alice_again: Client | None = None
    try:
        await alice.send_text(bob.user_id, "before the reinstall")
        await receive(bob, 1)
        before = await bob.safety_number(alice.user_id)

        alice_again = await _reinstall(gateway, alice, tmp_path, "alice-again")
        await alice_again.send_text(bob.user_id, "new phone, same me")
        events = await _events_until_text(bob, "new phone, same me")
        kinds = [e.kind for e in events]
        assert kinds.index("identity") < kinds.index("text")
        notice = events[kinds.index("identity")]
        assert (notice.conversation, notice.extra["was_verified"]) == (alice.user_id, False)

        history = bob.store.history(alice.user_id)
        assert [(m.kind, m.text) for m in history] == [
            ("text", "before the reinstall"),
            ("identity", "safety number changed"),
            ("text", "new phone, same me"),
        ]
        after = await bob.safety_number(alice.user_id)
        assert after.digits != before.digits
        assert after.digits == (await alice_again.safety_number(bob.user_id)).digits
        # Never verified: the change is shown, and replying just works.
        await bob.send_text(alice.user_id, "welcome back")
        (reply,) = await receive(alice_again, 1)
        assert reply.text == "welcome back"
    finally:
        for client in (alice, bob, alice_again):
            if client is not None:
                await client.close()


async def test_sending_to_a_verified_contact_whose_key_changed_waits_for_acceptance(
    gateway: Gateway, tmp_path: Path
) -> None:
    alice = await sdk_client(gateway, tmp_path, "alice")
    bob = await sdk_client(gateway, tmp_path, "bob")
    alice_again: Client | None = None
    try:
        await bob.send_text(alice.user_id, "hello")
        await receive(alice, 1)
        await bob.mark_verified(alice.user_id)

        alice_again = await _reinstall(gateway, alice, tmp_path, "alice-again")
        # Bob sends first: the server says device 1 was re-registered, the new bundle
        # carries the new key, and the send stops before anything is encrypted to it.
        with pytest.raises(UntrustedIdentity):
            await bob.send_text(alice.user_id, "are you still you?")
        assert (await bob.safety_number(alice.user_id)).trust is Trust.CHANGED
        with pytest.raises(UntrustedIdentity):  # still refused: nothing was accepted
            await bob.send_text(alice.user_id, "are you still you?")
        notices = [m for m in bob.store.history(alice.user_id) if m.kind == "identity"]
        assert [m.extra["was_verified"] for m in notices] == [True]
        assert [m.text for m in bob.store.history(alice.user_id) if m.kind == "text"] == ["hello"]

        accepted = await bob.accept_identity(alice.user_id)
        assert accepted.trust is Trust.UNVERIFIED
        await bob.send_text(alice.user_id, "accepted your new key")
        (got,) = await receive(alice_again, 1)
        assert got.text == "accepted your new key"
    finally:
        for client in (alice, bob, alice_again):
            if client is not None:
                await client.close()
