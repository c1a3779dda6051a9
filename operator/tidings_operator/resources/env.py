"""Environment variables of the platform's pods, named from ``tidings.config.Settings``.

Every variable the operator sets goes through ``env_name``, which refuses a name that
is not a Settings field: a renamed setting breaks the operator's unit tests instead of
being silently ignored by the pods.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import PurePosixPath
from typing import Any

from tidings.config import Settings

PREFIX = str(Settings.model_config.get("env_prefix", ""))
"""``TIDINGS_``."""

SettingValue = str | int | float | bool | PurePosixPath


def env_name(setting: str) -> str:
    """``push_rate`` -> ``TIDINGS_PUSH_RATE``; a KeyError for anything Settings lacks."""
    if setting not in Settings.model_fields:
        raise KeyError(f"{setting!r} is not a field of tidings.config.Settings")
    return f"{PREFIX}{setting}".upper()


def setting_for(name: str) -> str | None:
    """The Settings field an environment variable sets, or None."""
    if not name.startswith(PREFIX):
        return None
    field = name.removeprefix(PREFIX).lower()
    return field if field in Settings.model_fields else None


def env_text(value: SettingValue) -> str:
    """A value as the platform parses it back (pydantic reads ``true``/``false``)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def settings_env(values: Mapping[str, SettingValue]) -> dict[str, str]:
    """Settings by field name -> environment variables, sorted by name."""
    return dict(sorted((env_name(k), env_text(v)) for k, v in values.items()))


def literal(setting: str, value: SettingValue) -> dict[str, Any]:
    """An ``env`` entry with a value."""
    return {"name": env_name(setting), "value": env_text(value)}


def from_secret(setting: str, secret: str, key: str) -> dict[str, Any]:
    """An ``env`` entry read from a Secret key (credentials never sit in a ConfigMap)."""
    return {
        "name": env_name(setting),
        "valueFrom": {"secretKeyRef": {"name": secret, "key": key}},
    }
