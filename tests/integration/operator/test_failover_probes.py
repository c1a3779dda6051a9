"""The failover loop's probes of a peer's data plane against real servers: the session's
Kafka answers, a closed port does not, and a gateway whose ``/readyz`` is not ready or
not there is named with what went wrong."""

from __future__ import annotations

import asyncio

from operator_support import free_port
from tidings_operator.probes import probe_gateway, probe_kafka


async def test_a_running_kafka_is_reachable_and_any_answering_broker_is_enough(
    kafka_bootstrap: str,
) -> None:
    assert await probe_kafka(kafka_bootstrap) is None
    closed = f"127.0.0.1:{free_port()}"
    assert await probe_kafka(f"{closed},{kafka_bootstrap}") is None


async def test_a_closed_kafka_port_or_gateway_is_unreachable_and_says_where() -> None:
    closed = f"127.0.0.1:{free_port()}"
    problem = await probe_kafka(closed)
    assert problem is not None
    assert f"kafka {closed}" in problem
    gateway = await probe_gateway(f"http://{closed}")
    assert gateway is not None
    assert f"http://{closed}/readyz" in gateway
    assert await probe_kafka("") == "kafka '': no server to reach"


async def test_a_port_that_accepts_but_speaks_no_kafka_is_unreachable() -> None:
    """A paused broker, or a relay in front of a lost one, still accepts connections:
    the probe asks for an ``ApiVersions`` answer, not a connection."""
    held: list[asyncio.StreamWriter] = []
    silent = await asyncio.start_server(lambda r, w: held.append(w), "127.0.0.1", 0)
    closing = await asyncio.start_server(lambda r, w: w.close(), "127.0.0.1", 0)
    try:
        for server in (silent, closing):
            address = f"127.0.0.1:{server.sockets[0].getsockname()[1]}"
            problem = await probe_kafka(address, timeout=1.0)
            assert problem is not None
            assert f"kafka {address}" in problem
    finally:
        for writer in held:
            writer.close()
        for server in (silent, closing):
            server.close()
            await server.wait_closed()
