"""Every region's view of all the shards, when regions run in clusters of their own. Pure.

Each cluster holds the MessageShards of its own region, and the copies its region made
when it took over a failed peer's shards (a failed peer's API server cannot be written).
A region sees its peers' through their API servers (``peer_clusters``). Per shard name
the copy with the highest epoch is the truth: every move raises the epoch, so a
takeover's copy supersedes the failed home's object, and a failback (raised above the
highest epoch published) supersedes the copy. The shard leases fence the data layer
whatever these views say; this only decides where sends are routed.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import replace

from tidings_operator.failover import ShardView
from tidings_operator.models import MessageShard

ADOPTED_BY_LABEL = "tidings.dev/adopted-by"
"""On a MessageShard a region created for a failed peer's shard it took over."""


def merge_shards(
    local: Sequence[MessageShard], peers: Iterable[MessageShard]
) -> list[MessageShard]:
    """Per shard name, the copy with the highest epoch. A local copy wins a tie (moves
    are fenced on its resourceVersion); between peers' copies at one epoch, the lowest
    owner name (every region then picks the same)."""
    best: dict[str, MessageShard] = {s.metadata.name: s for s in local}
    for shard in sorted(peers, key=lambda s: s.spec.owner):
        name = shard.metadata.name
        held = best.get(name)
        if held is None or shard.spec.epoch > held.spec.epoch:
            best[name] = shard
    return sorted(best.values(), key=lambda s: (s.spec.first_slot, s.metadata.name))


def superseded(local: Sequence[MessageShard], merged: Sequence[MessageShard]) -> list[str]:
    """Names of the adopted copies here that a higher epoch elsewhere replaced (a failback,
    or another region's later move): they can go."""
    newest = {s.metadata.name: s.spec.epoch for s in merged}
    return [
        s.metadata.name
        for s in local
        if ADOPTED_BY_LABEL in (s.metadata.labels or {})
        and newest.get(s.metadata.name, 0) > s.spec.epoch
    ]


def as_published(
    views: Sequence[ShardView], published: Mapping[str, tuple[str, int]]
) -> list[ShardView]:
    """Each shard of this cluster at the owner and epoch the regions' shard maps publish
    when those are newer (a takeover recorded in a peer's cluster): a person's move
    planned from them outranks it. The resourceVersion stays this cluster's."""
    raised = []
    for view in views:
        owner, epoch = published.get(view.name, (view.owner, view.epoch))
        raised.append(replace(view, owner=owner, epoch=epoch) if epoch > view.epoch else view)
    return raised
