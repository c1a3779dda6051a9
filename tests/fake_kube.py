"""An in-memory stand-in for ``tidings_operator.kube.Kube`` and ``External``, so the
reconciler's I/O half can be driven in unit tests: objects are plain dicts keyed by
(kind, namespace, name), applies store what they are given, and every call can be made
to fail."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

from tidings_operator.external_state import ExternalOutcome, SchemaGap
from tidings_operator.kube import ApiError
from tidings_operator.models import ChatRegion, MessageShard, PushPool

Manifest = dict[str, Any]


class FakeKube:
    def __init__(self, *objects: Manifest) -> None:
        self.objects: dict[tuple[str, str, str], Manifest] = {}
        self.events: list[tuple[str, str, str]] = []
        """(involved name, reason, message)."""
        self.fail_lists: dict[str, Exception] = {}
        """kind -> the error ``list`` raises for it."""
        self.missing_kinds: set[str] = set()
        """Kinds the cluster does not know (their CRD is not installed): applies 404."""
        self._version = 0
        for obj in objects:
            self.put(obj)

    def put(self, obj: Mapping[str, Any]) -> Manifest:
        self._version += 1
        stored: Manifest = {**obj, "metadata": dict(obj["metadata"])}
        meta = stored["metadata"]
        meta.setdefault("namespace", "ns")
        meta.setdefault("uid", f"uid-{meta['name']}")
        meta.setdefault("generation", 1)
        meta["resourceVersion"] = str(self._version)
        self.objects[(stored["kind"], meta["namespace"], meta["name"])] = stored
        return stored

    def status(self, kind: str, name: str, namespace: str = "ns") -> dict[str, Any]:
        found: dict[str, Any] = self.objects[(kind, namespace, name)].get("status") or {}
        return found

    async def get(self, kind: str, namespace: str | None, name: str) -> Manifest | None:
        return self.objects.get((kind, namespace or "", name))

    async def list(
        self, kind: str, namespace: str | None, *, labels: Mapping[str, str] | None = None
    ) -> list[Manifest]:
        if kind in self.fail_lists:
            raise self.fail_lists[kind]
        found = []
        for (k, ns, _), obj in self.objects.items():
            have = obj["metadata"].get("labels") or {}
            if (
                k == kind
                and ns == namespace
                and all(have.get(a) == b for a, b in (labels or {}).items())
            ):
                found.append(obj)
        return found

    async def apply(self, obj: Manifest, *, manager: str = "") -> Manifest:
        if obj["kind"] in self.missing_kinds:
            raise ApiError(404, "NotFound", f"the server could not find the {obj['kind']} kind")
        return self.put(obj)

    async def create(self, obj: Manifest) -> Manifest:
        meta = obj["metadata"]
        if (obj["kind"], meta.get("namespace", "ns"), meta["name"]) in self.objects:
            raise ApiError(409, "AlreadyExists", f"{meta['name']} exists")
        return self.put(obj)

    async def delete(self, kind: str, namespace: str | None, name: str) -> bool:
        return self.objects.pop((kind, namespace or "", name), None) is not None

    async def patch_status(
        self, kind: str, namespace: str | None, name: str, status: Mapping[str, Any]
    ) -> Manifest:
        obj = self.objects.get((kind, namespace or "", name))
        if obj is None:
            raise ApiError(404, "NotFound", name)
        obj["status"] = {**(obj.get("status") or {}), **status}  # a merge patch
        return obj

    async def patch(
        self, kind: str, namespace: str | None, name: str, patch: Mapping[str, Any]
    ) -> Manifest:
        """A merge patch of metadata and spec; ``metadata.resourceVersion`` in it is a
        precondition (409 when the object changed since)."""
        obj = self.objects.get((kind, namespace or "", name))
        if obj is None:
            raise ApiError(404, "NotFound", name)
        expected = (patch.get("metadata") or {}).get("resourceVersion")
        if expected is not None and expected != obj["metadata"]["resourceVersion"]:
            raise ApiError(409, "Conflict", f"{name} changed since {expected}")
        changed = {**obj, "spec": {**obj.get("spec", {}), **(patch.get("spec") or {})}}
        return self.put(changed)

    async def event(
        self, involved: Mapping[str, Any], *, reason: str, message: str, warning: bool = False
    ) -> None:
        self.events.append((involved["metadata"]["name"], reason, message))


class FakeClock:
    """A ``Clock`` that moves only when told to."""

    def __init__(self, start: datetime) -> None:
        self.moment = start

    def now(self) -> datetime:
        return self.moment

    def advance(self, seconds: float) -> None:
        self.moment += timedelta(seconds=seconds)


class FakeExternal:
    """``External`` with nothing outside: topics and keyspace always in line."""

    def __init__(self, error: Exception | None = None) -> None:
        self.error = error

    async def sync_region(self, region: ChatRegion, login: Any) -> ExternalOutcome:
        if self.error is not None:
            raise self.error
        return ExternalOutcome()

    async def delete_region(self, region: ChatRegion, login: Any) -> list[str]:
        return []

    async def pool_scale(self, pool: PushPool, region: ChatRegion) -> tuple[int, int]:
        return 0, pool.spec.replicas

    async def shard_lag(self, shard: MessageShard, owner: ChatRegion) -> int:
        return 0

    async def shard_oldest_ms(self, shard: MessageShard, owner: ChatRegion) -> int | None:
        return None

    async def missing_topics(self, region: ChatRegion) -> list[str]:
        return []

    async def missing_schema(self, region: ChatRegion, login: Any) -> SchemaGap:
        return SchemaGap()


def region_body(
    name: str = "us-east",
    namespace: str = "ns",
    *,
    generation: int | None = None,
    shards: int | None = None,
    annotations: dict[str, str] | None = None,
    status: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A ChatRegion as the API server hands it to the operator (loopback-style
    Kafka, Cassandra, Redis and S3 settings)."""
    metadata: dict[str, Any] = {"name": name, "namespace": namespace}
    if generation is not None:
        metadata["generation"] = generation
    if annotations is not None:
        metadata["annotations"] = annotations
    spec: dict[str, Any] = {
        "image": "tidings:1",
        "kafka": {"bootstrapServers": "kafka:9092"},
        "cassandra": {"contactPoints": ["cassandra"]},
        "redis": {"url": "redis://redis:6379/0"},
        "s3": {"bucket": "media"},
    }
    if shards is not None:
        spec["shards"] = shards
    body = {"apiVersion": "tidings.dev/v1alpha1", "kind": "ChatRegion", "metadata": metadata}
    body["spec"] = spec
    if status is not None:
        body["status"] = status
    return body
