"""Probes of a peer region's data plane, as the failover loop makes them: its gateway's
``/readyz`` and a Kafka ``ApiVersions`` request to its brokers. Each answers None when
the peer's part answered, else what went wrong (published in the region's sightings)."""

from __future__ import annotations

import asyncio
import contextlib
import struct
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


API_VERSIONS_V0 = 18
CLIENT_ID = b"tidings-operator-probe"


async def probe_kafka(bootstrap_servers: str, timeout: float = TIMEOUT) -> str | None:
    """Reachable when any bootstrap server answers a Kafka ``ApiVersions`` request
    without error. A TCP connection alone is not enough: a hung or paused broker (and a
    TCP relay in front of a lost one) still accepts connections."""
    failures = []
    for server in (s.strip() for s in bootstrap_servers.split(",") if s.strip()):
        host, _, port = server.rpartition(":")
        try:
            async with asyncio.timeout(timeout):
                await _api_versions(host.strip("[]") or server, int(port or 9092))
        except (OSError, TimeoutError, ValueError, asyncio.IncompleteReadError) as exc:
            failures.append(f"kafka {server}: {type(exc).__name__} {exc}".strip())
            continue
        return None
    return "; ".join(failures) or f"kafka {bootstrap_servers!r}: no server to reach"


async def _api_versions(host: str, port: int) -> None:
    """One ``ApiVersions`` v0 round trip; raises when there is no well-formed answer
    with error code 0."""
    reader, writer = await asyncio.open_connection(host, port)
    try:
        correlation = 7
        body = struct.pack(">hhih", API_VERSIONS_V0, 0, correlation, len(CLIENT_ID)) + CLIENT_ID
        writer.write(struct.pack(">i", len(body)) + body)
        await writer.drain()
        (size,) = struct.unpack(">i", await reader.readexactly(4))
        if not 6 <= size <= 1 << 20:
            raise ValueError(f"not a Kafka answer (size {size})")
        answered, error = struct.unpack(">ih", (await reader.readexactly(size))[:6])
        if answered != correlation:
            raise ValueError(f"not a Kafka answer (correlation id {answered})")
        if error:
            raise ValueError(f"ApiVersions answered error code {error}")
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
