"""The Cassandra keyspace: DDL and the decision of what to run.

The keyspace is shared by every region, one datacenter each, NetworkTopologyStrategy.
Creation is ``IF NOT EXISTS`` (another region's operator may win the race); when the
spec's replication differs from the keyspace's, an ALTER brings it in line (a region
joining adds its datacenter). Removing a datacenter is refused: its replicas would be
dropped, which only a deliberate decommission (``deletionPolicy: Delete``) may do.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from tidings_operator.models.chatregion import DATACENTER_PATTERN, KEYSPACE_PATTERN
from tidings_operator.resources.refusal import Refusal

NETWORK_TOPOLOGY = "org.apache.cassandra.locator.NetworkTopologyStrategy"
DATACENTER_REMOVAL = "DatacenterRemovalRefused"


def _check_keyspace(keyspace: str) -> str:
    # Identifiers cannot be bound parameters in DDL: only validated names are spliced.
    if not re.fullmatch(KEYSPACE_PATTERN, keyspace):
        raise ValueError(f"keyspace {keyspace!r} must match {KEYSPACE_PATTERN}")
    return keyspace


def replication_cql(replication: Mapping[str, int]) -> str:
    """``{'class': 'NetworkTopologyStrategy', 'us-east': 3}``, datacenters sorted."""
    if not replication:
        raise ValueError("replication needs at least one datacenter")
    parts = ["'class': 'NetworkTopologyStrategy'"]
    for dc, replicas in sorted(replication.items()):
        if not re.fullmatch(DATACENTER_PATTERN, dc):
            raise ValueError(f"datacenter name {dc!r} is not valid")
        if not 1 <= replicas <= 32:
            raise ValueError(f"replicas for {dc} must be 1..32, not {replicas}")
        parts.append(f"'{dc}': {replicas}")
    return "{" + ", ".join(parts) + "}"


def create_keyspace_cql(keyspace: str, replication: Mapping[str, int]) -> str:
    return (
        f"CREATE KEYSPACE IF NOT EXISTS {_check_keyspace(keyspace)} "
        f"WITH replication = {replication_cql(replication)} AND durable_writes = true"
    )


def alter_keyspace_cql(keyspace: str, replication: Mapping[str, int]) -> str:
    return (
        f"ALTER KEYSPACE {_check_keyspace(keyspace)} "
        f"WITH replication = {replication_cql(replication)}"
    )


def drop_keyspace_cql(keyspace: str) -> str:
    return f"DROP KEYSPACE IF EXISTS {_check_keyspace(keyspace)}"


@dataclass(frozen=True)
class ObservedKeyspace:
    """A keyspace as ``system_schema.keyspaces`` describes it."""

    strategy: str
    replication: Mapping[str, int] = field(default_factory=dict)

    @classmethod
    def from_system_schema(cls, replication: Mapping[str, str]) -> ObservedKeyspace:
        """From the ``replication`` column: ``{'class': ..., '<dc>': '<n>'}``."""
        rest = {k: v for k, v in replication.items() if k != "class"}
        if not replication.get("class", "").endswith("NetworkTopologyStrategy"):
            return cls(replication.get("class", ""), {})  # e.g. SimpleStrategy
        return cls(NETWORK_TOPOLOGY, {dc: int(n) for dc, n in rest.items()})


@dataclass(frozen=True)
class KeyspacePlan:
    statements: tuple[str, ...] = ()
    follow_up: tuple[str, ...] = ()
    """Operations Cassandra needs after the DDL and the operator does not run (they
    stream data for hours): rebuilds and repairs, for Events and the status message."""
    refusals: tuple[Refusal, ...] = ()


def plan_keyspace(
    keyspace: str, desired: Mapping[str, int], observed: ObservedKeyspace | None
) -> KeyspacePlan:
    """Create the keyspace, align its replication with the spec, or refuse."""
    if observed is None:
        return KeyspacePlan((create_keyspace_cql(keyspace, desired),))
    current = dict(observed.replication) if observed.strategy == NETWORK_TOPOLOGY else {}
    removed = sorted(set(current) - set(desired))
    if removed:
        return KeyspacePlan(
            refusals=(
                Refusal(
                    DATACENTER_REMOVAL,
                    f"keyspace {keyspace} replicates to {', '.join(removed)}, which the spec "
                    "leaves out; dropping a datacenter's replicas is not done automatically: "
                    "add it back to cassandra.replication, or alter the keyspace by hand",
                ),
            )
        )
    if observed.strategy == NETWORK_TOPOLOGY and current == dict(desired):
        return KeyspacePlan()
    follow_up = [
        f"run `nodetool rebuild -- <existing datacenter>` on every node of {dc}"
        for dc in sorted(set(desired) - set(current))
        if current
    ]
    grown = sorted(dc for dc in current if desired[dc] > current[dc])
    if grown or observed.strategy != NETWORK_TOPOLOGY:
        follow_up.append(
            "run `nodetool repair -full` on the keyspace"
            + (f" in {', '.join(grown)}" if grown else "")
        )
    return KeyspacePlan((alter_keyspace_cql(keyspace, desired),), tuple(follow_up))


def plan_keyspace_deletion(
    keyspace: str, datacenter: str, observed: ObservedKeyspace | None
) -> KeyspacePlan:
    """``deletionPolicy: Delete`` of one region: drop its datacenter's replicas, or the
    keyspace itself when no other region's datacenter remains in it."""
    if observed is None:
        return KeyspacePlan()
    others = {dc: n for dc, n in observed.replication.items() if dc != datacenter}
    if others:
        if datacenter not in observed.replication:
            return KeyspacePlan()
        return KeyspacePlan((alter_keyspace_cql(keyspace, others),))
    return KeyspacePlan((drop_keyspace_cql(keyspace),))
