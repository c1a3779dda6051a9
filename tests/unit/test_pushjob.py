"""Push jobs and the push worker's pure decisions."""

from __future__ import annotations

import pytest

from tidings.core.push import Outcome, PushResult
from tidings.core.pushjob import (
    SENT_MARK,
    Action,
    Claim,
    PushJob,
    PushPolicy,
    claim,
    collapse_key,
    next_step,
)

POLICY = PushPolicy(max_attempts=3, backoff_base_s=0.5, backoff_cap_s=60.0)


def test_delivery_job_decodes_with_defaults() -> None:
    job = PushJob.decode(b'{"user": "u1", "device": 2, "server_id": "s1"}')
    assert job == PushJob("u1", 2, "s1", 0, 0.0)


def test_retry_record_round_trips() -> None:
    job = PushJob("u1", 2, "s1").retry_at(1234.5)
    assert (job.attempt, job.not_before) == (1, 1234.5)
    assert PushJob.decode(job.encode()) == job
    assert PushJob.decode(job.retry_at(99.0).encode()).attempt == 2


@pytest.mark.parametrize(
    "raw",
    [
        b"not json",
        b"\xff\xfe",
        b"[1, 2]",
        b'{"device": 1, "server_id": "s"}',
        b'{"user": "", "device": 1, "server_id": "s"}',
        b'{"user": "u", "device": -1, "server_id": "s"}',
        b'{"user": "u", "device": true, "server_id": "s"}',
        b'{"user": "u", "device": "1", "server_id": "s"}',
        b'{"user": "u", "device": 1}',
        b'{"user": "u", "device": 1, "server_id": "s", "attempt": 1.5}',
        b'{"user": "u", "device": 1, "server_id": "s", "not_before": "soon"}',
        b'{"user": "u", "device": 1, "server_id": "s", "not_before": Infinity}',
        b'{"user": "' + b"u" * 129 + b'", "device": 1, "server_id": "s"}',
    ],
)
def test_malformed_jobs_are_refused(raw: bytes) -> None:
    with pytest.raises(ValueError, match="push job"):
        PushJob.decode(raw)


def test_sent_is_done() -> None:
    assert next_step(PushResult(Outcome.SENT), PushJob("u", 1, "s"), POLICY).action is Action.DONE


def test_unregistered_removes_the_token_even_on_the_last_attempt() -> None:
    step = next_step(PushResult(Outcome.UNREGISTERED), PushJob("u", 1, "s", 2), POLICY)
    assert (step.action, step.reason) == (Action.REMOVE_TOKEN, "unregistered")


def test_rejected_gives_up_without_retry() -> None:
    step = next_step(PushResult(Outcome.REJECTED), PushJob("u", 1, "s"), POLICY)
    assert (step.action, step.reason) == (Action.GIVE_UP, "rejected")


def test_retry_backs_off_exponentially_from_the_configured_base() -> None:
    delays = [
        next_step(PushResult(Outcome.RETRY), PushJob("u", 1, "s", n), POLICY, rand=1.0).delay
        for n in range(2)
    ]
    assert delays == [0.5, 1.0]


def test_retry_after_wins_over_backoff() -> None:
    step = next_step(PushResult(Outcome.RETRY, retry_after=30.0), PushJob("u", 1, "s"), POLICY, 0.0)
    assert (step.action, step.delay) == (Action.RETRY, 30.0)


def test_retries_stop_after_max_attempts() -> None:
    last = PushJob("u", 1, "s", attempt=POLICY.max_attempts - 1)
    step = next_step(PushResult(Outcome.RETRY), last, POLICY)
    assert (step.action, step.reason) == (Action.GIVE_UP, "exhausted")


def test_one_attempt_policy_never_retries() -> None:
    policy = PushPolicy(max_attempts=1)
    step = next_step(PushResult(Outcome.RETRY), PushJob("u", 1, "s"), policy)
    assert step.action is Action.GIVE_UP


def test_claim_free_or_own_window_sends_other_or_sent_collapses() -> None:
    assert claim(None, "s1") is Claim.SEND
    assert claim(b"s1", "s1") is Claim.SEND  # replayed or retried job keeps its window
    assert claim(b"s0", "s1") is Claim.COLLAPSED
    assert claim(SENT_MARK + b"s1", "s1") is Claim.COLLAPSED  # replay after a send


def test_collapse_key_is_per_device_stable_and_opaque() -> None:
    key = collapse_key("user-123", 1)
    assert key == collapse_key("user-123", 1)
    assert key != collapse_key("user-123", 2)
    assert "user-123" not in key
    assert len(key) <= 64  # APNs apns-collapse-id limit
