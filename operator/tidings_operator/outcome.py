"""Typed results of applies and reconciles, as Strimzi's ``ReconcileResult`` and
controller-runtime's ``OperationResult`` report them: what one apply did to one object,
and how one reconcile of a resource ended. Logs, Events and metrics are labelled with
these values, never with free-form strings."""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum
from typing import Any


class Change(StrEnum):
    """What an apply did to one child."""

    CREATED = "Created"
    PATCHED = "Patched"
    """It existed and the apply changed it (drift repaired or spec followed)."""
    UNCHANGED = "Unchanged"
    DELETED = "Deleted"


class Outcome(StrEnum):
    """How one reconcile ended (the ``result`` label of ``tidings_operator_reconcile_total``;
    a reconcile that raised is counted as ``error``)."""

    CONVERGED = "ok"
    PAUSED = "paused"
    GONE = "gone"
    DELETING = "deleting"
    """Being deleted: the finalizer's turn."""
    INVALID = "invalid"
    SKIPPED = "skipped"
    """Another operator runs it."""


def change_of(before: Mapping[str, Any] | None, after: Mapping[str, Any]) -> Change:
    """What an apply that returned ``after`` did to the object that was ``before``: a
    server-side apply that changed nothing keeps the ``resourceVersion``."""
    if before is None:
        return Change.CREATED
    old = (before.get("metadata") or {}).get("resourceVersion")
    new = (after.get("metadata") or {}).get("resourceVersion")
    return Change.PATCHED if old != new else Change.UNCHANGED
