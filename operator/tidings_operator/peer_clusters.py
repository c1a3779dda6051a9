"""Peers in clusters of their own: each is read through its own API server.

What is read there: a peer's heartbeat Lease (its sightings on it), and its
MessageShards (its home shards, and the copies it made of shards it took over), which
this region merges into its own view of all the shards (``shard_merge``).

A peer whose ``spec.peers[].kubeconfigSecret`` names a Secret (in the region's namespace,
key ``kubeconfig``) runs in another Kubernetes cluster: its heartbeat Lease, and the
sightings it publishes there, are read with a client built from that kubeconfig. A peer
without one runs in this cluster. Clients are kept per Secret version and rebuilt when
the Secret changes.

A peer cluster that cannot be read (its API server is down, as in a lost region) keeps
the Lease read last: its heartbeat then stops being renewed as far as this region can
tell, and the quorum decides from what the regions see of its data plane, as for an
operator that stopped.
"""

from __future__ import annotations

import base64
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import httpx
import yaml  # type: ignore[import-untyped]
from kubernetes import client as kclient
from kubernetes import config as kconfig

from tidings_operator.failover import heartbeat_lease_name
from tidings_operator.kube import ApiError, Kube
from tidings_operator.models import MessageShard
from tidings_operator.models.chatregion import Peer
from tidings_operator.names import MESSAGE_SHARD

log = logging.getLogger(__name__)

KUBECONFIG_KEY = "kubeconfig"
PEER_TIMEOUT_S = 5.0
"""A peer's API server gets this long per request: a lost region must not hold up the
tick that judges it."""


class PeerClusterError(Exception):
    """A peer's cluster cannot be reached or its Secret is unusable; says what to fix."""


@dataclass
class _Client:
    version: str
    kube: Kube


def connect(cfg: kclient.Configuration) -> Kube:
    return Kube(cfg, timeout=PEER_TIMEOUT_S)


class PeerClusters:
    def __init__(
        self, kube: Kube, connect: Callable[[kclient.Configuration], Kube] = connect
    ) -> None:
        self.kube = kube
        self.connect = connect
        self._clients: dict[tuple[str, str], _Client] = {}
        self._last: dict[tuple[str, str], Mapping[str, Any] | None] = {}
        self._problems: dict[tuple[str, str], str] = {}
        self._shards: dict[tuple[str, str], list[MessageShard]] = {}

    async def lease(self, namespace: str, peer: Peer) -> Mapping[str, Any] | None:
        """The peer's heartbeat Lease from its own cluster (this one when it has no
        kubeconfig Secret); on failure the one read last (None if never read)."""
        where = (namespace, peer.name)
        try:
            kube = await self._kube(namespace, peer)
            found = await kube.get(
                "Lease", peer.namespace or namespace, heartbeat_lease_name(peer.name)
            )
        except (ApiError, PeerClusterError, OSError, httpx.HTTPError) as exc:
            problem = str(exc) or type(exc).__name__
            if self._problems.get(where) != problem:
                log.warning("peer %s: its heartbeat cannot be read: %s", peer.name, problem)
            self._problems[where] = problem
            return self._last.get(where)
        self._problems.pop(where, None)
        self._last[where] = found
        return found

    async def refresh_shards(self, namespace: str, peers: Sequence[Peer]) -> bool:
        """Read the MessageShards of the peers in other clusters or namespaces (those of
        a peer here are in this namespace's own list); True when what is known changed.
        A peer that cannot be read keeps what was read last."""
        changed = False
        for peer in peers:
            if not self.elsewhere(namespace, peer):
                continue
            where = (namespace, peer.name)
            try:
                kube = await self._kube(namespace, peer)
                found = await kube.list(MESSAGE_SHARD, peer.namespace or namespace)
            except (ApiError, PeerClusterError, OSError, httpx.HTTPError) as exc:
                log.info("peer %s: its shards cannot be read, keeping the last: %s", peer.name, exc)
                continue
            shards = [MessageShard.model_validate(s) for s in found]
            before = self._shards.get(where)
            if before is None or _fingerprint(before) != _fingerprint(shards):
                changed = True
            self._shards[where] = shards
        return changed

    def shards(self, namespace: str, peers: Sequence[Peer]) -> list[MessageShard]:
        """The peers' MessageShards as last read (``refresh_shards``)."""
        return [
            shard
            for peer in peers
            if self.elsewhere(namespace, peer)
            for shard in self._shards.get((namespace, peer.name), [])
        ]

    @staticmethod
    def elsewhere(namespace: str, peer: Peer) -> bool:
        """Whether the peer's objects are not in this namespace of this cluster."""
        return bool(peer.kubeconfig_secret) or peer.namespace not in ("", namespace)

    def problem(self, namespace: str, peer: str) -> str | None:
        """Why the peer's Lease was not read at the last try (None: it was)."""
        return self._problems.get((namespace, peer))

    async def _kube(self, namespace: str, peer: Peer) -> Kube:
        if not peer.kubeconfig_secret:
            return self.kube
        secret = await self.kube.get("Secret", namespace, peer.kubeconfig_secret)
        if secret is None:
            raise PeerClusterError(
                f"Secret {peer.kubeconfig_secret} (the kubeconfig of {peer.name}'s cluster) "
                f"is not in namespace {namespace}: create it with the key {KUBECONFIG_KEY}"
            )
        version = str((secret.get("metadata") or {}).get("resourceVersion", ""))
        key = (namespace, peer.kubeconfig_secret)
        cached = self._clients.get(key)
        if cached is not None and cached.version == version:
            return cached.kube
        kube = self.connect(peer_configuration(secret, peer.name))
        if cached is not None:
            await cached.kube.aclose()
        self._clients[key] = _Client(version, kube)
        return kube

    async def aclose(self) -> None:
        for client in self._clients.values():
            await client.kube.aclose()
        self._clients.clear()


def peer_configuration(secret: Mapping[str, Any], peer: str) -> kclient.Configuration:
    """A client configuration from the kubeconfig in ``secret`` (its current context)."""
    name = (secret.get("metadata") or {}).get("name", "?")
    encoded = (secret.get("data") or {}).get(KUBECONFIG_KEY)
    if not encoded:
        raise PeerClusterError(
            f"Secret {name} has no key {KUBECONFIG_KEY}: put {peer}'s kubeconfig there"
        )
    try:
        document = yaml.safe_load(base64.b64decode(encoded))
        cfg = kclient.Configuration()
        kconfig.load_kube_config_from_dict(document, client_configuration=cfg)
    except (ValueError, TypeError, yaml.YAMLError, kconfig.ConfigException) as exc:
        raise PeerClusterError(
            f"Secret {name}: the {KUBECONFIG_KEY} of {peer} is not a usable kubeconfig ({exc})"
        ) from exc
    return cfg


def _fingerprint(shards: Sequence[MessageShard]) -> list[tuple[str, str, int]]:
    return sorted((s.metadata.name, s.spec.owner, s.spec.epoch) for s in shards)
