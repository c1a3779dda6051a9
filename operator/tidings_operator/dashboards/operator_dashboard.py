"""``Tidings / Operator``: the operator's reconciles, its work queue, and what fails or
is refused."""

from __future__ import annotations

from tidings_operator.dashboards.board import Board, Limit, Query

UID = "tidings-operator"

RATE = "$__rate_interval"


def build() -> Board:
    board = Board(
        UID,
        "Tidings / Operator",
        "Reconciles, work queue, failures and refusals of the Tidings operator.",
    )

    board.row("Now")
    board.stat(
        "Queued or running",
        "Objects with a reconcile queued or running.",
        "short",
        Query("sum(tidings_operator_queue_active_keys)"),
    )
    board.stat(
        "Resources not ready",
        "Resources whose Ready condition is not True, by kind.",
        "short",
        Query("count by (kind) (tidings_operator_resource_ready == 0)", "{{kind}}"),
        limit=Limit(1),
    )
    board.stat(
        "Paused",
        "Resources whose reconciliation the paused annotation stops, by kind.",
        "short",
        Query("sum by (kind) (tidings_operator_paused_resources)", "{{kind}}"),
        limit=Limit(1, "orange"),
    )
    board.stat(
        "Spec changes refused",
        "Spec changes the operator refuses now, by reason (PartitionsCannotShrink, "
        "DatacenterRemovalRefused...): the resource's conditions say what to fix.",
        "short",
        Query("sum by (reason) (tidings_operator_refusals)", "{{reason}}"),
        limit=Limit(1),
    )

    board.row("Reconciles")
    board.graph(
        "Reconciles",
        "Reconciles run, by kind and result (ok, error, paused, deleting, gone, invalid, skipped).",
        "ops",
        Query(
            f"sum by (kind, result) (rate(tidings_operator_reconcile_total[{RATE}]))",
            "{{kind}} {{result}}",
        ),
        stacked=True,
    )
    board.graph(
        "Reconcile duration",
        "Time one reconcile takes, by kind.",
        "s",
        Query(
            "histogram_quantile(0.5, sum by (kind, le) "
            f"(rate(tidings_operator_reconcile_duration_seconds_bucket[{RATE}])))",
            "{{kind}} p50",
        ),
        Query(
            "histogram_quantile(0.99, sum by (kind, le) "
            f"(rate(tidings_operator_reconcile_duration_seconds_bucket[{RATE}])))",
            "{{kind}} p99",
        ),
    )
    board.graph(
        "Work queue",
        "Objects queued or running, and reconciles in progress.",
        "short",
        Query("sum(tidings_operator_queue_active_keys)", "queued or running"),
        Query("sum(tidings_operator_reconciles_running)", "running"),
    )
    board.graph(
        "Children changed",
        "Children created, updated (drift repaired or spec followed) or pruned.",
        "ops",
        Query(
            f"sum by (kind, change) (rate(tidings_operator_child_changes_total[{RATE}]))",
            "{{kind}} {{change}}",
        ),
    )

    board.row("Failures")
    board.graph(
        "Reconcile failures",
        "Reconciles that raised, by kind and exception type; each is retried with "
        "back-off (alerted by TidingsOperatorReconcileFailures).",
        "short",
        Query(
            f"sum by (kind, error) (increase(tidings_operator_reconcile_failures_total[{RATE}]))",
            "{{kind}} {{error}}",
        ),
    )
    board.table(
        "Spec changes refused now",
        "Each resource with a refused spec change and why (the reason of its Ready "
        "condition); the Events on the resource name the field.",
        Query("max by (kind, namespace, name, reason) (tidings_operator_refusals > 0)"),
        width=12,
    )
    board.graph(
        "Events dropped",
        "Events the API server refused (a terminating namespace, RBAC), by reason.",
        "short",
        Query(
            f"sum by (reason) (increase(tidings_operator_events_dropped_total[{RATE}]))",
            "{{reason}}",
        ),
    )
    return board
