"""Google service-account OAuth2 for FCM: a signed JWT exchanged for an access token.

The flow is the documented "JWT bearer" grant (RFC 7523): sign a JWT with the service
account's RSA key (RS256) claiming ``iss`` = client e-mail, ``scope`` = the FCM scope,
``aud`` = the token URI, ``iat``/``exp`` one hour apart, then ``POST`` it to the token
URI as ``grant_type=urn:ietf:params:oauth:grant-type:jwt-bearer&assertion=<jwt>``.
The answer's ``access_token`` is cached until shortly before ``expires_in`` runs out.
"""

from __future__ import annotations

import asyncio
import base64
import json
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import httpx
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from tidings.ports import Clock

FCM_SCOPE = "https://www.googleapis.com/auth/firebase.messaging"
GRANT_TYPE = "urn:ietf:params:oauth:grant-type:jwt-bearer"
DEFAULT_TOKEN_URI = "https://oauth2.googleapis.com/token"
ASSERTION_LIFETIME_S = 3600


class CredentialsError(ValueError):
    """The service account JSON is missing a field or holds an unusable key."""


class TokenError(Exception):
    """The token endpoint did not hand out an access token."""

    def __init__(
        self, message: str, *, status: int | None = None, retry_after: str | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        """HTTP status of the token endpoint's answer; None when it was never reached."""
        self.retry_after = retry_after
        """The raw ``Retry-After`` header, when the endpoint sent one."""

    @property
    def retryable(self) -> bool:
        """Network failures, throttling and server errors may heal; bad grants do not."""
        return self.status is None or self.status == 429 or self.status >= 500


@dataclass(frozen=True)
class ServiceAccount:
    """The fields of a Google service account key file that the flow needs."""

    client_email: str
    private_key: rsa.RSAPrivateKey
    token_uri: str
    project_id: str
    private_key_id: str | None = None

    @classmethod
    def from_info(cls, info: Mapping[str, Any], token_uri: str | None = None) -> ServiceAccount:
        """Parse a service account JSON object; ``token_uri`` overrides the file's."""
        fields: dict[str, str] = {}
        for name in ("client_email", "private_key", "project_id"):
            value = info.get(name)
            if not isinstance(value, str) or not value:
                raise CredentialsError(f"service account JSON lacks a string {name!r}")
            fields[name] = value
        uri = token_uri or info.get("token_uri") or DEFAULT_TOKEN_URI
        if not isinstance(uri, str):
            raise CredentialsError("service account 'token_uri' must be a string")
        try:
            key = serialization.load_pem_private_key(fields["private_key"].encode(), None)
        except (ValueError, TypeError) as exc:
            raise CredentialsError("service account 'private_key' is not a PEM key") from exc
        if not isinstance(key, rsa.RSAPrivateKey):
            raise CredentialsError("service account 'private_key' must be an RSA key")
        key_id = info.get("private_key_id")
        return cls(
            client_email=fields["client_email"],
            private_key=key,
            token_uri=uri,
            project_id=fields["project_id"],
            private_key_id=key_id if isinstance(key_id, str) and key_id else None,
        )


def _b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def _b64url_json(value: Mapping[str, Any]) -> str:
    return _b64url(json.dumps(value, separators=(",", ":")).encode())


def sign_assertion(account: ServiceAccount, now: float) -> str:
    """The RS256-signed JWT asserting ``account`` wants the FCM scope."""
    header: dict[str, str] = {"alg": "RS256", "typ": "JWT"}
    if account.private_key_id:
        header["kid"] = account.private_key_id
    issued = int(now)
    claims = {
        "iss": account.client_email,
        "scope": FCM_SCOPE,
        "aud": account.token_uri,
        "iat": issued,
        "exp": issued + ASSERTION_LIFETIME_S,
    }
    signing_input = f"{_b64url_json(header)}.{_b64url_json(claims)}"
    signature = account.private_key.sign(
        signing_input.encode("ascii"), padding.PKCS1v15(), hashes.SHA256()
    )
    return f"{signing_input}.{_b64url(signature)}"


class AccessTokens:
    """Fetches and caches the OAuth2 access token; concurrent callers share one fetch."""

    def __init__(
        self,
        account: ServiceAccount,
        client: httpx.AsyncClient,
        clock: Clock = time.time,
        refresh_margin_s: float = 60.0,
    ) -> None:
        self._account = account
        self._client = client
        self._clock = clock
        self._margin = refresh_margin_s
        self._lock = asyncio.Lock()
        self._token: str | None = None
        self._expires_at = 0.0

    async def get(self) -> str:
        """A valid access token, fetched only when none is cached or it nears expiry."""
        async with self._lock:
            if self._token is None or self._clock() >= self._expires_at - self._margin:
                self._token, self._expires_at = await self._fetch()
            return self._token

    def invalidate(self, token: str) -> None:
        """Forget ``token`` (the provider refused it) so the next ``get`` fetches anew."""
        if self._token == token:
            self._token = None

    async def _fetch(self) -> tuple[str, float]:
        now = self._clock()
        form = {"grant_type": GRANT_TYPE, "assertion": sign_assertion(self._account, now)}
        try:
            response = await self._client.post(self._account.token_uri, data=form)
        except httpx.TransportError as exc:
            raise TokenError(f"token endpoint unreachable: {exc!r}") from exc
        if response.status_code != 200:
            raise TokenError(
                f"token endpoint answered {response.status_code}: {_oauth_error(response)}",
                status=response.status_code,
                retry_after=response.headers.get("retry-after"),
            )
        try:
            body = response.json()
            token = body["access_token"]
            expires_in = float(body.get("expires_in", ASSERTION_LIFETIME_S))
        except (ValueError, KeyError, TypeError) as exc:
            raise TokenError("token endpoint sent a malformed answer", status=502) from exc
        if not isinstance(token, str) or not token:
            raise TokenError("token endpoint sent no access_token", status=502)
        return token, now + expires_in


def _oauth_error(response: httpx.Response) -> str:
    """``error: error_description`` of an OAuth2 error answer (RFC 6749 section 5.2)."""
    try:
        body = response.json()
    except ValueError:
        return response.text[:200]
    if not isinstance(body, dict):
        return str(body)[:200]
    return f"{body.get('error', '?')}: {body.get('error_description', '')}".rstrip(": ")
