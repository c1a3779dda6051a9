"""A reconcile that fails says so in the status, and driver errors of every shape come
out as ``ExternalUnavailable`` with a reason a person can act on."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, cast

import pytest
from cassandra import AuthenticationFailed  # type: ignore[import-untyped]
from cassandra.cluster import NoHostAvailable  # type: ignore[import-untyped]

from fake_kube import FakeClock, FakeExternal, FakeKube, region_body
from tidings_operator.cassandra_admin import _translate, host_errors
from tidings_operator.external import CASSANDRA_REJECTED, CASSANDRA_UNAVAILABLE
from tidings_operator.failure import RECONCILE_ERROR, describe_failure, failed_status
from tidings_operator.kube import ApiError, Kube
from tidings_operator.reconciler import Reconciler
from tidings_operator.resources.refusal import Refusal
from tidings_operator.workqueue import Key

NOW = datetime(2026, 12, 1, tzinfo=UTC)
WHERE = "cassandra:9042"


# ---------------------------------------------------------------- Cassandra error shapes


def test_no_host_errors_of_every_shape_are_read() -> None:
    assert host_errors({"10.0.0.1:9042": OSError("refused")})["10.0.0.1:9042"] is not None
    assert host_errors(["10.0.0.1", "10.0.0.2"]) == {"10.0.0.1": None, "10.0.0.2": None}
    assert host_errors(None) == {}


def test_no_pool_in_the_local_datacenter_names_the_datacenter() -> None:
    # What the driver raises when the control connection found nodes but none of them
    # is in the local datacenter: the errors are a list of addresses, not a dict.
    exc = NoHostAvailable("Unable to connect to any servers", ["127.0.0.1:9042"])
    translated = _translate(exc, "connect", WHERE, "us-east")
    assert translated.reason == CASSANDRA_REJECTED
    assert "no node of datacenter 'us-east'" in str(translated)
    assert "spec.cassandra.datacenter" in str(translated)


def test_nodes_that_refused_are_unavailable_and_bad_logins_rejected() -> None:
    down = NoHostAvailable("x", {"127.0.0.1:9042": OSError("connection refused")})
    assert _translate(down, "connect", WHERE, "local").reason == CASSANDRA_UNAVAILABLE
    login = NoHostAvailable("x", {"127.0.0.1:9042": AuthenticationFailed("bad password")})
    refused = _translate(login, "connect", WHERE, "local")
    assert refused.reason == CASSANDRA_REJECTED
    assert "credentialsSecret" in str(refused)
    empty = NoHostAvailable("nothing to try", None)
    assert "nothing to try" in str(_translate(empty, "connect", WHERE))


# ---------------------------------------------------------------- status of a failure


def test_an_unexpected_error_is_named_not_leaked() -> None:
    failure = describe_failure(AttributeError("'list' object has no attribute 'items'"))
    assert failure.reason == RECONCILE_ERROR
    assert "AttributeError" in failure.message
    api = describe_failure(ApiError(403, "Forbidden", "secrets is forbidden"))
    assert api.reason == "KubernetesApiError"
    assert "secrets is forbidden" in api.message


def test_a_failed_reconcile_turns_ready_false_at_the_generation_tried() -> None:
    before = {
        "observedGeneration": 3,
        "phase": "Ready",
        "componentsReady": "5/5",
        "conditions": [
            {
                "type": "Ready",
                "status": "True",
                "reason": "Ready",
                "message": "5/5 components ready",
                "lastTransitionTime": "2026-11-01T00:00:00Z",
                "observedGeneration": 3,
            },
            {
                "type": "Paused",
                "status": "False",
                "reason": "Reconciling",
                "lastTransitionTime": "2026-11-01T00:00:00Z",
            },
        ],
    }
    status = failed_status(before, 4, Refusal("CassandraRejected", "no datacenter us-east"), NOW)
    conditions = {c["type"]: c for c in status["conditions"]}
    assert status["observedGeneration"] == 3  # the reconcile of 4 did not complete
    assert status["phase"] == "Degraded"
    assert status["componentsReady"] == "5/5"
    ready, degraded = conditions["Ready"], conditions["Degraded"]
    assert (ready["status"], ready["reason"], ready["observedGeneration"]) == (
        "False",
        "CassandraRejected",
        4,
    )
    assert "generation 4 failed: no datacenter us-east" in ready["message"]
    assert ready["lastTransitionTime"] == "2026-12-01T00:00:00Z"
    assert degraded["status"] == "True"
    assert conditions["Paused"]["reason"] == "Reconciling"  # untouched
    assert [c["type"] for c in status["conditions"]] == ["Ready", "Paused", "Degraded"]


def region_object(generation: int = 2, **status: Any) -> dict[str, Any]:
    return region_body(generation=generation, status=status)


async def test_the_reconciler_writes_the_failure_and_raises_for_a_retry() -> None:
    kube = FakeKube(region_object(generation=7, phase="Ready", observedGeneration=6))
    reconciler = Reconciler(
        cast(Kube, kube), FakeExternal(AttributeError("boom")), clock=FakeClock(NOW)
    )
    with pytest.raises(AttributeError):
        await reconciler(Key("ChatRegion", "ns", "us-east"))
    status = kube.status("ChatRegion", "us-east")
    ready = next(c for c in status["conditions"] if c["type"] == "Ready")
    assert (status["phase"], status["observedGeneration"]) == ("Degraded", 6)
    assert (ready["reason"], ready["observedGeneration"]) == (RECONCILE_ERROR, 7)
    assert kube.events[-1][1] == RECONCILE_ERROR
