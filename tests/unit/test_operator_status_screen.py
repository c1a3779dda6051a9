"""``kubectl tidings status``: the screen built from API objects and Prometheus's answers
(pure formatting, a fixed clock), and the reading of those answers."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from tidings_operator import plugin
from tidings_operator.prometheus_api import namespace_alerts, sockets_by_region, sockets_query
from tidings_operator.status_screen import (
    Alert,
    PrometheusView,
    ago,
    parse_time,
    status_screen,
)

NOW = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)


def stamp(delta: timedelta) -> str:
    return (NOW - delta).isoformat().replace("+00:00", "Z")


def region(name: str, **status: Any) -> dict[str, Any]:
    peers = [{"name": p} for p in ("us-east", "eu-west") if p != name]
    obj: dict[str, Any] = {"metadata": {"name": name}, "spec": {"peers": peers}}
    if status:
        obj["status"] = status
    return obj


def shard(name: str, home: str, owner: str, epoch: int, lag: int = 0) -> dict[str, Any]:
    return {
        "metadata": {"name": name},
        "spec": {"region": home, "owner": owner, "epoch": epoch},
        "status": {"phase": "Serving", "consumerLag": lag},
    }


def pool(name: str, home: str, lag: int) -> dict[str, Any]:
    return {"metadata": {"name": name}, "spec": {"region": home}, "status": {"consumerLag": lag}}


EAST = region(
    "us-east",
    phase="Ready",
    componentsReady="7/7",
    gatewayEndpoint="us-east-gateway.chat.svc:443",
    failover={
        "peers": [{"name": "eu-west", "health": "Failed", "since": stamp(timedelta(minutes=4))}]
    },
    conditions=[{"type": "Ready", "status": "True", "reason": "AllReady"}],
)
WEST = region(
    "eu-west",
    phase="Degraded",
    componentsReady="5/7",
    conditions=[
        {
            "type": "Ready",
            "status": "False",
            "reason": "ComponentsNotReady",
            "message": "gateway 0/2 ready",
        }
    ],
)
SHARDS = [
    shard("us-east-0", "us-east", "us-east", 1, lag=5),
    shard("us-east-1", "us-east", "us-east", 1, lag=7),
    shard("eu-west-0", "eu-west", "us-east", 3, lag=100),  # taken over by us-east
    shard("eu-west-1", "eu-west", "eu-west", 2),
]
POOLS = [pool("us-east-fcm", "us-east", 4), pool("us-east-apns", "us-east", 1)]


def blocks(screen: str) -> dict[str, list[str]]:
    found = {}
    for block in screen.split("\n\n"):
        lines = block.splitlines()
        found[lines[0].split()[0]] = lines
    return found


def line(block: list[str], key: str) -> str:
    (found,) = [row.strip() for row in block if row.strip().startswith(key + " ")]
    return found.removeprefix(key).strip()


def test_each_region_gets_health_peers_shards_lag_and_its_shard_table() -> None:
    screen = status_screen("chat", [WEST, EAST], SHARDS, POOLS, None, NOW)
    east, west = blocks(screen)["us-east"], blocks(screen)["eu-west"]
    assert screen.index("eu-west") < screen.index("us-east")  # by name
    assert east[0] == "us-east   Ready   components 7/7   gateway us-east-gateway.chat.svc:443"
    assert line(east, "peers") == "eu-west Failed for 4m"
    assert line(east, "shards") == "owns 3 (2 home, 1 taken over)"
    assert line(east, "lag") == "delivery 112, push 5 (us-east-apns 1, us-east-fcm 4)"
    assert line(east, "sockets") == "- (give --prometheus URL)"
    assert not [row for row in east if row.strip().startswith("alerts")]
    table = [row.split() for row in east if row.startswith("  ") and "-" in row.split()[0]]
    assert ["eu-west-0", "eu-west", "us-east", "3", "Serving", "100"] in table
    assert ["us-east-0", "us-east", "us-east", "1", "Serving", "5"] in table
    assert all(row[0] != "eu-west-1" for row in table)  # neither home nor owned here

    assert west[0] == "eu-west   Degraded   components 5/7"
    assert line(west, "why") == "ComponentsNotReady: gateway 0/2 ready"
    assert line(west, "peers") == "us-east not judged yet"
    assert line(west, "shards") == (
        "owns 1 (1 home, 0 taken over); home shards elsewhere: eu-west-0 on us-east"
    )
    assert line(west, "lag") == "delivery 0, push 0"


def test_prometheus_adds_sockets_and_each_regions_alerts_firing_first() -> None:
    alerts = [
        Alert("TidingsPeerRegionSuspect", "pending", "warning", "us-east"),
        Alert(
            "TidingsPeerRegionFailed",
            "firing",
            "critical",
            "us-east",
            "us-east judges eu-west Failed",
            NOW - timedelta(seconds=90),
        ),
        Alert("TidingsFailoverHappened", "firing", "warning", "", "a shard moved"),
    ]
    view = PrometheusView("http://prom:9090", sockets={"us-east": 1204.0}, alerts=alerts)
    screen = status_screen("chat", [EAST, WEST], SHARDS, POOLS, view, NOW)
    east, west = blocks(screen)["us-east"], blocks(screen)["eu-west"]
    assert line(east, "sockets") == "1204"
    at = next(i for i, row in enumerate(east) if row.strip().startswith("alerts"))
    assert east[at].split(None, 1)[1] == (
        "TidingsPeerRegionFailed critical firing for 1m: us-east judges eu-west Failed"
    )
    assert east[at + 1].strip() == "TidingsPeerRegionSuspect warning pending"
    assert line(west, "sockets") == "no data"
    assert line(west, "alerts") == "none"
    assert blocks(screen)["namespace"] == [
        "namespace alerts",
        "  TidingsFailoverHappened warning firing: a shard moved",
    ]


def test_a_prometheus_that_did_not_answer_is_said_so() -> None:
    view = PrometheusView("http://prom:9090", error="ConnectError: refused")
    screen = status_screen("chat", [EAST], SHARDS, POOLS, view, NOW)
    assert line(blocks(screen)["us-east"], "sockets") == "- (Prometheus did not answer)"
    assert screen.splitlines()[-1] == "Prometheus http://prom:9090: ConnectError: refused"


def test_a_namespace_without_regions_says_so() -> None:
    assert status_screen("empty", [], [], [], None, NOW) == "no ChatRegions in namespace empty"


def test_a_region_not_reconciled_yet_shows_unknown() -> None:
    screen = status_screen("chat", [region("us-east")], [], [], None, NOW)
    east = blocks(screen)["us-east"]
    assert east[0] == "us-east   Unknown"
    assert line(east, "shards") == "owns 0 (0 home, 0 taken over)"


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(0, "for 0s"), (59, "for 59s"), (60, "for 1m"), (7200, "for 2h"), (90000, "for 1d")],
)
def test_ages_are_rounded_down_to_their_largest_unit(seconds: int, text: str) -> None:
    assert ago(NOW - timedelta(seconds=seconds), NOW) == text


def test_a_future_time_reads_as_now_and_an_unknown_one_as_nothing() -> None:
    assert ago(NOW + timedelta(seconds=5), NOW) == "for 0s"
    assert ago(None, NOW) == ""


def test_times_from_kubernetes_and_prometheus_parse() -> None:
    assert parse_time("2026-12-06T11:56:00Z") == NOW - timedelta(minutes=4)
    # Prometheus writes nanoseconds; Python keeps microseconds.
    assert parse_time("2026-12-06T11:59:59.123456789Z") == NOW - timedelta(microseconds=876544)
    assert parse_time("2026-12-06T12:00:00.5+01:00") == NOW - timedelta(hours=1) + timedelta(
        seconds=0.5
    )
    assert parse_time("") is None
    assert parse_time("yesterday") is None


def test_prometheus_answers_are_read_for_one_namespace() -> None:
    assert (
        sockets_query('we"ird') == 'sum by (region) (tidings_ws_connections{namespace="we\\"ird"})'
    )
    query = {
        "status": "success",
        "data": {
            "resultType": "vector",
            "result": [
                {"metric": {"region": "us-east"}, "value": [1.0, "12"]},
                {"metric": {}, "value": [1.0, "3"]},  # no region label: not a region's
            ],
        },
    }
    assert sockets_by_region(query) == {"us-east": 12.0}
    body = {
        "data": {
            "alerts": [
                {
                    "labels": {"alertname": "A", "namespace": "chat", "region": "us-east"},
                    "annotations": {"summary": "s"},
                    "state": "firing",
                    "activeAt": "2026-12-06T11:59:00.000000001Z",
                },
                {"labels": {"alertname": "B", "region": "us-east"}, "state": "pending"},
                {"labels": {"alertname": "C", "namespace": "other"}, "state": "firing"},
                {"labels": {"alertname": "D", "region": "elsewhere"}, "state": "firing"},
                {"labels": {"alertname": "E", "namespace": "chat"}, "state": "firing"},
            ]
        }
    }
    alerts = namespace_alerts(body, "chat", ["us-east", "eu-west"])
    assert [(a.name, a.region, a.state) for a in alerts] == [
        ("A", "us-east", "firing"),
        ("B", "us-east", "pending"),
        ("E", "", "firing"),
    ]
    assert alerts[0].summary == "s"
    assert alerts[0].active_at == NOW - timedelta(minutes=1)


def test_the_plugin_parses_status_with_and_without_prometheus() -> None:
    args = plugin.parser().parse_args(["-n", "chat", "status"])
    assert (args.command, args.namespace, args.prometheus) == ("status", "chat", None)
    args = plugin.parser().parse_args(["status", "--prometheus", "http://prom:9090"])
    assert args.prometheus == "http://prom:9090"
