"""Push jobs and the push worker's decisions, as pure functions.

A job names whom to wake, never what arrived: ``{user, device, server_id}`` as the
delivery worker produces it, plus ``attempt`` and ``not_before`` (epoch seconds) on
the retry records the push worker produces back to the same topic.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass, replace
from enum import StrEnum
from typing import Any

from tidings.core.push import Outcome, PushResult, retry_delay

MAX_ID_CHARS = 128


def _text(data: dict[str, Any], name: str) -> str:
    value = data.get(name)
    if not isinstance(value, str) or not 0 < len(value) <= MAX_ID_CHARS:
        raise ValueError(f"push job field {name!r} must be a string of 1-{MAX_ID_CHARS} chars")
    return value


def _count(data: dict[str, Any], name: str, default: int | None = None) -> int:
    value = data.get(name, default)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"push job field {name!r} must be a non-negative integer")
    return value


@dataclass(frozen=True)
class PushJob:
    user: str
    device: int
    server_id: str
    attempt: int = 0
    """Sends already tried and answered RETRY."""
    not_before: float = 0.0
    """Epoch seconds before which the job must not be sent (0: now)."""

    @classmethod
    def decode(cls, raw: bytes) -> PushJob:
        """Parse a push record; raises ``ValueError`` on anything malformed."""
        try:
            data: Any = json.loads(raw)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ValueError(f"push job is not JSON: {exc}") from exc
        if not isinstance(data, dict):
            raise ValueError("push job must be a JSON object")
        not_before = data.get("not_before", 0.0)
        if (
            isinstance(not_before, bool)
            or not isinstance(not_before, int | float)
            or not math.isfinite(not_before)
        ):
            raise ValueError("push job field 'not_before' must be a finite number")
        return cls(
            _text(data, "user"),
            _count(data, "device"),
            _text(data, "server_id"),
            _count(data, "attempt", 0),
            float(not_before),
        )

    def encode(self) -> bytes:
        body: dict[str, Any] = {"user": self.user, "device": self.device}
        body["server_id"] = self.server_id
        if self.attempt:
            body["attempt"] = self.attempt
        if self.not_before:
            body["not_before"] = self.not_before
        return json.dumps(body).encode()

    def retry_at(self, when: float) -> PushJob:
        """The record that re-enqueues this job after one more failed attempt."""
        return replace(self, attempt=self.attempt + 1, not_before=when)


@dataclass(frozen=True)
class PushPolicy:
    """The push pool's knobs (``TIDINGS_PUSH_*``; the PushPool CRD sets them)."""

    rate: float = 500.0
    """Pushes per second per provider, shared by every worker of the pool."""
    burst: int = 1000
    concurrency: int = 64
    """Sends in flight per worker process."""
    max_attempts: int = 5
    """Sends per job, the first included; then the job is dropped."""
    backoff_base_s: float = 0.5
    backoff_cap_s: float = 60.0
    collapse_s: float = 10.0
    """At most one push per device in this window."""
    ttl_s: int = 86400
    """How long the provider keeps an undelivered push."""


def collapse_key(user: str, device: int) -> str:
    """The per-device collapse id the provider sees: opaque, no account id leaks."""
    return hashlib.sha256(f"tidings-push:{user}:{device}".encode()).hexdigest()[:32]


class Claim(StrEnum):
    SEND = "send"
    """This job owns the device's collapse window: send."""
    COLLAPSED = "collapsed"
    """Another job's push covers this one."""


SENT_MARK = b"sent:"


def claim(existing: bytes | None, server_id: str) -> Claim:
    """Judge ``put_if_absent``'s answer for a job's collapse key.

    The value stored is the claiming job's server id, so a job replayed after a
    crash (or re-enqueued for retry) still owns its window; after a successful send
    it becomes ``sent:<server id>``, so a replay does not push twice.
    """
    if existing is None or existing == server_id.encode():
        return Claim.SEND
    return Claim.COLLAPSED


class Action(StrEnum):
    DONE = "done"
    REMOVE_TOKEN = "remove_token"
    RETRY = "retry"
    GIVE_UP = "give_up"


@dataclass(frozen=True)
class Step:
    action: Action
    reason: str = ""
    """Why a push failed (metric label): unregistered, rejected, exhausted."""
    delay: float = 0.0
    """Seconds before the retry (RETRY only)."""


def next_step(
    result: PushResult, job: PushJob, policy: PushPolicy, rand: float | None = None
) -> Step:
    """What to do with a job after the provider answered ``result``."""
    match result.outcome:
        case Outcome.SENT:
            return Step(Action.DONE)
        case Outcome.UNREGISTERED:
            return Step(Action.REMOVE_TOKEN, "unregistered")
        case Outcome.REJECTED:
            return Step(Action.GIVE_UP, "rejected")
        case Outcome.RETRY:
            if job.attempt + 1 >= policy.max_attempts:
                return Step(Action.GIVE_UP, "exhausted")
            delay = retry_delay(
                result,
                job.attempt,
                rand,
                base=policy.backoff_base_s,
                cap=policy.backoff_cap_s,
            )
            return Step(Action.RETRY, "retry", delay)
