"""Where envelopes go: the recipient's owning region, stamped with its shard's epoch.

Pure: the router (on accept) and the delivery worker (forwarding what a newer shard map
moved away) both produce exactly what ``routed`` returns.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable

from tidings.core.envelopes import Envelope, EnvelopeKind
from tidings.core.shardmap import ShardMap, deliveries_topic, receipts_topic

Records = dict[str, list[tuple[int, tuple[str, bytes]]]]
"""Topic -> (envelope index, (key, value) record), keyed by recipient so one recipient
keeps its order."""


def routed(shard_map: ShardMap, envelopes: Iterable[Envelope]) -> Records:
    """Each envelope stamped with its recipient's shard epoch, on the owner's topic
    (receipts on the receipts topic, everything else on the deliveries topic), with the
    index of its envelope: a caller can tell which envelopes a failed topic held."""
    by_topic: Records = defaultdict(list)
    for index, envelope in enumerate(envelopes):
        shard = shard_map.shard_for(envelope.recipient_user)
        to = receipts_topic if envelope.kind is EnvelopeKind.RECEIPT else deliveries_topic
        record = (envelope.recipient_user, envelope.encode(epoch=shard.epoch))
        by_topic[to(shard.owner_region)].append((index, record))
    return dict(by_topic)


def moved_away(
    shard_map: ShardMap, here: str, envelopes: Iterable[Envelope]
) -> tuple[list[Envelope], list[Envelope]]:
    """(envelopes to deliver here, envelopes to forward), per ``forward_to``."""
    keep: list[Envelope] = []
    forward: list[Envelope] = []
    for envelope in envelopes:
        moved = forward_to(shard_map, here, envelope.recipient_user, envelope.epoch)
        (keep if moved is None else forward).append(envelope)
    return keep, forward


def forward_to(shard_map: ShardMap, here: str, recipient: str, stamped_epoch: int) -> str | None:
    """The region to forward a record consumed in ``here`` to, or None to deliver here.

    A record was routed here by a producer whose map (at ``stamped_epoch``) named this
    region the owner. Only a newer map wins: forward when this map has moved the shard
    on at a higher epoch. Each forward raises the record's epoch, so two regions whose
    maps disagree cannot pass a record back and forth for ever.
    """
    shard = shard_map.shard_for(recipient)
    if shard.owner_region != here and shard.epoch > stamped_epoch:
        return shard.owner_region
    return None
