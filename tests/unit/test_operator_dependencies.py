"""Dependencies a region or pool needs: referenced Secrets and keys, the pods' own
failures, and the Secret index that reconciles a region when its Secret changes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any, cast

from fake_kube import FakeClock, FakeExternal, FakeKube
from tidings_operator.kube import Kube
from tidings_operator.models import ChatRegion, PushPool
from tidings_operator.reconciler import Reconciler
from tidings_operator.resources.dependencies import (
    SECRET_KEY_MISSING,
    SECRET_NOT_FOUND,
    keep_settings_hash,
    missing_secrets,
    pool_secret_refs,
    region_secret_refs,
    secret_keys,
)
from tidings_operator.resources.podhealth import ComponentPods, component_pods, pod_issue
from tidings_operator.secret_users import SecretUsers, referenced_secrets
from tidings_operator.status import Observation, Rollout, WorkloadState, summarize
from tidings_operator.workqueue import Key

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)

REGION_SPEC: dict[str, Any] = {
    "image": "tidings:1",
    "kafka": {"bootstrapServers": "kafka:9092"},
    "cassandra": {"contactPoints": ["cassandra"], "credentialsSecret": {"name": "cass"}},
    "redis": {"urlSecretRef": {"name": "redis", "key": "url"}},
    "s3": {"bucket": "media", "credentialsSecret": {"name": "s3"}},
}


def region_body(**status: Any) -> dict[str, Any]:
    return {
        "apiVersion": "tidings.dev/v1alpha1",
        "kind": "ChatRegion",
        "metadata": {"name": "us-east", "namespace": "ns", "generation": 1},
        "spec": REGION_SPEC,
        "status": status,
    }


def secret(name: str, *keys: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name, "namespace": "ns"},
        "data": dict.fromkeys(keys, "eA=="),
    }


# ---------------------------------------------------------------- Secrets and keys


def test_every_missing_secret_and_key_is_named_with_its_field() -> None:
    refs = region_secret_refs(ChatRegion.model_validate(region_body()))
    found = {"redis": frozenset({"url"}), "cass": frozenset({"username"}), "s3": None}
    problems = missing_secrets(refs, found, "ns")
    assert [(p.reason, p.message) for p in problems] == [
        (
            SECRET_KEY_MISSING,
            "spec.cassandra.credentialsSecret: Secret cass has no key password (it has: username)",
        ),
        (SECRET_NOT_FOUND, "spec.s3.credentialsSecret: Secret s3 not found in namespace ns"),
    ]


def test_a_pool_checks_its_credentials_and_ca_secrets() -> None:
    pool = PushPool.model_validate(
        {
            "apiVersion": "tidings.dev/v1alpha1",
            "kind": "PushPool",
            "metadata": {"name": "fcm", "namespace": "ns"},
            "spec": {
                "region": "us-east",
                "provider": "fcm",
                "credentialsSecret": {"name": "fcm-sa", "key": "sa.json"},
                "fcm": {"caSecret": {"name": "ca", "key": "ca.pem"}},
            },
        }
    )
    refs = pool_secret_refs(pool)
    assert [(r.field, r.name, r.keys) for r in refs] == [
        ("spec.credentialsSecret", "fcm-sa", ("sa.json",)),
        ("spec.fcm.caSecret", "ca", ("ca.pem",)),
    ]
    assert [p.reason for p in missing_secrets(refs, {"ca": frozenset({"ca.pem"})}, "ns")] == [
        SECRET_NOT_FOUND
    ]


def test_secret_keys_come_from_data_and_string_data() -> None:
    assert secret_keys(None) is None
    assert secret_keys({"data": {"a": "eA=="}, "stringData": {"b": "x"}}) == {"a", "b"}


def test_while_a_secret_is_missing_running_pods_are_not_rolled() -> None:
    def deployment(hash_: str, replicas: int) -> dict[str, Any]:
        return {
            "kind": "Deployment",
            "metadata": {"name": "us-east-gateway"},
            "spec": {
                "replicas": replicas,
                "template": {"metadata": {"annotations": {"tidings.dev/settings-hash": hash_}}},
            },
        }

    desired = [deployment("new", 4), {"kind": "Service", "metadata": {"name": "svc"}}]
    held = keep_settings_hash(desired, {("Deployment", "us-east-gateway"): deployment("old", 2)})
    assert held[0]["spec"]["template"]["metadata"]["annotations"] == {
        "tidings.dev/settings-hash": "old"
    }
    assert held[0]["spec"]["replicas"] == 4  # everything else still applied
    assert (
        desired[0]["spec"]["template"]["metadata"]["annotations"]["tidings.dev/settings-hash"]
        == "new"
    )
    assert held[1] is desired[1]


async def test_a_region_whose_secret_is_missing_is_not_ready_and_names_it() -> None:
    kube = FakeKube(region_body(), secret("redis", "url"), secret("cass", "username", "password"))
    reconciler = Reconciler(cast(Kube, kube), FakeExternal(), clock=FakeClock(NOW))
    await reconciler(Key("ChatRegion", "ns", "us-east"))
    status = kube.status("ChatRegion", "us-east")
    ready = next(c for c in status["conditions"] if c["type"] == "Ready")
    assert (ready["status"], ready["reason"]) == ("False", SECRET_NOT_FOUND)
    assert "spec.s3.credentialsSecret: Secret s3 not found" in ready["message"]
    assert status["phase"] == "Degraded"


# ---------------------------------------------------------------- the Secret index


def test_a_secret_event_finds_the_resources_that_name_it() -> None:
    assert referenced_secrets("ChatRegion", REGION_SPEC) == {"cass", "redis", "s3"}
    assert referenced_secrets("ChatRegion", {"redis": "not-a-map"}) == set()
    users = SecretUsers()
    east, pool = Key("ChatRegion", "ns", "us-east"), Key("PushPool", "ns", "fcm")
    users.seen(east, {"spec": REGION_SPEC})
    users.seen(pool, {"spec": {"credentialsSecret": {"name": "s3", "key": "k"}}})
    assert users.users("ns", "s3") == [east, pool]
    assert users.users("other", "s3") == []
    users.gone(pool)
    assert users.users("ns", "s3") == [east]


# ---------------------------------------------------------------- pods


def pod(
    component: str = "gateway",
    *,
    ready: bool = False,
    started: timedelta = timedelta(seconds=10),
    waiting: str | None = None,
    name: str = "p-1",
) -> dict[str, Any]:
    status: dict[str, Any] = {
        "startTime": (NOW - started).isoformat().replace("+00:00", "Z"),
        "conditions": [{"type": "Ready", "status": "True" if ready else "False"}],
    }
    if waiting:
        status["containerStatuses"] = [
            {
                "name": component,
                "restartCount": 3,
                "state": {"waiting": {"reason": waiting, "message": "back-off"}},
            }
        ]
    return {
        "metadata": {"name": name, "labels": {"app.kubernetes.io/component": component}},
        "status": status,
    }


def test_a_failing_container_is_an_issue_named_by_component_and_reason() -> None:
    issue = pod_issue("router", pod("router", waiting="ImagePullBackOff"), NOW)
    assert issue is not None
    assert issue.reason == "ImagePullBackOff"
    assert (
        issue.message == "router: pod p-1 container router: ImagePullBackOff (back-off; 3 restarts)"
    )


def test_an_unready_pod_fails_only_past_the_bound() -> None:
    assert pod_issue("gateway", pod(started=timedelta(seconds=30)), NOW) is None
    late = pod_issue("gateway", pod(started=timedelta(minutes=10)), NOW)
    assert late is not None
    assert late.reason == "PodNotReady"
    assert pod_issue("gateway", pod(ready=True, started=timedelta(hours=1)), NOW) is None


def test_pods_are_grouped_by_component_and_terminating_ones_ignored() -> None:
    leaving = pod("delivery", waiting="CrashLoopBackOff")
    leaving["metadata"]["deletionTimestamp"] = "2026-12-01T11:59:00Z"
    found = component_pods(
        [pod(ready=True), pod(name="p-2"), pod("router", waiting="CrashLoopBackOff"), leaving],
        NOW,
    )
    assert found["gateway"] == ComponentPods(issues=(), starting=1)
    assert [i.reason for i in found["router"].issues] == ["CrashLoopBackOff"]
    assert "delivery" not in found


def flags(obs: Observation) -> tuple[str, str, str, str]:
    summary = summarize(obs, [], NOW)
    found = {c.type: c for c in summary.conditions}
    letters = "".join(found[t].status[0] for t in ("Ready", "Progressing", "Degraded"))
    return letters, found["Ready"].reason, found["Degraded"].reason, summary.phase


SHORT = WorkloadState(desired=4, ready=2, rollout=Rollout.COMPLETE)


def test_a_scale_up_in_progress_is_progressing_not_degraded() -> None:
    starting = {"router": ComponentPods(starting=2)}
    obs = Observation(generation=1, workloads={"router": SHORT}, pods=starting)
    assert flags(obs) == ("FTF", "ScalingUp", "AsExpected", "Progressing")
    # Without the pods to look at, the counts alone still say degraded.
    assert flags(Observation(generation=1, workloads={"router": SHORT}))[3] == "Degraded"


def test_a_failing_pod_degrades_the_region_even_mid_rollout() -> None:
    issue = pod_issue("router", pod("router", waiting="ImagePullBackOff"), NOW)
    assert issue is not None
    rolling = WorkloadState(desired=2, ready=2, rollout=Rollout.IN_PROGRESS)
    obs = Observation(
        generation=1, workloads={"router": rolling}, pods={"router": ComponentPods((issue,))}
    )
    assert flags(obs) == ("FTT", "ImagePullBackOff", "ImagePullBackOff", "Degraded")
