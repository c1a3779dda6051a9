"""What to do with a resource's children: compare desired manifests with live objects.

Pure: the reconcilers list the live children, call ``plan_children`` and carry out the
plan. Server-side apply makes "apply everything desired" idempotent, so the plan only
has to say what not to apply (unmanaged children, create-only children that exist) and
what to delete (children this owner made that the spec no longer wants).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from tidings_operator.names import MESSAGE_SHARD, UNMANAGED_ANNOTATION, is_true

Manifest = dict[str, Any]

CREATE_ONLY_KINDS = frozenset({MESSAGE_SHARD})
"""Kinds applied once: a MessageShard's owner and epoch belong to failover after
creation, and a re-apply would undo a move."""


@dataclass(frozen=True, order=True)
class ChildKey:
    kind: str
    name: str

    def __str__(self) -> str:
        return f"{self.kind} {self.name}"


def key_of(obj: Mapping[str, Any]) -> ChildKey:
    return ChildKey(str(obj["kind"]), str(obj["metadata"]["name"]))


def controller_uid(obj: Mapping[str, Any]) -> str | None:
    """The uid of the object's controlling owner, if any."""
    for ref in (obj.get("metadata") or {}).get("ownerReferences") or []:
        if ref.get("controller"):
            return str(ref.get("uid"))
    return None


def is_unmanaged(obj: Mapping[str, Any]) -> bool:
    return is_true((obj.get("metadata") or {}).get("annotations"), UNMANAGED_ANNOTATION)


@dataclass(frozen=True)
class ChildPlan:
    apply: tuple[Manifest, ...] = ()
    """Server-side apply these (creates what is missing, repairs drift)."""
    create: tuple[Manifest, ...] = ()
    """Create-only children that do not exist yet."""
    unmanaged: tuple[ChildKey, ...] = ()
    """Left alone: the unmanaged annotation is on."""
    prune: tuple[ChildKey, ...] = ()
    """Ours, no longer desired: delete."""


def plan_children(
    desired: Sequence[Manifest], live: Mapping[ChildKey, Manifest], owner_uid: str
) -> ChildPlan:
    apply: list[Manifest] = []
    create: list[Manifest] = []
    unmanaged: list[ChildKey] = []
    wanted = set()
    for obj in desired:
        key = key_of(obj)
        wanted.add(key)
        current = live.get(key)
        if current is not None and is_unmanaged(current):
            unmanaged.append(key)
        elif key.kind in CREATE_ONLY_KINDS:
            if current is None:
                create.append(obj)
        else:
            apply.append(obj)
    prune = sorted(
        key
        for key, obj in live.items()
        if key not in wanted and controller_uid(obj) == owner_uid and not is_unmanaged(obj)
    )
    return ChildPlan(tuple(apply), tuple(create), tuple(unmanaged), tuple(prune))


def index_live(objects: Iterable[Manifest]) -> dict[ChildKey, Manifest]:
    return {key_of(obj): obj for obj in objects}
