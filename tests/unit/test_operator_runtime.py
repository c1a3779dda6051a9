"""The operator's runtime decisions without a cluster: which children to apply, create,
leave alone or prune; how the work queue folds triggers; which Events a status change
produces."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

import pytest

from tidings_operator.children import ChildKey, index_live, plan_children
from tidings_operator.outcome import Change, change_of
from tidings_operator.reconcile_steps import owner_key, phase_event
from tidings_operator.resources.refusal import Refusal
from tidings_operator.status import Observation, Rollout, WorkloadState, summarize
from tidings_operator.workqueue import Key, WorkQueue

OWNER = "uid-region"


def obj(
    kind: str, name: str, *, owner: str | None = OWNER, rv: str = "1", **annotations: str
) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "resourceVersion": rv}
    if owner:
        meta["ownerReferences"] = [
            {"kind": "ChatRegion", "name": "us-east", "uid": owner, "controller": True}
        ]
    if annotations:
        meta["annotations"] = annotations
    return {"kind": kind, "metadata": meta}


def test_every_desired_child_is_applied_so_drift_is_repaired() -> None:
    desired = [obj("Deployment", "a"), obj("Service", "b")]
    plan = plan_children(desired, index_live([obj("Deployment", "a")]), OWNER)
    assert [c["metadata"]["name"] for c in plan.apply] == ["a", "b"]
    assert plan.prune == ()


def test_an_unmanaged_child_is_neither_applied_nor_pruned() -> None:
    live = index_live(
        [
            obj("Deployment", "a", **{"tidings.dev/unmanaged": "true"}),
            obj("HorizontalPodAutoscaler", "old", **{"tidings.dev/unmanaged": "TRUE"}),
        ]
    )
    plan = plan_children([obj("Deployment", "a")], live, OWNER)
    assert plan.apply == ()
    assert plan.unmanaged == (ChildKey("Deployment", "a"),)
    assert plan.prune == ()


def test_message_shards_are_created_once_and_never_reapplied() -> None:
    shard = obj("MessageShard", "us-east-0")
    assert plan_children([shard], {}, OWNER).create == (shard,)
    moved = plan_children([shard], index_live([obj("MessageShard", "us-east-0", rv="9")]), OWNER)
    assert moved.create == ()
    assert moved.apply == ()


def test_only_children_of_this_owner_are_pruned() -> None:
    live = index_live(
        [
            obj("HorizontalPodAutoscaler", "mine"),
            obj("HorizontalPodAutoscaler", "someone-elses", owner="uid-other"),
            obj("ConfigMap", "orphan", owner=None),
        ]
    )
    assert plan_children([], live, OWNER).prune == (ChildKey("HorizontalPodAutoscaler", "mine"),)


def test_an_apply_reports_a_typed_change() -> None:
    assert change_of(None, obj("Service", "s")) is Change.CREATED
    assert change_of(obj("Service", "s", rv="4"), obj("Service", "s", rv="5")) is Change.PATCHED
    assert change_of(obj("Service", "s", rv="5"), obj("Service", "s", rv="5")) is Change.UNCHANGED


def test_a_child_names_its_owner_key() -> None:
    child = obj("Deployment", "us-east-gateway")
    child["metadata"]["namespace"] = "chat"
    assert owner_key(child) == Key("ChatRegion", "chat", "us-east")
    assert owner_key(obj("Deployment", "x", owner=None)) is None


NOW = datetime(2026, 11, 25, tzinfo=UTC)


def summary_of(**workloads: WorkloadState | None) -> Any:
    return summarize(Observation(generation=3, workloads=workloads), [], NOW)


def test_a_phase_change_gives_one_event_named_by_the_ready_reason() -> None:
    done = WorkloadState(desired=1, ready=1, rollout=Rollout.COMPLETE)
    event = phase_event("Progressing", summary_of(gateway=done))
    assert event == ("Ready", "Progressing -> Ready: 1/1 components ready", False)
    assert phase_event("Ready", summary_of(gateway=done)) is None


def test_a_refusal_is_a_warning_event() -> None:
    refused = summarize(
        Observation(
            generation=4,
            workloads={},
            refusals=[Refusal("PartitionsCannotShrink", "topic t has 4 partitions")],
        ),
        [],
        NOW,
    )
    reason, message, warning = phase_event("Ready", refused) or ("", "", False)
    assert reason == "PartitionsCannotShrink"
    assert "topic t has 4 partitions" in message
    assert warning


async def drained(queue: WorkQueue, seconds: float = 1.0) -> None:
    """Wait until no key is queued or running (at most ``seconds``)."""
    for _ in range(int(seconds * 100)):
        await asyncio.sleep(0.01)
        if len(queue) == 0:
            return


async def test_triggers_for_a_busy_key_fold_into_one_more_run() -> None:
    runs: list[Key] = []
    release = asyncio.Event()

    async def handler(key: Key) -> None:
        runs.append(key)
        await release.wait()

    queue = WorkQueue(handler, debounce=0)
    key = Key("ChatRegion", "ns", "a")
    queue.trigger(key)
    await asyncio.sleep(0.01)
    for _ in range(5):
        queue.trigger(key)  # arrive while the first run is in progress
    release.set()
    await drained(queue)
    assert runs == [key, key]
    await queue.close()


async def test_a_failed_reconcile_is_retried() -> None:
    attempts = 0
    done = asyncio.Event()

    async def handler(key: Key) -> None:
        nonlocal attempts
        attempts += 1
        if attempts < 3:
            raise RuntimeError("API server unreachable")
        done.set()

    queue = WorkQueue(handler, debounce=0, first_retry=0.01, max_retry=0.02)
    queue.trigger(Key("PushPool", "ns", "p"))
    await asyncio.wait_for(done.wait(), 5)
    assert attempts == 3
    await queue.close()


@pytest.mark.parametrize("closed_first", [True, False])
async def test_a_closed_queue_takes_no_more_work(closed_first: bool) -> None:
    seen: list[Key] = []

    async def handler(key: Key) -> None:
        seen.append(key)

    queue = WorkQueue(handler, debounce=0)
    if closed_first:
        await queue.close()
        queue.trigger(Key("ChatRegion", "ns", "a"))
        await asyncio.sleep(0.02)
        assert seen == []
    else:
        queue.trigger(Key("ChatRegion", "ns", "a"))
        await asyncio.sleep(0.02)
        await queue.close()
        assert seen == [Key("ChatRegion", "ns", "a")]


async def test_exclusive_waits_for_the_reconcile_in_flight_and_holds_later_ones() -> None:
    log: list[str] = []
    release = asyncio.Event()

    async def handler(key: Key) -> None:
        log.append("reconcile started")
        await release.wait()
        log.append("reconcile finished")

    queue = WorkQueue(handler, debounce=0)
    key = Key("ChatRegion", "ns", "a")
    queue.trigger(key)
    await asyncio.sleep(0.01)

    async def finalize() -> None:
        async with queue.exclusive(key):
            log.append("finalizer ran")
            queue.trigger(key)  # a child event during the finalizer
            await asyncio.sleep(0.02)
            log.append("finalizer done")

    finalizer = asyncio.create_task(finalize())
    await asyncio.sleep(0.02)
    assert log == ["reconcile started"]  # the finalizer waits
    release.set()
    await asyncio.wait_for(finalizer, 5)
    await drained(queue)
    assert log == [
        "reconcile started",
        "reconcile finished",
        "finalizer ran",
        "finalizer done",
        "reconcile started",  # the held trigger, after the block
        "reconcile finished",
    ]
    await queue.close()


async def test_exclusive_on_an_idle_key_runs_at_once() -> None:
    async def handler(key: Key) -> None:
        raise AssertionError("nothing triggered this key")

    queue = WorkQueue(handler, debounce=0)
    async with queue.exclusive(Key("ChatRegion", "ns", "idle")):
        pass
    assert len(queue) == 0
    await queue.close()


async def test_at_most_concurrency_reconciles_of_one_kind_run_at_once() -> None:
    running: dict[str, int] = {"MessageShard": 0, "ChatRegion": 0}
    peak: dict[str, int] = {"MessageShard": 0, "ChatRegion": 0}
    done: list[Key] = []

    async def handler(key: Key) -> None:
        running[key.kind] += 1
        peak[key.kind] = max(peak[key.kind], running[key.kind])
        await asyncio.sleep(0.01)
        running[key.kind] -= 1
        done.append(key)

    queue = WorkQueue(handler, debounce=0, concurrency=3)
    shards = [Key("MessageShard", "ns", f"s-{i}") for i in range(30)]
    for key in shards:
        queue.trigger(key)
    region = Key("ChatRegion", "ns", "a")
    queue.trigger(region)
    await drained(queue, 5)
    assert sorted(done) == sorted([*shards, region])  # every key reconciled once
    assert peak == {"MessageShard": 3, "ChatRegion": 1}
    # A kind of its own: the region did not wait behind thirty shards.
    assert done.index(region) < len(shards) // 3
    assert queue.running == 0
    await queue.close()


async def test_a_key_waiting_for_a_slot_yields_to_the_finalizer() -> None:
    release = asyncio.Event()
    log: list[str] = []

    async def handler(key: Key) -> None:
        log.append(f"reconcile {key.name}")
        await release.wait()

    queue = WorkQueue(handler, debounce=0, concurrency=1)
    busy, waiting = Key("ChatRegion", "ns", "busy"), Key("ChatRegion", "ns", "waiting")
    queue.trigger(busy)
    await asyncio.sleep(0.01)
    queue.trigger(waiting)  # queued behind busy for the one slot
    await asyncio.sleep(0.01)

    async def finalize() -> None:
        async with queue.exclusive(waiting):
            log.append("finalizer ran")
            await asyncio.sleep(0.02)

    finalizer = asyncio.create_task(finalize())
    await asyncio.sleep(0.01)
    release.set()
    await asyncio.wait_for(finalizer, 5)
    await drained(queue)
    # It did not run while the finalizer held it; its trigger ran after the block.
    assert log == ["reconcile busy", "finalizer ran", "reconcile waiting"]
    await queue.close()


def test_a_queue_needs_at_least_one_slot() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        WorkQueue(lambda key: asyncio.sleep(0), concurrency=0)
