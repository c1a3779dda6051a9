"""APNs provider tokens: ES256 JSON Web Tokens signed with the team's ``.p8`` key.

Apple's token-based authentication wants a JWT whose header names the algorithm
(``ES256``) and the key id (``kid``), and whose claims name the team (``iss``) and the
issue time (``iat``). APNs refuses tokens older than an hour and also refuses tokens
renewed more often than every 20 minutes, so one token is cached and reused until it
is ``max_age`` old (50 minutes by default), or until the server says it expired.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from cryptography.hazmat.primitives.serialization import load_pem_private_key

DEFAULT_MAX_AGE = 50 * 60.0
"""Refresh the token well before APNs' one-hour limit."""


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def load_signing_key(key_pem: bytes) -> ec.EllipticCurvePrivateKey:
    """Load an APNs ``.p8`` key (PKCS#8 PEM, EC P-256); raises ``ValueError`` otherwise."""
    try:
        key = load_pem_private_key(key_pem, password=None)
    except (ValueError, TypeError) as exc:
        raise ValueError(f"APNs signing key is not an unencrypted PEM private key: {exc}") from exc
    if not isinstance(key, ec.EllipticCurvePrivateKey) or not isinstance(key.curve, ec.SECP256R1):
        raise ValueError("APNs signing key must be an EC P-256 (prime256v1) key")
    return key


def sign_es256(
    key: ec.EllipticCurvePrivateKey, header: dict[str, str], claims: dict[str, object]
) -> str:
    """A compact JWS: base64url(header).base64url(claims).base64url(r || s)."""
    signing_input = ".".join(
        _b64url(json.dumps(part, separators=(",", ":")).encode()) for part in (header, claims)
    )
    der = key.sign(signing_input.encode("ascii"), ec.ECDSA(hashes.SHA256()))
    r, s = decode_dss_signature(der)
    return f"{signing_input}.{_b64url(r.to_bytes(32, 'big') + s.to_bytes(32, 'big'))}"


class ProviderToken:
    """Mints and caches the bearer token for one (key id, team id)."""

    def __init__(
        self,
        key: ec.EllipticCurvePrivateKey,
        key_id: str,
        team_id: str,
        clock: Callable[[], float],
        max_age: float = DEFAULT_MAX_AGE,
    ) -> None:
        if not key_id or not team_id:
            raise ValueError("APNs key id and team id must not be empty")
        self._key = key
        self._key_id = key_id
        self._team_id = team_id
        self._clock = clock
        self._max_age = max_age
        self._token: str | None = None
        self._issued_at = 0.0

    @property
    def issued_at(self) -> float | None:
        """When the cached token was minted (None before the first one)."""
        return self._issued_at if self._token is not None else None

    def current(self) -> str:
        """The cached token, minted anew when missing or ``max_age`` old."""
        now = self._clock()
        if self._token is None or now - self._issued_at >= self._max_age:
            return self.refresh()
        return self._token

    def refresh(self) -> str:
        """Mint a new token now (the server said the cached one expired)."""
        now = self._clock()
        header = {"alg": "ES256", "kid": self._key_id}
        self._token = sign_es256(self._key, header, {"iss": self._team_id, "iat": int(now)})
        self._issued_at = now
        return self._token
