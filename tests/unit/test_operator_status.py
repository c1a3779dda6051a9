"""Conditions and phase from what the children report, with an injected clock."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from tidings_operator.models import ChatRegion, Condition, MessageShard, PushPool, parse
from tidings_operator.resources.refusal import Refusal
from tidings_operator.status import (
    Observation,
    Rollout,
    WorkloadState,
    deployment_state,
    gateway_endpoint,
    merge_conditions,
    pool_status,
    region_status,
    summarize,
)

NOW = datetime(2025, 1, 1, tzinfo=UTC)
SETTLED = WorkloadState(desired=2, ready=2, rollout=Rollout.COMPLETE)


def conditions(obs: Observation, previous: list[Condition] | None = None) -> dict[str, Condition]:
    return {c.type: c for c in summarize(obs, previous or [], NOW).conditions}


def state(**kwargs: Any) -> tuple[str, str, str]:
    """(Ready, Progressing, Degraded) status letters and the Ready reason, compactly."""
    found = conditions(Observation(generation=1, **kwargs))
    flags = "".join(found[t].status[0] for t in ("Ready", "Progressing", "Degraded"))
    return flags, found["Ready"].reason, summarize(Observation(1, **kwargs), [], NOW).phase


def deployment(
    *,
    replicas: int = 2,
    ready: int = 2,
    generation: int = 3,
    observed: int = 3,
    progressing: tuple[str, str] | None = ("True", "NewReplicaSetAvailable"),
) -> dict[str, Any]:
    status: dict[str, Any] = {"observedGeneration": observed, "readyReplicas": ready}
    if progressing is not None:
        status["conditions"] = [
            {"type": "Progressing", "status": progressing[0], "reason": progressing[1]}
        ]
    return {
        "metadata": {"generation": generation},
        "spec": {"replicas": replicas},
        "status": status,
    }


# --------------------------------------------------------------------------- deployments


def test_a_finished_rollout_is_complete() -> None:
    assert deployment_state(deployment()) == SETTLED


def test_an_unobserved_generation_is_in_progress() -> None:
    assert deployment_state(deployment(observed=2)).rollout is Rollout.IN_PROGRESS


def test_a_new_deployment_is_in_progress_not_short() -> None:
    fresh = deployment(ready=0, progressing=("True", "ReplicaSetUpdated"))
    assert deployment_state(fresh).rollout is Rollout.IN_PROGRESS
    assert deployment_state({"metadata": {}, "spec": {}}).rollout is Rollout.IN_PROGRESS


def test_a_deadline_exceeded_rollout_is_stalled() -> None:
    stuck = deployment(ready=1, progressing=("False", "ProgressDeadlineExceeded"))
    assert deployment_state(stuck).rollout is Rollout.STALLED


# --------------------------------------------------------------------------- conditions


def test_everything_settled_is_ready() -> None:
    flags, reason, phase = state(workloads={"gateway": SETTLED, "router": SETTLED})
    assert (flags, reason, phase) == ("TFF", "Ready", "Ready")
    ready = conditions(Observation(1, {"gateway": SETTLED}))["Ready"]
    assert ready.message == "1/1 components ready"


def test_nothing_created_yet_is_pending() -> None:
    assert state(workloads={"gateway": None, "router": None}) == ("FTF", "Creating", "Pending")


def test_a_rollout_is_progressing_not_degraded() -> None:
    moving = WorkloadState(desired=2, ready=1, rollout=Rollout.IN_PROGRESS)
    assert state(workloads={"gateway": moving, "router": SETTLED}) == (
        "FTF",
        "RollingOut",
        "Progressing",
    )


def test_pods_lost_after_a_rollout_are_degraded() -> None:
    short = WorkloadState(desired=3, ready=1, rollout=Rollout.COMPLETE)
    flags, reason, phase = state(workloads={"delivery": short, "router": SETTLED})
    assert (flags, reason, phase) == ("FFT", "ReplicasUnavailable", "Degraded")
    degraded = conditions(Observation(1, {"delivery": short}))["Degraded"]
    assert degraded.message == "delivery 1/3 ready"


def test_a_stalled_rollout_is_degraded() -> None:
    stalled = WorkloadState(desired=2, ready=1, rollout=Rollout.STALLED)
    assert state(workloads={"gateway": stalled}) == ("FFT", "RolloutStalled", "Degraded")


def test_refusals_block_ready_with_their_reason() -> None:
    refusal = Refusal("PartitionsCannotShrink", "topic has 32 partitions")
    found = conditions(Observation(1, {"gateway": SETTLED}, refusals=[refusal]))
    assert (found["Ready"].status, found["Ready"].reason) == ("False", "PartitionsCannotShrink")
    assert found["Ready"].message == "topic has 32 partitions"
    assert found["Degraded"].status == "False"  # the running services are fine
    assert summarize(Observation(1, {"gateway": SETTLED}, refusals=[refusal]), [], NOW).phase == (
        "Conflict"
    )


def test_apply_errors_degrade() -> None:
    error = Refusal("ApplyFailed", "admission webhook denied the Deployment")
    found = conditions(Observation(1, {"gateway": SETTLED}, errors=[error]))
    assert (found["Ready"].status, found["Degraded"].status) == ("False", "True")
    assert found["Degraded"].reason == "ApplyFailed"


def test_paused_and_deleting_phases() -> None:
    paused = summarize(Observation(1, {"gateway": SETTLED}, paused=True), [], NOW)
    found = {c.type: c for c in paused.conditions}
    assert (found["Paused"].status, found["Paused"].reason) == ("True", "ReconcilePaused")
    assert "tidings.dev/paused" in found["Paused"].message
    assert paused.phase == "Paused"
    deleting = summarize(Observation(1, {"gateway": SETTLED}, paused=True, deleting=True), [], NOW)
    assert deleting.phase == "Deleting"


def test_conditions_carry_the_generation_and_valid_reasons() -> None:
    for cond in summarize(Observation(7, {"a": None, "b": SETTLED}), [], NOW).conditions:
        assert cond.observed_generation == 7
        Condition.model_validate(cond.model_dump(mode="json"))  # reason matches its pattern


def test_transition_time_moves_only_when_status_changes() -> None:
    earlier = NOW - timedelta(hours=1)
    first = summarize(Observation(1, {"gateway": SETTLED}), [], earlier).conditions
    same = {
        c.type: c for c in summarize(Observation(2, {"gateway": SETTLED}), first, NOW).conditions
    }
    assert same["Ready"].last_transition_time == earlier
    assert same["Ready"].observed_generation == 2
    short = WorkloadState(desired=2, ready=0, rollout=Rollout.COMPLETE)
    changed = {
        c.type: c for c in summarize(Observation(2, {"gateway": short}), first, NOW).conditions
    }
    assert changed["Ready"].last_transition_time == NOW
    assert changed["Paused"].last_transition_time == earlier


def test_merge_keeps_unknown_previous_out() -> None:
    old = Condition(type="Legacy", status="True", reason="X", last_transition_time=NOW)
    assert merge_conditions([old], []) == []


def test_per_component_status() -> None:
    summary = summarize(
        Observation(1, {"gateway": SETTLED, "media": None, "router": SETTLED}), [], NOW
    )
    assert summary.components_ready == "2/3"
    assert summary.components["gateway"].ready == 2
    assert summary.components["media"].desired == 0


# --------------------------------------------------------------------------- region status


def test_gateway_endpoint_prefers_the_load_balancer() -> None:
    service = {
        "metadata": {"name": "us-east-gateway", "namespace": "chat"},
        "spec": {"ports": [{"port": 80}]},
    }
    assert gateway_endpoint(service) == "us-east-gateway.chat.svc:80"
    service["status"] = {"loadBalancer": {"ingress": [{"ip": "203.0.113.7"}]}}
    assert gateway_endpoint(service) == "203.0.113.7:80"
    service["status"] = {"loadBalancer": {"ingress": [{"hostname": "lb.example.com"}]}}
    assert gateway_endpoint(service) == "lb.example.com:80"


def test_region_status_counts_owned_shards() -> None:
    region = parse(
        {
            "apiVersion": "tidings.dev/v1alpha1",
            "kind": "ChatRegion",
            "metadata": {"name": "us-east", "generation": 4},
            "spec": {
                "image": "tidings:1",
                "kafka": {"bootstrapServers": "k:9092"},
                "cassandra": {"contactPoints": ["c"]},
                "redis": {"url": "redis://r"},
                "s3": {"bucket": "media"},
            },
        }
    )
    assert isinstance(region, ChatRegion)

    def shard(name: str, home: str, owner: str) -> MessageShard:
        found = parse(
            {
                "apiVersion": "tidings.dev/v1alpha1",
                "kind": "MessageShard",
                "metadata": {"name": name},
                "spec": {
                    "region": home,
                    "index": 0,
                    "firstSlot": 0,
                    "lastSlot": 1,
                    "owner": owner,
                    "epoch": 2,
                },
            }
        )
        assert isinstance(found, MessageShard)
        return found

    shards = [
        shard("us-east-0", "us-east", "us-east"),
        shard("eu-west-0", "eu-west", "us-east"),  # taken over
        shard("us-east-1", "us-east", "eu-west"),  # failed over away
    ]
    summary = summarize(Observation(4, {"gateway": SETTLED}), [], NOW)
    status = region_status(region, summary, gateway="lb:80", shards=shards)
    assert status.owned_shards == 2
    assert status.observed_generation == 4
    assert status.phase == "Ready"
    assert status.gateway_endpoint == "lb:80"
    dumped = status.model_dump(mode="json", by_alias=True)
    assert dumped["componentsReady"] == "1/1"
    assert dumped["conditions"][0]["lastTransitionTime"] == "2025-01-01T00:00:00Z"


def test_pool_status_feeds_the_scale_subresource() -> None:
    pool = parse(
        {
            "apiVersion": "tidings.dev/v1alpha1",
            "kind": "PushPool",
            "metadata": {"name": "us-east-fcm", "generation": 2},
            "spec": {
                "region": "us-east",
                "provider": "fcm",
                "credentialsSecret": {"name": "fcm", "key": "sa.json"},
            },
        }
    )
    assert isinstance(pool, PushPool)
    summary = summarize(Observation(2, {"push": SETTLED}), [], NOW)
    status = pool_status(pool, summary, replicas=2, ready_replicas=2, consumer_lag=17)
    dumped = status.model_dump(mode="json", by_alias=True)
    assert dumped["selector"] == (
        "app.kubernetes.io/component=push,app.kubernetes.io/instance=us-east-fcm,"
        "app.kubernetes.io/name=tidings"
    )
    assert (dumped["replicas"], dumped["readyReplicas"], dumped["consumerLag"]) == (2, 2, 17)
    assert (dumped["phase"], dumped["observedGeneration"]) == ("Ready", 2)
