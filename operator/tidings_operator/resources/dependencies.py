"""The Secrets a region or a push pool depends on, and which of them are missing.

A pod whose Secret or key is missing never starts (``CreateContainerConfigError``), and
the operator would read "no Cassandra login" as a wrong password: so every reference
is checked on each reconcile, and the first missing one is named in the status with
the spec field that refers to it.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from copy import deepcopy
from dataclasses import dataclass
from typing import Any

from tidings_operator.models import ChatRegion, PushPool
from tidings_operator.names import SETTINGS_HASH_ANNOTATION
from tidings_operator.resources.refusal import Refusal

Manifest = dict[str, Any]

SECRET_NOT_FOUND = "SecretNotFound"
SECRET_KEY_MISSING = "SecretKeyMissing"


@dataclass(frozen=True)
class SecretRef:
    """Keys of one Secret, as one spec field refers to them."""

    field: str
    """Where in the spec, e.g. ``spec.redis.urlSecretRef``."""
    name: str
    keys: tuple[str, ...]


def region_secret_refs(region: ChatRegion) -> list[SecretRef]:
    spec = region.spec
    refs = []
    if (redis := spec.redis.url_secret_ref) is not None:
        refs.append(SecretRef("spec.redis.urlSecretRef", redis.name, (redis.key,)))
    if (cass := spec.cassandra.credentials_secret) is not None:
        refs.append(
            SecretRef(
                "spec.cassandra.credentialsSecret",
                cass.name,
                (cass.username_key, cass.password_key),
            )
        )
    if (s3 := spec.s3.credentials_secret) is not None:
        refs.append(
            SecretRef("spec.s3.credentialsSecret", s3.name, (s3.access_key_key, s3.secret_key_key))
        )
    return refs


def pool_secret_refs(pool: PushPool) -> list[SecretRef]:
    spec = pool.spec
    refs = [
        SecretRef(
            "spec.credentialsSecret", spec.credentials_secret.name, (spec.credentials_secret.key,)
        )
    ]
    for provider, config in (("fcm", spec.fcm), ("apns", spec.apns)):
        if config is not None and config.ca_secret is not None:
            ca = config.ca_secret
            refs.append(SecretRef(f"spec.{provider}.caSecret", ca.name, (ca.key,)))
    return refs


def secret_names_of(refs: Sequence[SecretRef]) -> list[str]:
    return sorted({ref.name for ref in refs})


def missing_secrets(
    refs: Sequence[SecretRef], found: Mapping[str, Collection[str] | None], namespace: str
) -> list[Refusal]:
    """One refusal per reference whose Secret (``found[name]`` None) or keys are missing;
    ``found`` maps each Secret name to the keys it holds."""
    problems = []
    for ref in refs:
        keys = found.get(ref.name)
        if keys is None:
            problems.append(
                Refusal(
                    SECRET_NOT_FOUND,
                    f"{ref.field}: Secret {ref.name} not found in namespace {namespace}",
                )
            )
            continue
        absent = [key for key in ref.keys if key not in keys]
        if absent:
            problems.append(
                Refusal(
                    SECRET_KEY_MISSING,
                    f"{ref.field}: Secret {ref.name} has no key {', '.join(absent)}"
                    f" (it has: {', '.join(sorted(keys)) or 'none'})",
                )
            )
    return problems


def secret_keys(secret: Mapping[str, object] | None) -> frozenset[str] | None:
    """The keys a Secret object holds (``data`` and ``stringData``); None when absent."""
    if secret is None:
        return None
    keys: set[str] = set()
    for part in ("data", "stringData"):
        value = secret.get(part)
        if isinstance(value, Mapping):
            keys.update(str(k) for k in value)
    return frozenset(keys)


def keep_settings_hash(
    desired: Sequence[Manifest], live: Mapping[tuple[str, str], Mapping[str, Any]]
) -> list[Manifest]:
    """``desired`` with each existing Deployment's pod template keeping the settings hash
    it has now: while a Secret is missing, a new hash would roll every pod into one
    that cannot start. Everything else (replicas, drift) is still applied."""
    held = []
    for obj in desired:
        current = live.get((obj["kind"], obj["metadata"]["name"]))
        if obj["kind"] != "Deployment" or current is None:
            held.append(obj)
            continue
        template = (current.get("spec") or {}).get("template") or {}
        kept = ((template.get("metadata") or {}).get("annotations") or {}).get(
            SETTINGS_HASH_ANNOTATION
        )
        if kept is None:
            held.append(obj)
            continue
        copy = deepcopy(obj)
        copy["spec"]["template"]["metadata"]["annotations"][SETTINGS_HASH_ANNOTATION] = kept
        held.append(copy)
    return held
