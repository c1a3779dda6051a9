"""The one clock the operator reads: every timestamp it writes (heartbeats, condition
transition times, peer verdicts, failover decisions) comes from a ``Clock`` passed in,
so unit tests drive time with a fake one instead of sleeping."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Protocol


class Clock(Protocol):
    def now(self) -> datetime:
        """The current time, timezone-aware (UTC)."""
        ...


class SystemClock:
    """The wall clock, at whole seconds (status timestamps are RFC 3339 seconds; the
    heartbeat's ``MicroTime`` does not need finer renewals than that)."""

    def now(self) -> datetime:
        return datetime.now(UTC).replace(microsecond=0)
