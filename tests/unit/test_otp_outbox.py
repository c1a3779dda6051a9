"""The load generator's reader of dev-mode codes: concurrent waits miss no line."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from tidings.client.loadsim import OtpOutbox


async def test_concurrent_waits_each_find_their_code_while_lines_keep_arriving(
    tmp_path: Path,
) -> None:
    path = tmp_path / "otp-outbox.jsonl"
    path.write_bytes(b"")
    outbox = OtpOutbox(path)
    phones = [f"+1999{i:07d}" for i in range(120)]

    async def write_codes() -> None:
        for i, phone in enumerate(phones):
            with path.open("a") as f:
                f.write(json.dumps({"phone": phone, "code": f"{i:06d}", "at": i}) + "\n")
            await asyncio.sleep(0.001)  # the waiters scan between lines

    writer = asyncio.create_task(write_codes())
    codes = await asyncio.gather(*(outbox.code(phone) for phone in phones))
    await writer
    assert codes == [f"{i:06d}" for i in range(len(phones))]
