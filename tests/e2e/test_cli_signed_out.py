"""A device whose number was registered elsewhere is told so, and what to run."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from pathlib import Path

import pytest

from cli_support import platform

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]


async def test_a_signed_out_device_is_told_to_register_again(tmp_path: Path) -> None:
    async with platform(tmp_path) as user:
        alice, bob = user("alice"), user("bob")
        await asyncio.gather(alice.register(), bob.register())
        phone_again = replace(alice, home=tmp_path / "alice-new-phone")
        await phone_again.register()  # the same number on another device

        _, err = await alice.run("send", "--to", bob.phone, "still me?", ok=False)
        assert "registered on another device" in err
        assert "tidings register" in err
