"""Following the operator's shard map: the published document, routing by owner, and
forwarding what a newer map moved away (without ping-pong between disagreeing maps)."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tidings.core.envelopes import Envelope, EnvelopeKind
from tidings.core.routing import forward_to, moved_away, routed
from tidings.core.shardmap import (
    SLOTS,
    Shard,
    ShardMap,
    ShardMapError,
    parse_shard_map,
    shard_map_document,
    single_region,
    slot_for,
)
from tidings.metrics import Metrics
from tidings.services.shard_map_file import ShardMapFile


def split(owner_low: str, owner_high: str, epoch: int = 1) -> ShardMap:
    return ShardMap(
        (
            Shard("eu-0", 0, 511, "eu", owner_low, epoch),
            Shard("us-0", 512, SLOTS - 1, "us", owner_high, epoch),
        )
    )


def user_in(low: bool) -> str:
    return next(u for u in (f"user-{i}" for i in range(1000)) if (slot_for(u) <= 511) == low)


def envelope(to: str, kind: EnvelopeKind = EnvelopeKind.MESSAGE, epoch: int = 0) -> Envelope:
    return Envelope("s1", kind, 1, "alice", 1, to, 1, body="x", epoch=epoch)


# --------------------------------------------------------------------------- document


def test_the_published_document_reads_back_as_the_same_map() -> None:
    shard_map = split("eu", "eu", epoch=3)
    assert parse_shard_map(shard_map_document(shard_map.shards), "us") == shard_map


def test_slots_no_shard_covers_are_served_here_at_epoch_zero() -> None:
    only_peer = [Shard("us-0", 512, 767, "us", "us", 2)]
    shard_map = parse_shard_map(shard_map_document(only_peer), "eu")
    assert [(s.first_slot, s.last_slot, s.owner_region, s.epoch) for s in shard_map.shards] == [
        (0, 511, "eu", 0),
        (512, 767, "us", 2),
        (768, SLOTS - 1, "eu", 0),
    ]
    assert parse_shard_map('{"shards": []}', "eu").owner_region("anyone") == "eu"


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("{", "JSONDecodeError"),
        ("[]", "TypeError"),
        ('{"maps": []}', "KeyError"),
        ('{"shards": [{"name": "a", "firstSlot": 0}]}', "KeyError"),
        (
            '{"shards": [{"name": "a", "firstSlot": 0, "lastSlot": 9, "homeRegion": "eu",'
            ' "ownerRegion": "eu", "epoch": true}]}',
            "not an integer",
        ),
        (
            '{"shards": [{"name": "a", "firstSlot": "0", "lastSlot": 9, "homeRegion": "eu",'
            ' "ownerRegion": "eu", "epoch": 1}]}',
            "not an integer",
        ),
    ],
)
def test_a_malformed_document_is_refused_with_the_reason(text: str, why: str) -> None:
    with pytest.raises(ShardMapError, match=why):
        parse_shard_map(text, "eu")


def test_overlapping_or_out_of_range_shards_are_refused() -> None:
    overlap = [Shard("a", 0, 600, "eu", "eu"), Shard("b", 512, SLOTS - 1, "us", "us")]
    with pytest.raises(ShardMapError, match="starts at slot 512"):
        parse_shard_map(shard_map_document(overlap), "eu")
    beyond = [Shard("a", 0, SLOTS, "eu", "eu")]
    with pytest.raises(ShardMapError):
        parse_shard_map(shard_map_document(beyond), "eu")


# --------------------------------------------------------------------------- routing


def test_envelopes_go_to_the_owner_region_stamped_with_the_shard_epoch() -> None:
    low, high = user_in(True), user_in(False)
    records = routed(
        split("eu", "us", epoch=4),
        [
            envelope(low),
            envelope(high),
            envelope(high, EnvelopeKind.RECEIPT),
        ],
    )
    assert sorted(records) == [
        "tidings.eu.deliveries",
        "tidings.us.deliveries",
        "tidings.us.receipts",
    ]
    ((index, (key, value)),) = records["tidings.us.receipts"]
    assert index == 2  # the receipt, third of the envelopes
    assert key == high
    assert Envelope.decode(value).epoch == 4


def test_a_record_for_a_shard_moved_on_at_a_higher_epoch_is_forwarded() -> None:
    high = user_in(False)
    moved = ShardMap(  # us's shard is now owned by eu; eu's own shard never moved
        (Shard("eu-0", 0, 511, "eu", "eu", 1), Shard("us-0", 512, SLOTS - 1, "us", "eu", 2))
    )
    assert forward_to(moved, "us", high, stamped_epoch=1) == "eu"
    assert forward_to(moved, "eu", high, stamped_epoch=1) is None  # the owner delivers
    # The producer knew at least as much as this map: deliver where it was sent.
    assert forward_to(moved, "us", high, stamped_epoch=2) is None
    assert forward_to(moved, "us", high, stamped_epoch=5) is None
    mine = split("eu", "us")
    keep, forward = moved_away(mine, "us", [envelope(high, epoch=1), envelope(user_in(True))])
    assert [e.recipient_user for e in keep] == [high]  # still us's
    assert [e.recipient_user for e in forward] == [user_in(True)]  # eu's, epoch 1 > 0


regions = st.sampled_from(["eu", "us", "ap"])


@given(
    views=st.dictionaries(regions, st.tuples(regions, st.integers(1, 20)), min_size=3),
    start=regions,
    stamped=st.integers(0, 20),
)
def test_forwarding_between_regions_with_disagreeing_maps_always_stops(
    views: dict[str, tuple[str, int]], start: str, stamped: int
) -> None:
    """Each region has its own (possibly stale) idea of one shard's owner and epoch."""
    user = user_in(True)
    maps = {
        here: ShardMap((Shard("s", 0, SLOTS - 1, "eu", owner, epoch),))
        for here, (owner, epoch) in views.items()
    }
    at, epoch, hops = start, stamped, 0
    while (to := forward_to(maps[at], at, user, epoch)) is not None:
        restamped = maps[at].shard_for(user).epoch  # what produce_routed stamps
        assert restamped > epoch  # every hop raises the record's epoch ...
        at, epoch, hops = to, restamped, hops + 1
        assert hops <= len(maps)  # ... so it cannot go on for ever


def test_two_stale_maps_that_name_each_other_deliver_once_forwarded() -> None:
    high = user_in(False)
    us_view = split("eu", "eu", epoch=2)  # us knows of the move to eu
    eu_view = split("eu", "us", epoch=1)  # eu has not heard of it yet
    assert forward_to(us_view, "us", high, stamped_epoch=1) == "eu"
    assert forward_to(eu_view, "eu", high, stamped_epoch=2) is None  # no ping-pong


# --------------------------------------------------------------------------- file


class Ctx:
    """What ShardMapFile touches of a Context."""

    def __init__(self, region: str) -> None:
        self.region = region
        self.shard_map = single_region(region)
        self.metrics = Metrics.create()


def reloads(ctx: Ctx, result: str) -> float:
    value = ctx.metrics.registry.get_sample_value(
        "tidings_shard_map_reloads_total", {"result": result}
    )
    return value or 0.0


def test_the_file_is_followed_and_a_bad_version_keeps_the_last_good_map(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "shardmap.json"
    path.write_text(shard_map_document(split("eu", "us").shards))
    ctx = Ctx("eu")
    watch = ShardMapFile(ctx, path)  # type: ignore[arg-type]
    assert watch.load() == split("eu", "us")
    assert ctx.shard_map == split("eu", "us")
    assert not watch.refresh()  # unchanged

    path.write_text(shard_map_document(split("eu", "eu", epoch=2).shards))
    assert watch.refresh()
    assert ctx.shard_map.owner_region(user_in(False)) == "eu"
    assert ctx.metrics.registry.get_sample_value("tidings_shard_map_epoch_sum") == 4

    with caplog.at_level(logging.ERROR, "tidings.shardmap"):
        path.write_text(json.dumps({"shards": "nope"}))
        assert not watch.refresh()
        assert not watch.refresh()  # reported once per bad version
    assert ctx.shard_map == split("eu", "eu", epoch=2)
    assert reloads(ctx, "invalid") == 1
    assert "keeping the last good map" in caplog.text

    path.unlink()
    assert not watch.refresh()
    assert ctx.shard_map == split("eu", "eu", epoch=2)
    assert reloads(ctx, "loaded") == 2


def test_a_missing_file_at_start_up_names_the_file_and_the_setting(tmp_path: Path) -> None:
    watch = ShardMapFile(Ctx("eu"), tmp_path / "absent.json")  # type: ignore[arg-type]
    with pytest.raises(ShardMapError, match=r"absent\.json.*TIDINGS_SHARD_MAP_FILE"):
        watch.load()
