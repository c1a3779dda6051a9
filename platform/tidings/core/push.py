"""Push notifications as plain values: what to send, what came back, when to retry.

Payloads never carry message content or sender names: a push only wakes the device,
which then fetches its ciphertext over the WebSocket.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from enum import StrEnum


class Provider(StrEnum):
    FCM = "fcm"
    APNS = "apns"


class Outcome(StrEnum):
    SENT = "sent"
    UNREGISTERED = "unregistered"
    """The token is dead (FCM UNREGISTERED / INVALID_ARGUMENT, APNs 410): remove it."""
    RETRY = "retry"
    """Throttled or the provider failed (429, 5xx, QUOTA_EXCEEDED, UNAVAILABLE, INTERNAL)."""
    REJECTED = "rejected"
    """A permanent error that is not about the token (bad credentials, bad request)."""


@dataclass(frozen=True)
class PushMessage:
    provider: Provider
    token: str
    collapse_key: str
    """One per device: a burst of messages collapses into one visible push."""
    alert: bool = False
    """False: silent wake-up (FCM data message, APNs background push). True: an alert
    with generic text only (the user's choice), never content or sender."""
    ttl_s: int = 86400


@dataclass(frozen=True)
class PushResult:
    outcome: Outcome
    retry_after: float | None = None
    """Seconds the provider asked us to wait (Retry-After), when it said so."""
    detail: str = ""


GENERIC_ALERT = "New message"


def backoff(attempt: int, base: float = 0.5, cap: float = 60.0, rand: float | None = None) -> float:
    """Exponential backoff with full jitter: uniform in [0, min(cap, base * 2**attempt)]."""
    ceiling = min(cap, base * 2.0**attempt)
    return ceiling * (random.random() if rand is None else rand)


def retry_delay(
    result: PushResult,
    attempt: int,
    rand: float | None = None,
    *,
    base: float = 0.5,
    cap: float = 60.0,
) -> float:
    """How long to wait before retrying: the provider's Retry-After wins over backoff."""
    computed = backoff(attempt, base=base, cap=cap, rand=rand)
    return max(computed, result.retry_after) if result.retry_after is not None else computed
