"""``Tidings / Regions and failover``: who owns which shards, the epochs every move bumps,
how each region judges its peers, and the envelopes forwarded after a move.

The shard counts come from the operator's consumer lag series: it exports each
MessageShard's lag under the region that owns it now (a moved shard's series moves with
it), so counting them per region is counting shards owned.
"""

from __future__ import annotations

from tidings_operator.dashboards.board import REGION, WIDTH, Board, Query

UID = "tidings-regions"

RATE = "$__rate_interval"
SHARD_LAG = f'tidings_operator_consumer_lag{{kind="MessageShard", {REGION}}}'


def build() -> Board:
    board = Board(
        UID,
        "Tidings / Regions and failover",
        "Shards owned and moved, shard map epochs, peer health and heartbeats of the "
        "Tidings regions, as the operator and the platform see them.",
    ).region_variable("label_values(tidings_shard_map_epoch_sum, region)")

    board.row("Shards")
    board.stat(
        "Shards owned",
        "MessageShards each region serves now (its own and any taken over).",
        "short",
        Query(f"count by (region) ({SHARD_LAG})", "{{region}}"),
        width=8,
    )
    board.stat(
        "Regions not ready",
        "ChatRegions whose Ready condition is not True.",
        "short",
        Query('count(tidings_operator_resource_ready{kind="ChatRegion"} == 0) or vector(0)'),
        width=8,
    )
    board.stat(
        "Shard moves (24h)",
        "MessageShards fenced and moved to another owner in the last day, by trigger.",
        "short",
        Query(
            "sum by (trigger) (increase(tidings_operator_shard_moves_total[24h]))", "{{trigger}}"
        ),
        width=8,
    )
    board.graph(
        "Shards owned over time",
        "A step down in one region and up in another is a failover (or a failback).",
        "short",
        Query(f"count by (region) ({SHARD_LAG})", "{{region}}"),
    )
    board.graph(
        "Delivery lag per shard",
        "Records the delivery workers have not committed on each shard's partitions, "
        "under the region that owns the shard.",
        "short",
        Query(f"sum by (region, name) ({SHARD_LAG})", "{{region}} {{name}}"),
    )
    board.graph(
        "Oldest undelivered message per shard",
        "Age of the oldest accepted envelope not yet stored in an inbox, per shard under "
        "the region that owns it (from its Kafka timestamp; 0 when none waits). It grows "
        "while the delivery workers are down, where the lag stays flat with no new sends.",
        "s",
        Query(
            f"max by (region, name) "
            f'(tidings_operator_oldest_undelivered_age_seconds{{kind="MessageShard", {REGION}}})',
            "{{region}} {{name}}",
        ),
    )

    board.row("Epochs and shard maps")
    board.graph(
        "Shard map epoch sum",
        "Sum of the shard epochs in the map each process uses: every move bumps one "
        "epoch, so a process whose line lags the others has not reloaded its map.",
        "short",
        Query(
            f"max by (region, pod) (tidings_shard_map_epoch_sum{{{REGION}}})", "{{region}} {{pod}}"
        ),
        width=8,
    )
    board.graph(
        "Shard map reloads",
        "Shard map file reads by result; invalid ones keep the old map (alerted by "
        "TidingsShardMapReloadFailing).",
        "ops",
        Query(
            f"sum by (region, result) (rate(tidings_shard_map_reloads_total{{{REGION}}}[{RATE}]))",
            "{{region}} {{result}}",
        ),
        width=8,
    )
    board.graph(
        "Envelopes forwarded",
        "Consumed envelopes sent on to the region a newer shard map names owner (during "
        "and just after a move). The scraped process's region is `region`, the new "
        "owner's `exported_region`.",
        "ops",
        Query(
            f"sum by (region, exported_region) "
            f"(rate(tidings_envelopes_forwarded_total{{{REGION}}}[{RATE}]))",
            "{{region}} to {{exported_region}}",
        ),
        width=8,
    )

    board.row("Peers")
    board.table(
        "Peer health now",
        "How each region last judged each peer (Healthy, Suspect, Failed, OperatorDown, Unknown).",
        Query(f"max by (region, peer, health) (tidings_operator_peer_health{{{REGION}}} == 1)"),
        width=WIDTH // 2,
    )
    board.graph(
        "Peers not healthy",
        "Peers judged Suspect or Failed (alerted by TidingsPeerRegionSuspect and "
        "TidingsPeerRegionFailed).",
        "short",
        Query(
            f"max by (region, peer, health) "
            f'(tidings_operator_peer_health{{health=~"Suspect|Failed", {REGION}}})',
            "{{region}} sees {{peer}} {{health}}",
        ),
    )
    board.graph(
        "Heartbeats",
        "Heartbeat Leases renewed per region: a region whose line drops to 0 is failing.",
        "ops",
        Query(
            f"sum by (region) (rate(tidings_operator_heartbeats_total{{{REGION}}}[{RATE}]))",
            "{{region}}",
        ),
    )
    board.graph(
        "Peer health changes",
        "Peers entering each health state.",
        "short",
        Query(
            f"sum by (health) (increase(tidings_operator_peer_health_changes_total[{RATE}]))",
            "{{health}}",
        ),
    )
    return board
