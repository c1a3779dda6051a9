"""The failover loop's probes of a peer's data plane against real servers: the session's
Kafka answers, a closed port does not, and a gateway whose ``/readyz`` is not ready or
not there is named with what went wrong."""

from __future__ import annotations

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
