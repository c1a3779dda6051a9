"""A topic deleted or a keyspace dropped behind the operator's back turns the region
not Ready until the reconcile that recreates it reads it back."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, cast

from fake_kube import FakeClock, FakeExternal, FakeKube, region_body
from tidings_operator.external_state import ExternalOutcome, KafkaCassandra, SchemaGap
from tidings_operator.kube import Kube
from tidings_operator.models import ChatRegion, parse
from tidings_operator.reconciler import Reconciler
from tidings_operator.resources.refusal import Refusal
from tidings_operator.topic_watch import (
    KEYSPACE_MISSING,
    MISSING,
    TABLE_MISSING,
    keyspace_missing,
    mark_missing,
    missing_status,
    tables_missing,
    topics_missing,
)
from tidings_operator.workqueue import Key

NOW = datetime(2026, 12, 1, tzinfo=UTC)
KEY = Key("ChatRegion", "ns", "us-east")
TOPIC = "tidings.us-east.receipts"


def ready_status(generation: int = 3) -> dict[str, Any]:
    return {
        "observedGeneration": generation,
        "phase": "Ready",
        "conditions": [
            {
                "type": "Ready",
                "status": "True",
                "reason": "Ready",
                "message": "5/5 components ready",
                "lastTransitionTime": "2026-11-01T00:00:00Z",
                "observedGeneration": generation,
            },
            {
                "type": "Degraded",
                "status": "False",
                "reason": "AsExpected",
                "lastTransitionTime": "2026-11-01T00:00:00Z",
                "observedGeneration": generation,
            },
        ],
    }


def conditions_of(status: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["type"]: c for c in status["conditions"]}


def test_a_missing_topic_turns_ready_false_naming_it() -> None:
    status = missing_status(ready_status(), 3, topics_missing([TOPIC]), NOW)
    assert status is not None
    ready, degraded = conditions_of(status)["Ready"], conditions_of(status)["Degraded"]
    assert (ready["status"], ready["reason"]) == ("False", MISSING)
    assert (degraded["status"], degraded["reason"]) == ("True", MISSING)
    assert TOPIC in ready["message"]
    assert ready["lastTransitionTime"] == "2026-12-01T00:00:00Z"
    assert status["phase"] == "Degraded"
    assert status["observedGeneration"] == 3


def test_a_status_that_says_so_already_is_not_written_again() -> None:
    once = missing_status(ready_status(), 3, topics_missing([TOPIC]), NOW)
    assert once is not None
    assert missing_status(once, 3, topics_missing([TOPIC]), NOW) is None
    # another topic missing too is news: the message changes
    assert missing_status(once, 3, topics_missing([TOPIC, "tidings.us-east.push"]), NOW)


def test_a_missing_keyspace_has_its_own_reason() -> None:
    status = missing_status(ready_status(), 3, keyspace_missing("tidings_us_east"), NOW)
    assert status is not None
    ready = conditions_of(status)["Ready"]
    assert (ready["status"], ready["reason"]) == ("False", KEYSPACE_MISSING)
    assert "tidings_us_east" in ready["message"]


class RecreatingExternal(FakeExternal):
    """Kafka as the reconcile after a deletion finds it: the read-back after the
    recreation says whether the topic is listed again."""

    def __init__(self) -> None:
        super().__init__()
        self.read_back: list[Refusal] = []

    async def sync_region(self, region: ChatRegion, login: Any) -> ExternalOutcome:
        return ExternalOutcome(errors=list(self.read_back), done=[f"create topic {TOPIC}"])


async def test_observed_missing_then_recreated_clears_the_condition_on_the_read_back() -> None:
    kube = FakeKube(region_body(generation=3, status=ready_status()))
    external = RecreatingExternal()
    clock = FakeClock(NOW)
    reconciler = Reconciler(cast(Kube, kube), external, clock=clock)

    assert await mark_missing(cast(Kube, kube), clock, KEY, topics_missing([TOPIC]))
    assert conditions_of(kube.status("ChatRegion", "us-east"))["Ready"]["reason"] == MISSING
    assert [e[1] for e in kube.events] == [MISSING]
    # the next check finds it still missing: nothing new to say
    assert not await mark_missing(cast(Kube, kube), clock, KEY, topics_missing([TOPIC]))
    assert [e[1] for e in kube.events] == [MISSING]

    # recreated, but Kafka does not list it yet: still not Ready, for the same reason
    external.read_back = [Refusal(MISSING, f"Kafka does not list topic {TOPIC}")]
    await reconciler(KEY)
    ready = conditions_of(kube.status("ChatRegion", "us-east"))["Ready"]
    assert (ready["status"], ready["reason"]) == ("False", MISSING)

    # listed again: the conditions are computed from the world afresh
    external.read_back = []
    await reconciler(KEY)
    conditions = conditions_of(kube.status("ChatRegion", "us-east"))
    assert conditions["Ready"]["reason"] != MISSING
    assert conditions["Degraded"]["reason"] != MISSING


async def test_a_region_gone_meanwhile_is_left_alone() -> None:
    kube = FakeKube()
    clock = FakeClock(NOW)
    assert not await mark_missing(cast(Kube, kube), clock, KEY, topics_missing([TOPIC]))
    assert kube.events == []


async def test_a_region_not_converged_yet_is_not_reported_missing() -> None:
    """A new region's reconcile creates its topics one by one, then its keyspace: a check
    meanwhile must not call what is not created yet "deleted behind the operator's
    back". Kafka and Cassandra are not even asked (this bootstrap would not answer)."""
    region = parse(region_body())
    assert isinstance(region, ChatRegion)
    external = KafkaCassandra()
    assert await external.missing_topics(region) == []
    assert await external.missing_schema(region, None) == SchemaGap()


def test_a_dropped_table_has_its_own_reason_naming_it() -> None:
    status = missing_status(ready_status(), 3, tables_missing("chat", ["inbox_acked"]), NOW)
    assert status is not None
    ready = conditions_of(status)["Ready"]
    assert (ready["status"], ready["reason"]) == ("False", TABLE_MISSING)
    assert "chat has no table inbox_acked" in ready["message"]
    assert conditions_of(status)["Degraded"]["reason"] == TABLE_MISSING
