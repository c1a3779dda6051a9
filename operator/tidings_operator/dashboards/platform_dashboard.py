"""``Tidings / Platform``: what the message path does, per region — sends in, deliveries
out, the accept-to-deliver latency against its SLO, sockets, lag, and push."""

from __future__ import annotations

from tidings_operator.dashboards.board import REGION, WIDTH, Board, Limit, Query

UID = "tidings-platform"

RATE = "$__rate_interval"


def _rate(metric: str, by: str, matchers: str = "") -> str:
    selector = f"{metric}{{{REGION}{', ' + matchers if matchers else ''}}}"
    return f"sum by ({by}) (rate({selector}[{RATE}]))"


def _quantile(q: float, histogram: str, by: str = "region") -> str:
    return (
        f"histogram_quantile({q}, sum by ({by}, le) (rate({histogram}_bucket{{{REGION}}}[{RATE}])))"
    )


def build() -> Board:
    board = Board(
        UID,
        "Tidings / Platform",
        "Sends, deliveries, latency, sockets, lag and push of the Tidings platform, "
        "per region (the region label the chart's PodMonitors copy from each pod).",
    ).region_variable("label_values(tidings_ws_connections, region)")

    board.row("Sends")
    board.stat(
        "Send success ratio (5m)",
        "Sends accepted over sends accepted or failed by the server (5xx); refusals "
        "the client caused are not failures. Recorded by region:tidings_send_success.",
        "percentunit",
        Query(f"region:tidings_send_success:ratio_rate5m{{{REGION}}}", "{{region}}"),
        width=8,
    )
    board.stat(
        "Accept-to-deliver p99 (5m)",
        "99th percentile from acceptance to the recipient's socket; the SLO is 1 s.",
        "s",
        Query(f"region:tidings_delivery_latency_seconds:p99_5m{{{REGION}}}", "{{region}}"),
        width=8,
        limit=Limit(1),
    )
    board.stat(
        "Open WebSockets",
        "Device sockets open on the region's gateways.",
        "short",
        Query(f"sum by (region) (tidings_ws_connections{{{REGION}}})", "{{region}}"),
        width=8,
    )
    board.graph(
        "Sends accepted",
        "Sends the bus acknowledged, by kind (direct, group...).",
        "ops",
        Query(_rate("tidings_messages_accepted_total", "region, kind"), "{{region}} {{kind}}"),
        Query(_rate("tidings_sends_deduplicated_total", "region"), "{{region}} deduplicated"),
        stacked=True,
    )
    board.graph(
        "Sends refused",
        "Sends refused, by error code, and requests refused by a rate limit.",
        "ops",
        Query(_rate("tidings_sends_rejected_total", "region, code"), "{{region}} {{code}}"),
        Query(_rate("tidings_rate_limited_total", "region, limit"), "{{region}} limit {{limit}}"),
    )

    board.row("Deliveries")
    board.graph(
        "Envelopes stored, delivered, acked",
        "Per-device envelopes produced by the routers, stored in inboxes by the delivery "
        "workers, written to sockets and acked by devices.",
        "ops",
        Query(_rate("tidings_envelopes_produced_total", "region"), "{{region}} produced"),
        Query(_rate("tidings_inbox_writes_total", "region"), "{{region}} stored"),
        Query(_rate("tidings_deliveries_sent_total", "region"), "{{region}} delivered"),
        Query(_rate("tidings_deliveries_acked_total", "region"), "{{region}} acked"),
    )
    board.graph(
        "Accept-to-deliver latency",
        "Percentiles of the time from acceptance to the socket, for devices connected "
        "when the send was accepted (an offline backlog is not counted). SLO: p99 < 1 s.",
        "s",
        Query(_quantile(0.5, "tidings_delivery_latency_seconds"), "{{region}} p50"),
        Query(_quantile(0.9, "tidings_delivery_latency_seconds"), "{{region}} p90"),
        Query(_quantile(0.99, "tidings_delivery_latency_seconds"), "{{region}} p99"),
        limit=Limit(1),
    )
    board.graph(
        "Latency SLO error ratio",
        "Share of deliveries slower than 1 s over 5 minutes and 1 hour; the error "
        "budget is 1 %. The burn-rate alerts page at 14.4x (1 h) and 6x (6 h).",
        "percentunit",
        Query(
            f"region:tidings_delivery_latency_slo_errors:ratio_rate5m{{{REGION}}}", "{{region}} 5m"
        ),
        Query(
            f"region:tidings_delivery_latency_slo_errors:ratio_rate1h{{{REGION}}}", "{{region}} 1h"
        ),
        limit=Limit(0.01),
    )
    board.graph(
        "Delivery batch time p99",
        "Time a delivery worker takes to store and notify one polled batch.",
        "s",
        Query(_quantile(0.99, "tidings_delivery_batch_seconds"), "{{region}}"),
    )

    board.row("Sockets and HTTP")
    board.graph(
        "Open WebSockets by gateway",
        "Device sockets per gateway pod: a pod far above the others is unbalanced.",
        "short",
        Query(f"sum by (region, pod) (tidings_ws_connections{{{REGION}}})", "{{region}} {{pod}}"),
        width=8,
    )
    board.graph(
        "WebSocket frames refused",
        "Frames answered with an error, by status.",
        "ops",
        Query(_rate("tidings_ws_frames_rejected_total", "region, status"), "{{region}} {{status}}"),
        width=8,
    )
    failed = _rate("tidings_http_requests_total", "region", 'status=~"5.."')
    requests = _rate("tidings_http_requests_total", "region")
    board.graph(
        "HTTP 5xx ratio",
        "Share of HTTP requests answered 5xx (503: an engine unavailable).",
        "percentunit",
        Query(f"{failed} / {requests}", "{{region}}"),
        width=8,
        limit=Limit(0.05),
    )
    board.graph(
        "HTTP latency p99 by route",
        "99th percentile of HTTP request time, per route.",
        "s",
        Query(
            _quantile(0.99, "tidings_http_request_seconds", "region, route"), "{{region}} {{route}}"
        ),
        width=WIDTH,
    )

    board.row("Lag")
    board.graph(
        "Undelivered envelopes",
        "Records the delivery workers have not committed, read from Kafka by the operator "
        "(it grows even with every worker down).",
        "short",
        Query(f"region:tidings_undelivered_envelopes:sum{{{REGION}}}", "{{region}}"),
        width=8,
        limit=Limit(100),
    )
    board.graph(
        "Push lag",
        "Records the push workers of each PushPool have not committed.",
        "short",
        Query(
            f'sum by (region, name) (tidings_operator_consumer_lag{{kind="PushPool", {REGION}}})',
            "{{region}} {{name}}",
        ),
        width=8,
        limit=Limit(100),
    )
    board.graph(
        "Oldest delivery age (5m)",
        "Upper bound of the oldest accept-to-deliver latency bucket reached in the last "
        "5 minutes; alerts over 30 s for online devices.",
        "s",
        Query(f"region:tidings_accepted_undelivered_age_seconds:max5m{{{REGION}}}", "{{region}}"),
        width=8,
        limit=Limit(30),
    )

    board.row("Push")
    board.graph(
        "Push jobs and pushes",
        "Push jobs produced for offline devices, pushes providers accepted, jobs covered "
        "by another push to the same device.",
        "ops",
        Query(_rate("tidings_push_jobs_total", "region"), "{{region}} jobs"),
        Query(
            _rate("tidings_pushes_sent_total", "region, provider"), "{{region}} sent {{provider}}"
        ),
        Query(_rate("tidings_pushes_collapsed_total", "region"), "{{region}} collapsed"),
    )
    board.graph(
        "Pushes failed and retried",
        "Push jobs dropped without a push, by reason, and sends re-enqueued for retry.",
        "ops",
        Query(_rate("tidings_pushes_failed_total", "region, reason"), "{{region}} {{reason}}"),
        Query(
            _rate("tidings_push_retries_total", "region, provider"), "{{region}} retry {{provider}}"
        ),
    )
    board.graph(
        "Provider latency p99",
        "Time the push provider (FCM, APNs) takes to answer one send.",
        "s",
        Query(
            _quantile(0.99, "tidings_push_seconds", "region, provider"), "{{region}} {{provider}}"
        ),
    )
    board.graph(
        "Push tokens removed",
        "Tokens removed because the provider called them dead (a spike: a provider or "
        "credential problem, alerted by TidingsPushTokenRemovalsSpiking).",
        "ops",
        Query(_rate("tidings_push_tokens_removed_total", "region"), "{{region}}"),
    )
    return board
