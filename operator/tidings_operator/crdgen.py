"""The CRDs in ``crds/``, generated from the models: ``python -m tidings_operator.crdgen``.

``--check`` exits 1 when the committed files differ from what the models say (CI and a
unit test run it), so schema and code cannot drift apart.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from tidings_operator.models.base import cel
from tidings_operator.models.chatregion import ChatRegion, ChatRegionSpec, ChatRegionStatus
from tidings_operator.models.messageshard import (
    MessageShard,
    MessageShardSpec,
    MessageShardStatus,
)
from tidings_operator.models.pushpool import PushPool, PushPoolSpec, PushPoolStatus
from tidings_operator.names import APP_NAME, GROUP, NAME_LABEL, PART_OF_LABEL, VERSION
from tidings_operator.schema import Schema, structural_schema
from tidings_operator.yamltext import dumps

CRD_DIR = Path(__file__).resolve().parents[2] / "crds"
"""``crds/`` at the repository root (``operator/tidings_operator/`` is two levels in)."""

READY = '.status.conditions[?(@.type=="Ready")].status'
READY_REASON = '.status.conditions[?(@.type=="Ready")].reason'


@dataclass(frozen=True)
class Column:
    name: str
    json_path: str
    type: str = "string"
    description: str = ""
    priority: int = 0
    """0: always shown; 1: only with ``-o wide``."""

    def as_dict(self) -> dict[str, Any]:
        column: dict[str, Any] = {"name": self.name, "type": self.type, "jsonPath": self.json_path}
        if self.description:
            column["description"] = self.description
        if self.priority:
            column["priority"] = self.priority
        return column


@dataclass(frozen=True)
class Kind:
    """One custom resource kind and how it is served."""

    model: type[BaseModel]
    spec: type[BaseModel]
    status: type[BaseModel]
    plural: str
    short_names: tuple[str, ...]
    columns: tuple[Column, ...]
    scale: bool = False
    """A scale subresource on ``spec.replicas`` (``kubectl scale``, autoscalers)."""
    root_rules: tuple[dict[str, Any], ...] = field(default=())
    """CEL rules that need ``metadata.name`` (only the root may read it)."""

    @property
    def kind(self) -> str:
        return self.model.__name__

    @property
    def crd_name(self) -> str:
        return f"{self.plural}.{GROUP}"


AGE = Column("Age", ".metadata.creationTimestamp", "date")

KINDS = (
    Kind(
        model=ChatRegion,
        spec=ChatRegionSpec,
        status=ChatRegionStatus,
        plural="chatregions",
        short_names=("chatreg",),
        columns=(
            Column("Ready", READY, description="The Ready condition"),
            Column("Phase", ".status.phase"),
            Column("Components", ".status.componentsReady", description="Ready/total"),
            Column("Shards", ".status.ownedShards", "integer", "MessageShards owned now"),
            AGE,
            Column("Reason", READY_REASON, priority=1),
            Column("Gateway", ".status.gatewayEndpoint", priority=1),
            Column("Failover", ".spec.failover.policy", priority=1),
        ),
        root_rules=(
            cel(
                "self.metadata.name.matches('^[a-z]([a-z0-9-]{0,38}[a-z0-9])?$')",
                "the name is the region's name: at most 40 lower-case letters, digits and"
                " dashes, starting with a letter",
            ),
            cel(
                "!has(self.spec.peers) || self.spec.peers.all(p, p.name != self.metadata.name)",
                "a region cannot be its own peer",
            ),
            cel(
                "!has(self.spec.cassandra.replication)"
                " || size(self.spec.cassandra.replication) == 0"
                " || (has(self.spec.cassandra.datacenter) ? self.spec.cassandra.datacenter"
                " : self.metadata.name) in self.spec.cassandra.replication",
                "cassandra.replication must include this region's datacenter",
            ),
        ),
    ),
    Kind(
        model=MessageShard,
        spec=MessageShardSpec,
        status=MessageShardStatus,
        plural="messageshards",
        short_names=("mshard",),
        columns=(
            Column("Region", ".spec.region", description="Home region"),
            Column("Owner", ".spec.owner"),
            Column("Epoch", ".spec.epoch", "integer"),
            Column("Ready", READY),
            Column("Lag", ".status.consumerLag", "integer"),
            AGE,
            Column("First", ".spec.firstSlot", "integer", priority=1),
            Column("Last", ".spec.lastSlot", "integer", priority=1),
        ),
    ),
    Kind(
        model=PushPool,
        spec=PushPoolSpec,
        status=PushPoolStatus,
        plural="pushpools",
        short_names=("ppool",),
        columns=(
            Column("Region", ".spec.region"),
            Column("Provider", ".spec.provider"),
            Column("Ready", READY),
            Column("Replicas", ".status.replicas", "integer"),
            Column("Lag", ".status.consumerLag", "integer"),
            AGE,
            Column("Phase", ".status.phase", priority=1),
        ),
        scale=True,
    ),
)


def crd(kind: Kind) -> dict[str, Any]:
    """The CustomResourceDefinition of one kind."""
    root: Schema = {
        "description": " ".join((kind.model.__doc__ or kind.kind).split()),
        "type": "object",
        "required": ["spec"],
        "properties": {
            "apiVersion": {"type": "string"},
            "kind": {"type": "string"},
            "metadata": {"type": "object"},
            "spec": structural_schema(kind.spec),
            "status": structural_schema(kind.status, defaults=False),
        },
    }
    if kind.root_rules:
        root["x-kubernetes-validations"] = list(kind.root_rules)
    subresources: dict[str, Any] = {"status": {}}
    if kind.scale:
        subresources["scale"] = {
            "specReplicasPath": ".spec.replicas",
            "statusReplicasPath": ".status.replicas",
            "labelSelectorPath": ".status.selector",
        }
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {
            "name": kind.crd_name,
            "labels": {NAME_LABEL: APP_NAME, PART_OF_LABEL: APP_NAME},
        },
        "spec": {
            "group": GROUP,
            "names": {
                "kind": kind.kind,
                "listKind": f"{kind.kind}List",
                "plural": kind.plural,
                "singular": kind.kind.lower(),
                "shortNames": list(kind.short_names),
                "categories": [APP_NAME],
            },
            "scope": "Namespaced",
            "versions": [
                {
                    "name": VERSION,
                    "served": True,
                    "storage": True,
                    "subresources": subresources,
                    "additionalPrinterColumns": [c.as_dict() for c in kind.columns],
                    "schema": {"openAPIV3Schema": root},
                }
            ],
        },
    }


HEADER = "# Generated by `python -m tidings_operator.crdgen` from tidings_operator.models.\n"


def rendered() -> dict[str, str]:
    """File name -> YAML text of every CRD."""
    return {f"{kind.crd_name}.yaml": HEADER + dumps(crd(kind)) for kind in KINDS}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tidings_operator.crdgen", description=__doc__)
    parser.add_argument("--out", type=Path, default=CRD_DIR, help="directory (default: crds/)")
    parser.add_argument(
        "--check", action="store_true", help="write nothing; exit 1 if a file is stale"
    )
    args = parser.parse_args(argv)
    stale = []
    for name, text in rendered().items():
        path: Path = args.out / name
        current = path.read_text() if path.is_file() else None
        if current == text:
            continue
        stale.append(name)
        if not args.check:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
    if args.check and stale:
        print(f"stale CRDs (run python -m tidings_operator.crdgen): {stale}", file=sys.stderr)
        return 1
    for name in stale:
        print(f"wrote {args.out / name}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
