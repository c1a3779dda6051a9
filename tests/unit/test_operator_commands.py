"""The operator's and the kubectl plugin's command lines (no cluster needed)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tidings_operator import main as operator_main
from tidings_operator import plugin
from tidings_operator.names import FINALIZER, finalizer_for


def test_run_options_come_from_flags() -> None:
    args = operator_main.parser().parse_args(
        ["run", "-n", "a", "-n", "b", "--region", "us-east", "--priority", "7"]
    )
    assert args.namespaces == ["a", "b"]
    assert args.regions == ["us-east"]
    assert args.priority == 7
    assert args.heartbeat_interval == 5.0
    assert args.max_concurrent_reconciles == 8


def test_run_options_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TIDINGS_OPERATOR_PRIORITY", "3")
    monkeypatch.setenv("TIDINGS_OPERATOR_HEARTBEAT_INTERVAL", "2.5")
    monkeypatch.setenv("TIDINGS_OPERATOR_MAX_CONCURRENT_RECONCILES", "2")
    args = operator_main.parser().parse_args(["run", "-A"])
    assert (args.priority, args.heartbeat_interval, args.all_namespaces) == (3, 2.5, True)
    assert args.max_concurrent_reconciles == 2


def test_peering_and_standalone_exclude_each_other() -> None:
    with pytest.raises(SystemExit):
        operator_main.parser().parse_args(["run", "-A", "--peering", "p", "--standalone"])


def test_the_plugin_needs_a_target_for_failover(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        plugin.parser().parse_args(["failover", "us-east"])
    assert "--to" in capsys.readouterr().err
    args = plugin.parser().parse_args(["-n", "ns", "failover", "us-east", "--to", "eu-west"])
    assert (args.namespace, args.region, args.to, args.dry_run) == (
        "ns",
        "us-east",
        "eu-west",
        False,
    )


def test_the_shards_table_lists_home_owner_epoch_and_lag_by_name() -> None:
    shards = [
        {
            "metadata": {"name": "us-east-1"},
            "spec": {
                "region": "us-east",
                "owner": "eu-west",
                "epoch": 2,
                "firstSlot": 128,
                "lastSlot": 255,
            },
            "status": {"consumerLag": 4},
        },
        {
            "metadata": {"name": "us-east-0"},
            "spec": {
                "region": "us-east",
                "owner": "us-east",
                "epoch": 1,
                "firstSlot": 0,
                "lastSlot": 127,
            },
        },
    ]
    lines = plugin.shards_table(shards).splitlines()
    assert lines[0].split() == ["NAME", "HOME", "OWNER", "EPOCH", "SLOTS", "LAG"]
    assert lines[1].split() == ["us-east-0", "us-east", "us-east", "1", "0-127"]
    assert lines[2].split() == ["us-east-1", "us-east", "eu-west", "2", "128-255", "4"]


def test_each_regions_operator_has_a_finalizer_of_its_own() -> None:
    assert finalizer_for(None) == FINALIZER == "tidings.dev/finalizer"
    assert finalizer_for(frozenset({"us-east"})) == "tidings.dev/finalizer-us-east"
    many = finalizer_for(frozenset({"us-east", "eu-west"}))
    assert many == finalizer_for(frozenset({"eu-west", "us-east"}))
    assert many not in {FINALIZER, finalizer_for(frozenset({"us-east"}))}
    assert len(many.split("/")[1]) <= 63  # a qualified name


def test_the_plugin_stops_quietly_when_its_reader_goes_away() -> None:
    """``kubectl tidings shards | head``: no BrokenPipeError traceback."""
    script = (
        "from tidings_operator import plugin\n"
        "async def run(args):\n"
        "    for i in range(200000):\n"
        "        print('shard', i)\n"
        "    return 0\n"
        "plugin.run = run\n"
        "plugin.main(['shards'])\n"
    )
    with subprocess.Popen(
        [sys.executable, "-c", script],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
    ) as proc:
        assert proc.stdout is not None
        assert proc.stderr is not None
        assert proc.stdout.readline() == b"shard 0\n"
        proc.stdout.close()  # as head does after its lines
        errors = proc.stderr.read().decode()
        assert proc.wait(timeout=60) == 141
    assert "Traceback" not in errors
