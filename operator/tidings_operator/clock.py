"""The one clock the operator reads: every timestamp it writes (heartbeats, condition
transition times, peer verdicts, failover decisions) comes from a ``Clock`` passed in,
so unit tests drive time with a fake one instead of sleeping."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Protocol


class Clock(Protocol):
    def now(self) -> datetime:
        """The current time, timezone-aware (UTC)."""
        ...


class SystemClock:
    """The wall clock, at whole seconds (status timestamps are RFC 3339 seconds; the
    heartbeat's ``MicroTime`` does not need finer renewals than that)."""

    def now(self) -> datetime:
        return datetime.now(UTC).replace(microsecond=0)


def parse_rfc3339(text: Any) -> datetime | None:
    """A Kubernetes timestamp (``2026-01-02T03:04:05Z``) as an aware datetime; None for
    anything else (absent, empty, malformed), which callers treat as unknown."""
    if not isinstance(text, str) or not text:
        return None
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
