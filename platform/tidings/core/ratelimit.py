"""Token-bucket maths, shared by the in-memory and Redis limiters."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Limit:
    rate: float
    """Tokens added per second."""
    burst: int
    """Bucket capacity: the most requests allowed back to back."""


@dataclass(frozen=True)
class Bucket:
    tokens: float
    updated: float


@dataclass(frozen=True)
class Decision:
    allowed: bool
    retry_after: float
    """Seconds until the request would be allowed (0 when allowed)."""


def take(
    bucket: Bucket | None, limit: Limit, now: float, cost: float = 1.0
) -> tuple[Decision, Bucket]:
    """Try to take ``cost`` tokens; returns the decision and the bucket to store."""
    if bucket is None:
        tokens = float(limit.burst)
    else:
        elapsed = max(0.0, now - bucket.updated)
        tokens = min(float(limit.burst), bucket.tokens + elapsed * limit.rate)
    if tokens >= cost:
        return Decision(True, 0.0), Bucket(tokens - cost, now)
    wait = (cost - tokens) / limit.rate if limit.rate > 0 else float("inf")
    return Decision(False, wait), Bucket(tokens, now)


def idle_expiry(limit: Limit) -> float:
    """Seconds after which an untouched bucket is full again and can be forgotten."""
    return limit.burst / limit.rate if limit.rate > 0 else 86400.0
