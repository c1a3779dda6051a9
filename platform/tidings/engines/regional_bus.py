"""The ``EventBus`` of a region whose peers run Kafka clusters of their own.

A region consumes only its own topics, from its own cluster. What it produces for a user
whose shard a peer owns (``core.routing`` puts it on ``tidings.<peer>.deliveries`` or
``.receipts``) must reach that peer's cluster, where the peer's delivery workers read
it: a send is ``accepted`` only once the owning region's brokers acknowledged it, so a
region lost after the answer loses nothing it had accepted. While a peer's cluster
cannot be reached, produces for it fail with ``Unavailable`` (a 503 to the sender,
retried under the same client id) within ``PEER_TIMEOUT_S``: never accepted-then-lost,
until the operator moves the peer's shards here.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

from tidings.core.shardmap import topic_region
from tidings.engines.kafka import KafkaBus, KafkaConsumer
from tidings.errors import NotFound, Unavailable

PEER_TIMEOUT_S = 5.0
"""How long a produce to a peer's cluster may take before the sends it carries are
refused (a peer region that is down must not hold the senders for the local timeout)."""

_REGION = re.compile(r"^[a-z0-9-]{1,40}$")


def parse_kafka_peers(text: str) -> dict[str, str]:
    """``TIDINGS_KAFKA_PEERS`` (``eu-west=k1:9092,k2:9092;ap-south=k3:9092``) as region ->
    bootstrap servers. Raises ``ValueError`` naming what is wrong."""
    peers: dict[str, str] = {}
    for entry in filter(None, (part.strip() for part in text.split(";"))):
        region, sep, bootstrap = (x.strip() for x in entry.partition("="))
        if not sep or not _REGION.match(region):
            raise ValueError(f"{entry!r} is not region=host:port[,host:port...]")
        servers = [s.strip() for s in bootstrap.split(",") if s.strip()]
        if not servers or any(":" not in s for s in servers):
            raise ValueError(f"{region}: {bootstrap!r} is not a list of host:port")
        if region in peers:
            raise ValueError(f"{region} is named twice")
        peers[region] = ",".join(servers)
    return peers


class RegionalBus:
    """``tidings.ports.EventBus``: this region's cluster, and for each peer region with a
    cluster of its own, that cluster for the peer's topics."""

    def __init__(self, here: KafkaBus, peers: Mapping[str, KafkaBus]) -> None:
        self.here, self.peers = here, dict(peers)

    def bus_for(self, topic: str) -> KafkaBus:
        region = topic_region(topic)
        return self.peers.get(region, self.here) if region is not None else self.here

    async def start(self) -> None:
        # Peers' clusters are connected on first use: one being down at start-up must
        # not keep this region from serving its own users.
        await self.here.start()

    async def ensure_topic(self, topic: str, partitions: int) -> None:
        await self.bus_for(topic).ensure_topic(topic, partitions)

    async def produce(self, topic: str, records: Sequence[tuple[str, bytes]]) -> None:
        bus = self.bus_for(topic)
        if bus is self.here:
            await bus.produce(topic, records)
            return
        region = topic_region(topic)
        try:
            await bus.produce(topic, records)
        except NotFound as exc:  # the peer's operator has not created it (yet)
            raise Unavailable(
                f"region {region}'s Kafka at {bus.bootstrap} has no topic {topic}; "
                "retry once the region's operator has created it"
            ) from exc
        except Unavailable as exc:
            raise Unavailable(f"region {region} cannot be reached now: {exc}") from exc

    def consumer(self, topic: str, group: str) -> KafkaConsumer:
        return self.bus_for(topic).consumer(topic, group)

    async def ping(self) -> None:
        """This region's own cluster: a peer being down is not this region unready."""
        await self.here.ping()

    async def close(self) -> None:
        for bus in (self.here, *self.peers.values()):
            await bus.close()
