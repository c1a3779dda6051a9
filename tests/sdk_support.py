"""SDK clients for integration tests: registered against a test gateway."""

from __future__ import annotations

import asyncio
from pathlib import Path

from harness import Gateway, new_phone
from tidings.client.sdk import Client, Event


async def sdk_client(gateway: Gateway, home: Path, name: str) -> Client:
    client = Client(gateway.url, home / f"{name}.db")

    async def code(phone: str) -> str:
        return gateway.code_for(phone)

    await client.register(new_phone(), code)
    return client


async def receive(client: Client, count: int, kind: str = "text") -> list[Event]:
    """Drain the backlog and collect ``count`` events of ``kind``."""
    got: list[Event] = []
    listener = asyncio.create_task(client.listen())
    try:
        async with asyncio.timeout(15):
            while len(got) < count:
                event = await client.events.get()
                if event.kind == kind:
                    got.append(event)
    finally:
        listener.cancel()
        await asyncio.gather(listener, return_exceptions=True)
    return got
