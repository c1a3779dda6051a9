"""The CRDs in ``crds/``, generated from the models: ``python -m tidings_operator.crdgen``.

The Helm chart installs the same files from ``charts/tidings/crds/``, next to the two
CRDs of kopf's peering (``kopf.dev``), which its ``--peering`` needs; both directories
are written from here. ``--check`` exits 1 when a committed file differs from what the
models say (CI and a unit test run it), so schema, code and chart cannot drift apart.
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
from tidings_operator.names import (
    APP_NAME,
    GROUP,
    NAME_LABEL,
    OLD_VERSION,
    PART_OF_LABEL,
    STORAGE_VERSION,
    VERSION,
)
from tidings_operator.schema import Schema, structural_schema
from tidings_operator.yamltext import dumps

REPO = Path(__file__).resolve().parents[2]
"""The repository root (``operator/tidings_operator/`` is two levels in)."""
CRD_DIR = REPO / "crds"
CHART_CRD_DIR = REPO / "charts" / "tidings" / "crds"
"""Helm installs these before the chart's templates (and never upgrades or deletes them)."""

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
                ".metadata.name",
            ),
            cel(
                "!has(self.spec.peers) || self.spec.peers.all(p, p.name != self.metadata.name)",
                "a region cannot be its own peer",
                ".spec.peers",
            ),
            cel(
                "!has(self.spec.cassandra.replication)"
                " || size(self.spec.cassandra.replication) == 0"
                " || (has(self.spec.cassandra.datacenter) ? self.spec.cassandra.datacenter"
                " : self.metadata.name) in self.spec.cassandra.replication",
                "cassandra.replication must include this region's datacenter",
                ".spec.cassandra.replication",
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
            # Only name (and generateName) may be described at the root; described, it
            # can be a root rule's fieldPath.
            "metadata": {"type": "object", "properties": {"name": {"type": "string"}}},
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
            # One schema for both versions: the API server converts by rewriting
            # apiVersion alone, no webhook to run or to be down (docs/upgrading.md).
            "conversion": {"strategy": "None"},
            "versions": [
                version(name, kind, root, subresources) for name in (VERSION, OLD_VERSION)
            ],
        },
    }


def version(name: str, kind: Kind, root: Schema, subresources: dict[str, Any]) -> dict[str, Any]:
    """One served version of a kind. Every version has the same schema; the old one is
    deprecated (kubectl prints the warning) and stays the storage version for one
    release, so the previous operator and chart keep working after an upgrade."""
    served: dict[str, Any] = {
        "name": name,
        "served": True,
        "storage": name == STORAGE_VERSION,
    }
    if name == OLD_VERSION:
        served["deprecated"] = True
        served["deprecationWarning"] = (
            f"{GROUP}/{OLD_VERSION} {kind.kind} is deprecated; use {GROUP}/{VERSION}"
        )
    served["subresources"] = subresources
    served["additionalPrinterColumns"] = [c.as_dict() for c in kind.columns]
    served["schema"] = {"openAPIV3Schema": root}
    return served


KOPF_GROUP = "kopf.dev"


def kopf_peering_crd(kind: str, plural: str, scope: str) -> dict[str, Any]:
    """A CRD of kopf's peering: operators with the same ``--peering`` name see each
    other's heartbeats in its status and only the highest priority one acts. The
    status is kopf's own, so its schema keeps whatever kopf writes."""
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        # Shared by every kopf operator in the cluster, so not labelled as ours.
        "metadata": {"name": f"{plural}.{KOPF_GROUP}"},
        "spec": {
            "group": KOPF_GROUP,
            "names": {"kind": kind, "plural": plural, "singular": kind.lower()},
            "scope": scope,
            "versions": [
                {
                    "name": "v1",
                    "served": True,
                    "storage": True,
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "properties": {
                                "status": {
                                    "type": "object",
                                    "x-kubernetes-preserve-unknown-fields": True,
                                }
                            },
                        }
                    },
                }
            ],
        },
    }


PEERING_CRDS = (
    kopf_peering_crd("KopfPeering", "kopfpeerings", "Namespaced"),
    kopf_peering_crd("ClusterKopfPeering", "clusterkopfpeerings", "Cluster"),
)
"""``KopfPeering`` serves operators watching listed namespaces (one object in each);
``ClusterKopfPeering`` one watching them all."""

HEADER = "# Generated by `python -m tidings_operator.crdgen` from tidings_operator.models.\n"
PEERING_HEADER = "# Generated by `python -m tidings_operator.crdgen`: kopf's peering CRD.\n"


def rendered() -> dict[str, str]:
    """File name -> YAML text of every CRD in ``crds/``."""
    return {f"{kind.crd_name}.yaml": HEADER + dumps(crd(kind)) for kind in KINDS}


def rendered_chart() -> dict[str, str]:
    """File name -> YAML text of every CRD in the chart: ours and kopf's peering."""
    peering = {
        f"{definition['metadata']['name']}.yaml": PEERING_HEADER + dumps(definition)
        for definition in PEERING_CRDS
    }
    return rendered() | peering


def sync(directory: Path, files: dict[str, str], *, check: bool) -> list[Path]:
    """The files of ``directory`` that differ from ``files`` (written unless ``check``)."""
    stale = []
    for name, text in files.items():
        path = directory / name
        current = path.read_text() if path.is_file() else None
        if current == text:
            continue
        stale.append(path)
        if not check:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
    return stale


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tidings_operator.crdgen", description=__doc__)
    parser.add_argument("--out", type=Path, help="only this directory, as crds/")
    parser.add_argument("--chart-out", type=Path, help="only this directory, as the chart's")
    parser.add_argument(
        "--check", action="store_true", help="write nothing; exit 1 if a file is stale"
    )
    args = parser.parse_args(argv)
    targets: list[tuple[Path, dict[str, str]]] = []
    if args.out is not None:
        targets.append((args.out, rendered()))
    if args.chart_out is not None:
        targets.append((args.chart_out, rendered_chart()))
    if not targets:
        targets = [(CRD_DIR, rendered()), (CHART_CRD_DIR, rendered_chart())]
    stale = [
        path for directory, files in targets for path in sync(directory, files, check=args.check)
    ]
    if args.check and stale:
        names = [str(path) for path in stale]
        print(f"stale CRDs (run python -m tidings_operator.crdgen): {names}", file=sys.stderr)
        return 1
    for path in stale:
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
