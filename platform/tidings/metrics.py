"""Prometheus metrics: one registry per app instance (nothing global, tests stay apart)."""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

_BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)
# The SLO thresholds of the chart's rules (charts/tidings/files/rules) are bucket bounds:
# 1 s (the latency SLO) and 30 s (messages waiting too long for an online device).
_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300)


@dataclass
class Metrics:
    registry: CollectorRegistry
    http_requests: Counter
    http_seconds: Histogram
    messages_accepted: Counter
    sends_deduplicated: Counter
    sends_rejected: Counter
    envelopes_produced: Counter
    envelopes_forwarded: Counter
    shard_map_reloads: Counter
    shard_map_epoch: Gauge
    shard_leases_held: Gauge
    shard_lease_writes: Counter
    delivery_fenced: Counter
    inbox_writes: Counter
    deliveries_sent: Counter
    deliveries_acked: Counter
    delivery_latency: Histogram
    push_jobs: Counter
    ws_connections: Gauge
    ws_frames_rejected: Counter
    ws_read_paused: Counter
    rate_limited: Counter
    delivery_batch_seconds: Histogram
    send_batch_size: Histogram
    ack_batch_size: Histogram
    otp_sent: Counter
    refresh_reuse: Counter
    discovery_numbers: Counter
    pushes_sent: Counter
    pushes_failed: Counter
    push_retries: Counter
    push_tokens_removed: Counter
    pushes_collapsed: Counter
    push_seconds: Histogram
    presence_reaped: Counter
    push_jobs_skipped: Counter
    acks_unrecorded: Counter
    receipts_dropped: Counter
    receipt_ids_dropped: Counter
    typing_refused: Counter
    analytics_events: Counter
    analytics_bytes: Counter
    analytics_latency: Histogram
    analytics_skipped: Counter

    @classmethod
    def create(cls) -> Metrics:
        r = CollectorRegistry()
        return cls(
            registry=r,
            http_requests=Counter(
                "tidings_http_requests",
                "HTTP requests by route and status",
                ["method", "route", "status"],
                registry=r,
            ),
            http_seconds=Histogram(
                "tidings_http_request_seconds", "HTTP request latency", ["route"], registry=r
            ),
            messages_accepted=Counter(
                "tidings_messages_accepted",
                "Sends accepted (bus acknowledged)",
                ["kind"],
                registry=r,
            ),
            sends_deduplicated=Counter(
                "tidings_sends_deduplicated",
                "Retried sends answered from the dedupe key",
                registry=r,
            ),
            sends_rejected=Counter(
                "tidings_sends_rejected", "Sends refused, by error code", ["code"], registry=r
            ),
            envelopes_produced=Counter(
                "tidings_envelopes_produced",
                "Per-device envelopes produced",
                ["topic"],
                registry=r,
            ),
            envelopes_forwarded=Counter(
                "tidings_envelopes_forwarded",
                "Consumed envelopes sent on to the region a newer shard map names owner",
                ["region"],
                registry=r,
            ),
            shard_map_reloads=Counter(
                "tidings_shard_map_reloads",
                "Shard map file reads by result (loaded, or invalid and kept the old map)",
                ["result"],
                registry=r,
            ),
            shard_map_epoch=Gauge(
                "tidings_shard_map_epoch_sum",
                "Sum of the shard epochs in the map in use: it grows on every shard move",
                registry=r,
            ),
            shard_leases_held=Gauge(
                "tidings_shard_leases_held",
                "Shards whose lease this delivery process holds now (it stores only for those)",
                registry=r,
            ),
            shard_lease_writes=Counter(
                "tidings_shard_lease_writes",
                "Lease transactions by kind (create, renew, take, release) and result "
                "(applied, refused: the row had changed; failed: no majority answered)",
                ["kind", "result"],
                registry=r,
            ),
            delivery_fenced=Counter(
                "tidings_delivery_fenced_batches",
                "Delivery batches held back because no region was known to hold a lease "
                "on a shard they needed (retried; nothing is dropped)",
                registry=r,
            ),
            inbox_writes=Counter(
                "tidings_inbox_writes", "Envelopes newly stored in device inboxes", registry=r
            ),
            deliveries_sent=Counter(
                "tidings_deliveries_sent", "Deliveries written to sockets", registry=r
            ),
            deliveries_acked=Counter(
                "tidings_deliveries_acked", "Deliveries acked by devices", registry=r
            ),
            delivery_latency=Histogram(
                "tidings_delivery_latency_seconds",
                "Accept-to-deliver latency of sends accepted while the recipient device "
                "was connected: from the acceptance (the envelope's timestamp) to the "
                "delivery written to its socket (an offline backlog is not counted)",
                buckets=_LATENCY_BUCKETS,
                registry=r,
            ),
            push_jobs=Counter(
                "tidings_push_jobs", "Push jobs produced for offline devices", registry=r
            ),
            ws_connections=Gauge("tidings_ws_connections", "Open device WebSockets", registry=r),
            ws_frames_rejected=Counter(
                "tidings_ws_frames_rejected",
                "WebSocket frames answered with an error",
                ["status"],
                registry=r,
            ),
            ws_read_paused=Counter(
                "tidings_ws_read_paused_seconds",
                "Seconds sockets went unread because their frames were refused for a rate "
                "limit faster than the gateway answers refusals (a flooding client)",
                registry=r,
            ),
            rate_limited=Counter(
                "tidings_rate_limited", "Requests refused by a rate limit", ["limit"], registry=r
            ),
            delivery_batch_seconds=Histogram(
                "tidings_delivery_batch_seconds",
                "Time to store and notify one polled batch",
                registry=r,
            ),
            send_batch_size=Histogram(
                "tidings_send_batch_size",
                "Sends of one socket accepted together (one router batch)",
                buckets=_BATCH_BUCKETS,
                registry=r,
            ),
            ack_batch_size=Histogram(
                "tidings_ack_batch_size",
                "Acks of one socket recorded together (one inbox write)",
                buckets=_BATCH_BUCKETS,
                registry=r,
            ),
            otp_sent=Counter("tidings_otp_sent", "One-time codes sent", registry=r),
            discovery_numbers=Counter(
                "tidings_discovery_numbers",
                "Numbers looked up by discovery, by whether they were registered",
                ["result"],
                registry=r,
            ),
            refresh_reuse=Counter(
                "tidings_refresh_token_reuse",
                "Spent refresh tokens presented again (their device's tokens revoked)",
                registry=r,
            ),
            pushes_sent=Counter(
                "tidings_pushes_sent", "Pushes the provider accepted", ["provider"], registry=r
            ),
            pushes_failed=Counter(
                "tidings_pushes_failed",
                "Push jobs dropped without a push, by reason (no_token, "
                "unregistered, rejected, exhausted, invalid_job, error)",
                ["reason"],
                registry=r,
            ),
            push_retries=Counter(
                "tidings_push_retries", "Push sends re-enqueued for retry", ["provider"], registry=r
            ),
            push_tokens_removed=Counter(
                "tidings_push_tokens_removed",
                "Tokens removed because the provider called them dead",
                registry=r,
            ),
            pushes_collapsed=Counter(
                "tidings_pushes_collapsed",
                "Push jobs covered by another push to the same device",
                registry=r,
            ),
            push_seconds=Histogram(
                "tidings_push_seconds", "Provider send latency", ["provider"], registry=r
            ),
            acks_unrecorded=Counter(
                "tidings_acks_unrecorded",
                "Acks lost to an inbox outage (the messages are delivered again)",
                registry=r,
            ),
            receipts_dropped=Counter(
                "tidings_receipts_dropped",
                "Delivered receipts given up after retries (the bus was down too long)",
                registry=r,
            ),
            receipt_ids_dropped=Counter(
                "tidings_receipt_ids_dropped",
                "Message ids left out of read receipts: the reader was never sent them by "
                "the receipt's addressee (or got them more than 7 days ago)",
                registry=r,
            ),
            typing_refused=Counter(
                "tidings_typing_refused",
                "Typing signals refused: no recent conversation with the user, not a contact",
                registry=r,
            ),
            push_jobs_skipped=Counter(
                "tidings_push_jobs_skipped",
                "Push jobs for a device whose token belongs to another provider's pool",
                registry=r,
            ),
            presence_reaped=Counter(
                "tidings_presence_reaped",
                "Devices announced offline after their gateway stopped heartbeating",
                registry=r,
            ),
            analytics_events=Counter(
                "tidings_analytics_events",
                "Metadata events folded by the analytics worker",
                ["event", "kind"],
                registry=r,
            ),
            analytics_bytes=Counter(
                "tidings_analytics_bytes",
                "Ciphertext bytes reported by analytics events (sizes only)",
                ["event", "kind"],
                registry=r,
            ),
            analytics_latency=Histogram(
                "tidings_analytics_latency_seconds",
                "Accept-to-store and accept-to-ack latency reported by analytics events",
                ["event"],
                buckets=_LATENCY_BUCKETS,
                registry=r,
            ),
            analytics_skipped=Counter(
                "tidings_analytics_skipped",
                "Malformed analytics events skipped by the analytics worker",
                registry=r,
            ),
        )
