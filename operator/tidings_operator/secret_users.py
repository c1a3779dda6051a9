"""Which ChatRegions and PushPools use which Secret, so that a Secret created, rotated
or deleted reconciles them at once instead of at the next resync.

The watch events of the custom resources keep the index (the spec as the event carries
it, before any validation: a region waiting for its Secret must still be found). Pure:
no kopf, no I/O.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from tidings_operator.names import CHAT_REGION, PUSH_POOL
from tidings_operator.workqueue import Key

SECRET_PATHS: Mapping[str, tuple[tuple[str, ...], ...]] = {
    CHAT_REGION: (
        ("redis", "urlSecretRef"),
        ("cassandra", "credentialsSecret"),
        ("s3", "credentialsSecret"),
    ),
    PUSH_POOL: (("credentialsSecret",), ("fcm", "caSecret"), ("apns", "caSecret")),
}
"""Where in each kind's spec a Secret is named (each path ends at an object with
``name``)."""


def referenced_secrets(kind: str, spec: Mapping[str, Any]) -> frozenset[str]:
    names = set()
    for path in SECRET_PATHS.get(kind, ()):
        node: Any = spec
        for part in path:
            node = node.get(part) if isinstance(node, Mapping) else None
        if isinstance(node, Mapping) and isinstance(node.get("name"), str):
            names.add(node["name"])
    return frozenset(names)


@dataclass
class SecretUsers:
    _uses: dict[Key, frozenset[str]] = field(default_factory=dict)

    def seen(self, key: Key, body: Mapping[str, Any]) -> None:
        names = referenced_secrets(key.kind, body.get("spec") or {})
        if names:
            self._uses[key] = names
        else:
            self._uses.pop(key, None)

    def gone(self, key: Key) -> None:
        self._uses.pop(key, None)

    def users(self, namespace: str, secret: str) -> list[Key]:
        """The resources in ``namespace`` that name ``secret``."""
        return sorted(
            key
            for key, names in self._uses.items()
            if key.namespace == namespace and secret in names
        )
