"""Small helpers for the JSON wire/state formats: strict base64 and typed field access."""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any

from tidings.client.crypto.errors import MalformedMessage


def b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")


def unb64(value: object, *, what: str, size: int | None = None) -> bytes:
    """Strict standard base64; ``size`` (if given) is the exact decoded length."""
    if not isinstance(value, str):
        raise MalformedMessage(f"{what} must be a base64 string")
    try:
        raw = base64.b64decode(value.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError) as exc:
        raise MalformedMessage(f"{what} is not valid base64") from exc
    if size is not None and len(raw) != size:
        raise MalformedMessage(f"{what} must be {size} bytes, got {len(raw)}")
    return raw


def dumps(obj: dict[str, Any]) -> bytes:
    """Compact, key-sorted UTF-8 JSON."""
    return json.dumps(obj, separators=(",", ":"), sort_keys=True).encode("utf-8")


def loads(data: bytes, *, what: str) -> dict[str, Any]:
    try:
        obj = json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise MalformedMessage(f"{what} is not valid JSON") from exc
    if not isinstance(obj, dict):
        raise MalformedMessage(f"{what} must be a JSON object")
    return obj


def get_int(obj: dict[str, Any], key: str, *, lo: int = 0, hi: int = 2**32 - 1) -> int:
    value = obj.get(key)
    if not isinstance(value, int) or isinstance(value, bool) or not lo <= value <= hi:
        raise MalformedMessage(f"field {key!r} must be an integer in [{lo}, {hi}]")
    return value


def get_str(obj: dict[str, Any], key: str, *, max_len: int = 256) -> str:
    value = obj.get(key)
    if not isinstance(value, str) or not 0 < len(value) <= max_len:
        raise MalformedMessage(f"field {key!r} must be a non-empty string")
    return value


def get_obj(obj: dict[str, Any], key: str) -> dict[str, Any]:
    value = obj.get(key)
    if not isinstance(value, dict):
        raise MalformedMessage(f"field {key!r} must be a JSON object")
    return value


def check_version(obj: dict[str, Any], version: int, *, what: str) -> None:
    if obj.get("v") != version:
        raise MalformedMessage(f"{what} has unsupported version {obj.get('v')!r}")
