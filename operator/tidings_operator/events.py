"""Posting Events, best-effort: a namespace being terminated refuses new ones, and a
refused Event must not hold up a reconcile, the failover loop or a finalizer."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from typing import Any

from tidings_operator import metrics
from tidings_operator.kube import ApiError, Kube

log = logging.getLogger(__name__)


async def post_event(
    kube: Kube,
    involved: Mapping[str, Any],
    *,
    reason: str,
    message: str,
    warning: bool = False,
) -> None:
    try:
        await kube.event(involved, reason=reason, message=message, warning=warning)
    except ApiError as exc:
        metrics.EVENTS_DROPPED.labels(reason).inc()
        log.warning("event %s about %s not posted: %s", reason, involved["metadata"]["name"], exc)


def names_of(names: Iterable[str]) -> str:
    listed = list(names)
    return ", ".join(listed[:10]) + (f" and {len(listed) - 10} more" if len(listed) > 10 else "")
