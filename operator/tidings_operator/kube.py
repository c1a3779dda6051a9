"""A small async Kubernetes API client: server-side apply, get, list, delete, status.

kopf watches and calls our handlers; this is what the handlers use to change the
cluster. Credentials come from the ``kubernetes`` package's loaders (kubeconfig or the
in-cluster service account), requests go over httpx. Only the kinds the operator
manages are known here (``KINDS``): a table beats a discovery round trip per start.
"""

from __future__ import annotations

import json
import ssl
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx
from kubernetes import client as kclient
from kubernetes import config as kconfig

from tidings_operator.names import API_VERSION, MANAGER

Manifest = dict[str, Any]


@dataclass(frozen=True)
class Kind:
    api_version: str
    plural: str
    namespaced: bool = True

    def path(self, namespace: str | None, name: str | None = None, sub: str = "") -> str:
        group_version = self.api_version
        root = f"/api/{group_version}" if "/" not in group_version else f"/apis/{group_version}"
        parts = [root]
        if self.namespaced and namespace:
            parts.append(f"namespaces/{namespace}")
        parts.append(self.plural)
        if name:
            parts.append(name)
        if sub:
            parts.append(sub)
        return "/".join(parts)


KINDS: Mapping[str, Kind] = {
    "ServiceAccount": Kind("v1", "serviceaccounts"),
    "ConfigMap": Kind("v1", "configmaps"),
    "Secret": Kind("v1", "secrets"),
    "Service": Kind("v1", "services"),
    "Pod": Kind("v1", "pods"),
    "Event": Kind("v1", "events"),
    "Deployment": Kind("apps/v1", "deployments"),
    "Role": Kind("rbac.authorization.k8s.io/v1", "roles"),
    "RoleBinding": Kind("rbac.authorization.k8s.io/v1", "rolebindings"),
    "HorizontalPodAutoscaler": Kind("autoscaling/v2", "horizontalpodautoscalers"),
    "PodDisruptionBudget": Kind("policy/v1", "poddisruptionbudgets"),
    "Lease": Kind("coordination.k8s.io/v1", "leases"),
    "ChatRegion": Kind(API_VERSION, "chatregions"),
    "MessageShard": Kind(API_VERSION, "messageshards"),
    "PushPool": Kind(API_VERSION, "pushpools"),
    "DNSEndpoint": Kind("externaldns.k8s.io/v1alpha1", "dnsendpoints"),
}


class ApiError(Exception):
    """A refused request, with the API server's own reason and message."""

    def __init__(self, status: int, reason: str, message: str) -> None:
        super().__init__(f"{status} {reason}: {message}")
        self.status = status
        self.reason = reason
        self.message = message

    @property
    def not_found(self) -> bool:
        return self.status == 404

    @property
    def conflict(self) -> bool:
        return self.status == 409


def kind_of(obj: Mapping[str, Any]) -> Kind:
    try:
        return KINDS[obj["kind"]]
    except KeyError:
        raise ValueError(f"the operator does not manage kind {obj.get('kind')!r}") from None


def load_configuration(kubeconfig: str | None = None) -> kclient.Configuration:
    """The kubeconfig named (or ``$KUBECONFIG``/``~/.kube/config``), else in-cluster."""
    cfg = kclient.Configuration()
    try:
        kconfig.load_kube_config(config_file=kubeconfig, client_configuration=cfg)
    except (kconfig.ConfigException, FileNotFoundError, TypeError):
        if kubeconfig:
            raise
        kconfig.load_incluster_config(client_configuration=cfg)
    return cfg


class Kube:
    """Requests to one API server as one identity."""

    def __init__(self, cfg: kclient.Configuration, *, timeout: float = 30.0) -> None:
        self._cfg = cfg
        context: ssl.SSLContext | bool = False
        if cfg.verify_ssl:
            context = ssl.create_default_context(cafile=cfg.ssl_ca_cert)
            if cfg.cert_file:
                context.load_cert_chain(cfg.cert_file, cfg.key_file)
        self._http = httpx.AsyncClient(
            base_url=cfg.host,
            verify=context,
            timeout=timeout,
            headers={"Accept": "application/json"},
        )

    @classmethod
    def from_kubeconfig(cls, kubeconfig: str | None = None) -> Kube:
        return cls(load_configuration(kubeconfig))

    async def aclose(self) -> None:
        await self._http.aclose()

    def _auth(self) -> dict[str, str]:
        hook = self._cfg.refresh_api_key_hook
        if hook is not None:  # in-cluster: projected tokens rotate
            hook(self._cfg)
        token = self._cfg.get_api_key_with_prefix(
            "authorization"
        ) or self._cfg.get_api_key_with_prefix("BearerToken")
        return {"Authorization": token} if token else {}

    async def request(
        self,
        method: str,
        path: str,
        *,
        body: Any = None,
        content_type: str = "application/json",
        params: Mapping[str, str] | None = None,
    ) -> Any:
        headers = self._auth()
        content = None
        if body is not None:
            headers["Content-Type"] = content_type
            content = json.dumps(body)
        response = await self._http.request(
            method, path, content=content, params=params, headers=headers
        )
        if response.status_code >= 400:
            try:
                status = response.json()
            except ValueError:
                status = {}
            raise ApiError(
                response.status_code,
                str(status.get("reason", response.reason_phrase)),
                str(status.get("message", response.text[:500])),
            )
        return response.json() if response.content else None

    async def apply(self, obj: Manifest, *, manager: str = MANAGER) -> Manifest:
        """Server-side apply: the fields in ``obj`` become ours; conflicts are forced
        (the operator is the authority over the fields it sets)."""
        meta = obj["metadata"]
        path = kind_of(obj).path(meta.get("namespace"), meta["name"])
        result: Manifest = await self.request(
            "PATCH",
            path,
            body=obj,
            content_type="application/apply-patch+yaml",
            params={"fieldManager": manager, "force": "true"},
        )
        return result

    async def create(self, obj: Manifest) -> Manifest:
        meta = obj["metadata"]
        result: Manifest = await self.request(
            "POST",
            kind_of(obj).path(meta.get("namespace")),
            body=obj,
            params={"fieldManager": MANAGER},
        )
        return result

    async def get(self, kind: str, namespace: str | None, name: str) -> Manifest | None:
        try:
            result: Manifest = await self.request("GET", KINDS[kind].path(namespace, name))
        except ApiError as exc:
            if exc.not_found:
                return None
            raise
        return result

    async def list(
        self, kind: str, namespace: str | None, *, labels: Mapping[str, str] | None = None
    ) -> list[Manifest]:
        params = {}
        if labels:
            params["labelSelector"] = ",".join(f"{k}={v}" for k, v in sorted(labels.items()))
        result = await self.request("GET", KINDS[kind].path(namespace), params=params)
        items: list[Manifest] = result.get("items") or []
        for item in items:  # list items come without these
            item.setdefault("kind", kind)
            item.setdefault("apiVersion", KINDS[kind].api_version)
        return items

    async def delete(self, kind: str, namespace: str | None, name: str) -> bool:
        """Delete in the background (children go by garbage collection); False when it
        was already gone."""
        try:
            await self.request(
                "DELETE",
                KINDS[kind].path(namespace, name),
                body={"propagationPolicy": "Background"},
            )
        except ApiError as exc:
            if exc.not_found:
                return False
            raise
        return True

    async def patch(
        self, kind: str, namespace: str | None, name: str, patch: Mapping[str, Any]
    ) -> Manifest:
        """A JSON merge patch. With ``metadata.resourceVersion`` in ``patch`` the API
        server applies it only to that version (409 Conflict otherwise)."""
        result: Manifest = await self.request(
            "PATCH",
            KINDS[kind].path(namespace, name),
            body=patch,
            content_type="application/merge-patch+json",
            params={"fieldManager": MANAGER},
        )
        return result

    async def patch_status(
        self, kind: str, namespace: str | None, name: str, status: Mapping[str, Any]
    ) -> Manifest:
        """Merge-patch the status subresource."""
        result: Manifest = await self.request(
            "PATCH",
            KINDS[kind].path(namespace, name, "status"),
            body={"status": status},
            content_type="application/merge-patch+json",
        )
        return result

    async def event(
        self,
        involved: Mapping[str, Any],
        *,
        reason: str,
        message: str,
        warning: bool = False,
        component: str = MANAGER,
    ) -> None:
        """A core/v1 Event about ``involved`` (a custom resource or child)."""
        meta = involved["metadata"]
        namespace = meta.get("namespace") or "default"
        now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        await self.request(
            "POST",
            KINDS["Event"].path(namespace),
            body={
                "apiVersion": "v1",
                "kind": "Event",
                "metadata": {"generateName": f"{meta['name']}.", "namespace": namespace},
                "involvedObject": {
                    "apiVersion": involved.get("apiVersion"),
                    "kind": involved.get("kind"),
                    "name": meta["name"],
                    "namespace": namespace,
                    "uid": meta.get("uid"),
                    "resourceVersion": meta.get("resourceVersion"),
                },
                "reason": reason,
                "message": message[:1024],
                "type": "Warning" if warning else "Normal",
                "source": {"component": component},
                "reportingComponent": component,
                "firstTimestamp": now,
                "lastTimestamp": now,
                "count": 1,
            },
        )
