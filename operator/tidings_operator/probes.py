"""Probes of a peer region's data plane, as the failover loop makes them: its gateway's
``/readyz`` and a TCP connection to its Kafka. Each answers None when the peer's part
answered, else what went wrong (published in the region's sightings)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable

import httpx

Probe = Callable[[str], Awaitable[str | None]]
"""A health check of one address: None when it answered, else what went wrong."""

TIMEOUT = 2.0
"""Seconds one probe may take: the loop probes every peer in one heartbeat interval."""


async def probe_gateway(endpoint: str, timeout: float = TIMEOUT) -> str | None:
    url = f"{endpoint.rstrip('/')}/readyz"
    if "://" not in url:
        url = f"http://{url}"
    try:
        async with httpx.AsyncClient(timeout=timeout) as client:
            response = await client.get(url)
    except httpx.HTTPError as exc:
        return f"{url}: {type(exc).__name__} {exc}".strip()
    return None if response.is_success else f"{url}: HTTP {response.status_code}"


async def probe_kafka(bootstrap_servers: str, timeout: float = TIMEOUT) -> str | None:
    """Reachable when any bootstrap server accepts a TCP connection (a broker that
    accepts can be produced to; one that does not is what a lost region looks like)."""
    failures = []
    for server in (s.strip() for s in bootstrap_servers.split(",") if s.strip()):
        host, _, port = server.rpartition(":")
        try:
            _, writer = await asyncio.wait_for(
                asyncio.open_connection(host.strip("[]") or server, int(port or 9092)), timeout
            )
        except (OSError, TimeoutError, ValueError) as exc:
            failures.append(f"kafka {server}: {type(exc).__name__} {exc}".strip())
            continue
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
        return None
    return "; ".join(failures) or f"kafka {bootstrap_servers!r}: no server to reach"
