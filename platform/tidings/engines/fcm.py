"""Firebase Cloud Messaging over the HTTP v1 API, implementing the ``PushSender`` port.

Each push is ``POST {endpoint}/v1/projects/{project_id}/messages:send`` with a bearer
token from the service account (see ``fcm_auth``). Payloads only wake the device: a
silent push is a high-priority data message ``{"type": "wake"}``; an alert adds a
notification with the generic text. Neither ever carries content or a sender name.

Errors come back as ``google.rpc.Status`` (``error.code``/``status``/``details[]``, the
FCM ``errorCode`` in a ``google.firebase.fcm.v1.FcmError`` detail) and are mapped to
outcomes: dead tokens to UNREGISTERED, throttling and outages to RETRY (honouring
``Retry-After``), credential and sender problems to REJECTED.
"""

from __future__ import annotations

import json
import ssl
import time
from collections.abc import Mapping
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any

import httpx

from tidings.core.push import GENERIC_ALERT, Outcome, Provider, PushMessage, PushResult
from tidings.engines.fcm_auth import AccessTokens, CredentialsError, ServiceAccount, TokenError
from tidings.ports import Clock

DEFAULT_ENDPOINT = "https://fcm.googleapis.com"
_RETRY_CODES = {"QUOTA_EXCEEDED", "UNAVAILABLE", "INTERNAL", "RESOURCE_EXHAUSTED"}
_REJECT_CODES = {"SENDER_ID_MISMATCH", "THIRD_PARTY_AUTH_ERROR", "PERMISSION_DENIED"}


def build_body(message: PushMessage) -> dict[str, Any]:
    """The ``messages:send`` request body for ``message``: a wake-up, never content."""
    android: dict[str, Any] = {
        "priority": "high",
        "collapse_key": message.collapse_key,
        "ttl": f"{max(0, message.ttl_s)}s",
    }
    body: dict[str, Any] = {"token": message.token, "data": {"type": "wake"}, "android": android}
    if message.alert:
        body["notification"] = {"body": GENERIC_ALERT}
        # One visible notification per device: later alerts replace the earlier one.
        android["notification"] = {"tag": message.collapse_key}
    return {"message": body}


def parse_retry_after(value: str | None, now: float) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delay-seconds or an HTTP date)."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - now)


def _error_codes(response: httpx.Response) -> tuple[str, str, bool]:
    """(rpc status, FCM errorCode, whether a field violation names the token)."""
    try:
        error = response.json().get("error", {})
    except (ValueError, AttributeError):
        return "", "", False
    if not isinstance(error, dict):
        return "", "", False
    status = str(error.get("status", ""))
    code, on_token = "", "registration token" in str(error.get("message", "")).lower()
    for detail in error.get("details") or []:
        if not isinstance(detail, dict):
            continue
        code = code or str(detail.get("errorCode", ""))
        for violation in detail.get("fieldViolations") or []:
            if isinstance(violation, dict) and violation.get("field") in ("message.token", "token"):
                on_token = True
    return status, code, on_token


def _third_party(response: httpx.Response) -> bool:
    """A 401 about the APNs/web-push credentials, which a new access token cannot fix."""
    return _error_codes(response)[1] == "THIRD_PARTY_AUTH_ERROR"


def interpret(response: httpx.Response, now: float) -> PushResult:
    """Map a ``messages:send`` answer to an outcome."""
    if response.status_code == 200:
        try:
            name = str(response.json().get("name", ""))
        except (ValueError, AttributeError):
            name = ""
        return PushResult(Outcome.SENT, detail=name)
    status, code, on_token = _error_codes(response)
    detail = f"{response.status_code} {status} {code}".strip()
    # A bare 404 (say, a wrong endpoint) must not cost a device its token.
    if code == "UNREGISTERED" or (response.status_code == 404 and status == "NOT_FOUND"):
        return PushResult(Outcome.UNREGISTERED, detail=detail)
    if "INVALID_ARGUMENT" in (code, status) and on_token:
        return PushResult(Outcome.UNREGISTERED, detail=detail)
    if code in _REJECT_CODES or response.status_code in (401, 403):
        return PushResult(Outcome.REJECTED, detail=detail)
    if (
        code in _RETRY_CODES
        or status in _RETRY_CODES
        or response.status_code == 429
        or response.status_code >= 500
    ):
        retry_after = parse_retry_after(response.headers.get("retry-after"), now)
        return PushResult(Outcome.RETRY, retry_after=retry_after, detail=detail)
    return PushResult(Outcome.REJECTED, detail=detail)


def _verify_option(verify: str | bool) -> ssl.SSLContext | bool:
    """httpx wants a context for a custom CA file (a path string is deprecated)."""
    if isinstance(verify, str):
        return ssl.create_default_context(cafile=verify)
    return verify


class FcmSender:
    """An FCM HTTP v1 client for one service account (one Firebase project)."""

    def __init__(
        self,
        credentials: Mapping[str, Any],
        endpoint: str = DEFAULT_ENDPOINT,
        token_uri: str | None = None,
        verify: str | bool = True,
        *,
        timeout: float = 10.0,
        clock: Clock = time.time,
    ) -> None:
        self.account = ServiceAccount.from_info(credentials, token_uri)
        self._url = f"{endpoint.rstrip('/')}/v1/projects/{self.account.project_id}/messages:send"
        self._clock = clock
        self._client = httpx.AsyncClient(verify=_verify_option(verify), timeout=timeout)
        self._tokens = AccessTokens(self.account, self._client, clock)

    async def send(self, message: PushMessage) -> PushResult:
        """Deliver one push; a refused access token is refreshed once and retried."""
        if message.provider != Provider.FCM:
            return PushResult(Outcome.REJECTED, detail=f"not an FCM push: {message.provider}")
        body = build_body(message)
        for attempt in range(2):
            try:
                token = await self._tokens.get()
            except TokenError as exc:
                return self._token_failure(exc)
            try:
                response = await self._client.post(
                    self._url, json=body, headers={"Authorization": f"Bearer {token}"}
                )
            except httpx.TransportError as exc:
                return PushResult(Outcome.RETRY, detail=f"network error: {exc!r}")
            if response.status_code == 401 and attempt == 0 and not _third_party(response):
                self._tokens.invalidate(token)
                continue
            return interpret(response, self._clock())
        raise AssertionError("unreachable")  # pragma: no cover

    def _token_failure(self, exc: TokenError) -> PushResult:
        if exc.retryable:
            retry_after = parse_retry_after(exc.retry_after, self._clock())
            return PushResult(Outcome.RETRY, retry_after=retry_after, detail=str(exc))
        return PushResult(Outcome.REJECTED, detail=str(exc))

    async def close(self) -> None:
        await self._client.aclose()


def _setting(settings: object, name: str) -> Any:
    if not hasattr(settings, name):
        raise CredentialsError(f"settings have no {name!r} field; FCM cannot be configured")
    return getattr(settings, name)


def build_sender(settings: object) -> FcmSender:
    """An ``FcmSender`` from ``fcm_endpoint``, ``fcm_token_uri`` and ``fcm_credentials_file``.

    An empty endpoint means production FCM and an empty token URI the one in the
    credentials file. An optional ``fcm_ca_file`` setting pins the CA (local servers).
    """
    path = _setting(settings, "fcm_credentials_file")
    if not path:
        raise CredentialsError("fcm_credentials_file is not set; FCM needs a service account")
    try:
        credentials = json.loads(Path(path).read_text())
    except OSError as exc:
        raise CredentialsError(f"cannot read FCM credentials file {path}: {exc}") from exc
    except ValueError as exc:
        raise CredentialsError(f"FCM credentials file {path} is not JSON: {exc}") from exc
    if not isinstance(credentials, dict):
        raise CredentialsError(f"FCM credentials file {path} must hold a JSON object")
    endpoint = _setting(settings, "fcm_endpoint") or DEFAULT_ENDPOINT
    token_uri = _setting(settings, "fcm_token_uri") or None
    ca_file = getattr(settings, "fcm_ca_file", None)
    verify: str | bool = str(ca_file) if ca_file else True
    return FcmSender(credentials, str(endpoint), str(token_uri) if token_uri else None, verify)
