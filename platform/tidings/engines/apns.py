"""The APNs provider client: token-authenticated pushes over HTTP/2.

Follows Apple's provider API: ``POST {endpoint}/3/device/{token}`` over HTTP/2 with a
bearer ES256 provider token (see :mod:`tidings.engines.apns_token`), the app's bundle
id as ``apns-topic`` and an ``apns-push-type`` consistent with the payload. Payloads
never carry content or sender: a silent push is ``{"aps": {"content-available": 1}}``
(``background``, priority 5); an alert push carries only :data:`GENERIC_ALERT`
(``alert``, priority 10). Apple's documented errors come back as outcomes:

====================================================  ==============================
200                                                   ``SENT`` (detail: ``apns-id``)
410 Unregistered / ExpiredToken                       ``UNREGISTERED``
400 BadDeviceToken / DeviceTokenNotForTopic           ``UNREGISTERED``
403 ExpiredProviderToken                              new token, one retry
403 InvalidProviderToken and other 4xx                ``REJECTED``
429 TooManyRequests, 5xx, network errors              ``RETRY`` (with Retry-After)
====================================================  ==============================
"""

from __future__ import annotations

import hashlib
import json
import re
import ssl
import time
from collections.abc import Callable
from email.utils import parsedate_to_datetime
from pathlib import Path

import httpx

from tidings.core.push import GENERIC_ALERT, Outcome, Provider, PushMessage, PushResult
from tidings.engines.apns_token import DEFAULT_MAX_AGE, ProviderToken, load_signing_key

PRODUCTION = "https://api.push.apple.com"
SANDBOX = "https://api.sandbox.push.apple.com"
ENDPOINT_ALIASES = {"production": PRODUCTION, "sandbox": SANDBOX}

MAX_COLLAPSE_ID = 64
"""Bytes; APNs answers 400 BadCollapseId above this."""

SILENT_PAYLOAD = json.dumps({"aps": {"content-available": 1}}, separators=(",", ":")).encode()
ALERT_PAYLOAD = json.dumps({"aps": {"alert": GENERIC_ALERT}}, separators=(",", ":")).encode()

_DEVICE_TOKEN = re.compile(r"[0-9A-Fa-f]{1,200}")
_DEAD_TOKEN_REASONS = frozenset({"BadDeviceToken", "DeviceTokenNotForTopic"})


class ApnsSender:
    """A :class:`tidings.ports.PushSender` for Apple Push Notification service."""

    def __init__(
        self,
        key_pem: bytes,
        key_id: str,
        team_id: str,
        topic: str,
        endpoint: str,
        verify: str | bool = True,
        clock: Callable[[], float] = time.time,
        *,
        token_max_age: float = DEFAULT_MAX_AGE,
        timeout: float = 10.0,
    ) -> None:
        if not topic:
            raise ValueError("APNs topic (the app's bundle id) must not be empty")
        self._topic = topic
        self._endpoint = resolve_endpoint(endpoint)
        self._clock = clock
        self._tokens = ProviderToken(
            load_signing_key(key_pem), key_id, team_id, clock, max_age=token_max_age
        )
        self._client = httpx.AsyncClient(
            http1=False,
            http2=True,
            verify=_tls_context(verify),
            timeout=httpx.Timeout(timeout, connect=min(timeout, 5.0)),
        )

    async def send(self, message: PushMessage) -> PushResult:
        """Deliver one push; Apple's documented errors come back as outcomes."""
        if message.provider is not Provider.APNS:
            return PushResult(Outcome.REJECTED, detail=f"not an APNs message: {message.provider}")
        if not _DEVICE_TOKEN.fullmatch(message.token):
            return PushResult(Outcome.UNREGISTERED, detail="BadDeviceToken (not hex)")
        url = f"{self._endpoint}/3/device/{message.token}"
        body = ALERT_PAYLOAD if message.alert else SILENT_PAYLOAD
        bearer = self._tokens.current()
        retried = False
        while True:
            try:
                response = await self._client.post(
                    url, content=body, headers=self._headers(message, bearer)
                )
            except httpx.TransportError as exc:
                return PushResult(Outcome.RETRY, detail=f"network: {type(exc).__name__}: {exc}")
            reason = _reason(response)
            if response.status_code == 403 and reason == "ExpiredProviderToken" and not retried:
                bearer = self._tokens.refresh()
                retried = True
                continue
            return self._result(response, reason)

    async def close(self) -> None:
        await self._client.aclose()

    def _headers(self, message: PushMessage, bearer: str) -> dict[str, str]:
        expiration = 0 if message.ttl_s <= 0 else int(self._clock()) + message.ttl_s
        headers = {
            "authorization": f"bearer {bearer}",
            "apns-topic": self._topic,
            "apns-push-type": "alert" if message.alert else "background",
            "apns-priority": "10" if message.alert else "5",
            "apns-expiration": str(expiration),
            "content-type": "application/json",
        }
        if message.collapse_key:
            headers["apns-collapse-id"] = collapse_id(message.collapse_key)
        return headers

    def _result(self, response: httpx.Response, reason: str) -> PushResult:
        status = response.status_code
        detail = f"{status} {reason}".strip()
        if status == 200:
            return PushResult(Outcome.SENT, detail=response.headers.get("apns-id", ""))
        if status == 410 or (status == 400 and reason in _DEAD_TOKEN_REASONS):
            return PushResult(Outcome.UNREGISTERED, detail=detail)
        if status == 429 or status >= 500:
            retry_after = _retry_after(response.headers.get("retry-after"), self._clock())
            return PushResult(Outcome.RETRY, retry_after=retry_after, detail=detail)
        return PushResult(Outcome.REJECTED, detail=detail)


def collapse_id(collapse_key: str) -> str:
    """The key itself when it fits APNs' 64 bytes, else its SHA-256 (64 hex chars)."""
    if len(collapse_key.encode()) <= MAX_COLLAPSE_ID:
        return collapse_key
    return hashlib.sha256(collapse_key.encode()).hexdigest()


def resolve_endpoint(endpoint: str) -> str:
    """``production``, ``sandbox`` or an ``https://`` base URL, without a trailing slash."""
    value = ENDPOINT_ALIASES.get(endpoint.strip().lower(), endpoint.strip()).rstrip("/")
    if not value.startswith("https://") or len(value) <= len("https://"):
        raise ValueError(
            f"APNs endpoint must be 'production', 'sandbox' or an https:// URL, got {endpoint!r}"
        )
    return value


def _tls_context(verify: str | bool) -> ssl.SSLContext | bool:
    """``True``: the system's CAs; a path: that CA bundle (e.g. a local test server's)."""
    if isinstance(verify, bool):
        return verify
    return ssl.create_default_context(cafile=verify)


def _reason(response: httpx.Response) -> str:
    """The ``reason`` of an APNs error body, or "" when there is none."""
    if response.status_code == 200 or not response.content:
        return ""
    try:
        body = json.loads(response.content)
    except ValueError:
        return ""
    reason = body.get("reason") if isinstance(body, dict) else None
    return reason if isinstance(reason, str) else ""


def _retry_after(value: str | None, now: float) -> float | None:
    """Seconds from a Retry-After header (delay seconds or an HTTP date)."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        return None
    return max(0.0, when.timestamp() - now)


def _setting(settings: object, name: str) -> str:
    value: object = getattr(settings, name, None)
    reveal = getattr(value, "get_secret_value", None)  # a pydantic SecretStr
    if callable(reveal):
        value = reveal()
    text = "" if value is None else str(value).strip()
    if not text:
        raise ValueError(
            f"APNs push is enabled but settings.{name} (TIDINGS_{name.upper()}) is not set"
        )
    return text


def build_sender(settings: object, clock: Callable[[], float] = time.time) -> ApnsSender:
    """An :class:`ApnsSender` from ``settings.apns_*``; raises ``ValueError`` when incomplete.

    Reads ``apns_endpoint`` (``production``, ``sandbox`` or a URL), ``apns_key_file``
    (the ``.p8`` key), ``apns_key_id``, ``apns_team_id``, ``apns_topic`` and, when
    present, ``apns_ca_file`` (a CA bundle to verify a non-Apple endpoint with).
    """
    endpoint = _setting(settings, "apns_endpoint")
    key_file = Path(_setting(settings, "apns_key_file"))
    try:
        key_pem = key_file.read_bytes()
    except OSError as exc:
        raise ValueError(f"cannot read the APNs key file {key_file}: {exc}") from exc
    ca_file = getattr(settings, "apns_ca_file", None)
    return ApnsSender(
        key_pem,
        key_id=_setting(settings, "apns_key_id"),
        team_id=_setting(settings, "apns_team_id"),
        topic=_setting(settings, "apns_topic"),
        endpoint=endpoint,
        verify=str(ca_file) if ca_file else True,
        clock=clock,
    )
