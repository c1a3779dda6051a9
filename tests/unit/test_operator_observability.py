"""The operator's own health: a ready gauge per resource, series removed with their
resource, and a log with one line per change rather than per handler run."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any, cast

import pytest
from prometheus_client import REGISTRY

from fake_kube import FakeClock, FakeExternal, FakeKube, region_body
from tidings_operator.failover_loop import FailoverLoop
from tidings_operator.kube import Kube
from tidings_operator.logs import HandlerChatter
from tidings_operator.reconciler import Reconciler
from tidings_operator.workqueue import Key

NOW = datetime(2026, 12, 1, tzinfo=UTC)


def region(name: str) -> dict[str, Any]:
    return region_body(name, "obs", shards=1, annotations={})


def sample(metric: str, **labels: str) -> float | None:
    value: float | None = REGISTRY.get_sample_value(metric, labels)
    return value


async def test_ready_and_heartbeat_series_go_with_their_region() -> None:
    kube = FakeKube(region("gone-soon"))
    reconciler = Reconciler(cast(Kube, kube), FakeExternal(), clock=FakeClock(NOW))
    key = Key("ChatRegion", "obs", "gone-soon")
    labels = {"kind": "ChatRegion", "namespace": "obs", "name": "gone-soon"}
    await FailoverLoop(cast(Kube, kube), FakeClock(NOW)).tick(key)
    await reconciler(key)
    assert sample("tidings_operator_resource_ready", **labels) == 0  # pods not ready yet
    assert sample("tidings_operator_resource_paused", **labels) == 0
    assert sample("tidings_operator_heartbeats_total", region="gone-soon") == 1
    await kube.delete("ChatRegion", "obs", "gone-soon")
    await reconciler(key)
    assert sample("tidings_operator_resource_ready", **labels) is None
    assert sample("tidings_operator_resource_paused", **labels) is None
    assert sample("tidings_operator_heartbeats_total", region="gone-soon") is None


async def test_a_served_shard_reports_ready() -> None:
    kube = FakeKube(region("east"))
    reconciler = Reconciler(cast(Kube, kube), FakeExternal(), clock=FakeClock(NOW))
    await reconciler(Key("ChatRegion", "obs", "east"))
    await reconciler(Key("MessageShard", "obs", "east-0"))
    labels = {"kind": "MessageShard", "namespace": "obs", "name": "east-0"}
    assert sample("tidings_operator_resource_ready", **labels) == 1


def record(message: str, level: int = logging.INFO) -> logging.LogRecord:
    return logging.LogRecord("kopf.objects", level, __file__, 1, message, None, None)


@pytest.mark.parametrize(
    ("message", "level", "kept"),
    [
        ("Handler 'watch-chatregions' succeeded.", logging.INFO, False),
        ("Timer 'heartbeat' succeeded.", logging.INFO, False),
        ("Handler 'deletion-policy' failed temporarily: ...", logging.ERROR, True),
        ("Something else happened.", logging.INFO, True),
    ],
)
def test_kopf_handler_successes_are_debug_lines(message: str, level: int, kept: bool) -> None:
    logging.getLogger("kopf.objects").setLevel(logging.INFO)
    assert HandlerChatter().filter(record(message, level)) is kept
