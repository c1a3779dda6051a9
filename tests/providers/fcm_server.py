"""A local FCM HTTP v1 + Google OAuth2 token server over HTTPS, for client tests.

It speaks the documented wire protocol rather than trusting the client:

- ``POST /token`` takes the JWT-bearer grant, verifies the RS256 signature against the
  registered service account's public key and checks ``aud``/``scope``/``iat``/``exp``,
  then answers ``{access_token, expires_in, token_type}`` (or an OAuth2 error).
- ``POST /v1/projects/{project}/messages:send`` checks the bearer token, the project
  and the request shape, then answers ``{"name": "projects/p/messages/<id>"}`` or a
  ``google.rpc.Status`` error chosen by a per-token or server-wide script.

Accepted messages, token grants and every send attempt are recorded for assertions.
The certificate is made at test time by ``providers.tls.make_tls`` (a throwaway CA plus a leaf for
127.0.0.1), so clients verify TLS for real against the CA file.
"""

from __future__ import annotations

import base64
import contextlib
import functools
import itertools
import json
import re
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import uvicorn
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from providers.tls import TlsFiles, pem_key
from tidings import server

FCM_SCOPE = "https://www.googleapis.com/auth/firebase.messaging"
GRANT_TYPE = "urn:ietf:params:oauth:grant-type:jwt-bearer"

# FCM errorCode -> (HTTP status, google.rpc status), as the FCM v1 reference lists them.
ERRORS: dict[str, tuple[int, str]] = {
    "UNREGISTERED": (404, "NOT_FOUND"),
    "INVALID_ARGUMENT": (400, "INVALID_ARGUMENT"),
    "SENDER_ID_MISMATCH": (403, "PERMISSION_DENIED"),
    "QUOTA_EXCEEDED": (429, "RESOURCE_EXHAUSTED"),
    "UNAVAILABLE": (503, "UNAVAILABLE"),
    "INTERNAL": (500, "INTERNAL"),
    "THIRD_PARTY_AUTH_ERROR": (401, "UNAUTHENTICATED"),
}
_MESSAGE_KEYS = {"name", "data", "notification", "android", "webpush", "apns", "fcm_options"}
_TARGETS = {"token", "topic", "condition"}
_ANDROID_KEYS = {
    "collapse_key",
    "priority",
    "ttl",
    "restricted_package_name",
    "data",
    "notification",
    "fcm_options",
    "direct_boot_ok",
}
_ANDROID_NOTIFICATION_KEYS = {"title", "body", "icon", "color", "sound", "tag", "channel_id"}
_NOTIFICATION_KEYS = {"title", "body", "image"}
_TTL = re.compile(r"^\d+(\.\d{1,9})?s$")


class ManualClock:
    """A clock tests move by hand (seconds since the epoch)."""

    def __init__(self, now: float | None = None) -> None:
        self.now = time.time() if now is None else now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


# --- key material ------------------------------------------------------------------


_accounts = itertools.count(1)


@functools.cache
def pooled_key(slot: int) -> rsa.RSAPrivateKey:
    """RSA keys reused across tests (generating one takes a noticeable while)."""
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def make_service_account(
    project_id: str, token_uri: str, key: rsa.RSAPrivateKey | None = None
) -> tuple[dict[str, str], rsa.RSAPrivateKey]:
    """A service account key file's JSON (as Google issues them) and its private key."""
    key = key or rsa.generate_private_key(public_exponent=65537, key_size=2048)
    n = next(_accounts)
    info = {
        "type": "service_account",
        "project_id": project_id,
        "private_key_id": f"key-{n}",
        "private_key": pem_key(key).decode(),
        "client_email": f"push-{n}@{project_id}.iam.gserviceaccount.com",
        "client_id": str(100000 + n),
        "token_uri": token_uri,
    }
    return info, key


# --- the fake provider ----------------------------------------------------------------


def _b64url_decode(part: str) -> bytes:
    return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))


def _rpc_error(
    code: str, message: str, *, headers: dict[str, str] | None = None, on_token: bool = False
) -> JSONResponse:
    http, status = ERRORS[code]
    details: list[dict[str, Any]] = [
        {"@type": "type.googleapis.com/google.firebase.fcm.v1.FcmError", "errorCode": code}
    ]
    if on_token:
        details.append(
            {
                "@type": "type.googleapis.com/google.rpc.BadRequest",
                "fieldViolations": [{"field": "message.token", "description": message}],
            }
        )
    body = {"error": {"code": http, "message": message, "status": status, "details": details}}
    return JSONResponse(body, status_code=http, headers=headers)


def _bad_request(field_name: str, description: str) -> JSONResponse:
    body = {
        "error": {
            "code": 400,
            "message": f"Invalid value at '{field_name}': {description}",
            "status": "INVALID_ARGUMENT",
            "details": [
                {
                    "@type": "type.googleapis.com/google.rpc.BadRequest",
                    "fieldViolations": [{"field": field_name, "description": description}],
                }
            ],
        }
    }
    return JSONResponse(body, status_code=400)


def _oauth_error(error: str, description: str, status: int = 400) -> JSONResponse:
    return JSONResponse({"error": error, "error_description": description}, status_code=status)


def check_message_shape(body: Any) -> tuple[str, str] | None:
    """The first (field, problem) that makes ``body`` an invalid send request, if any."""
    if not isinstance(body, dict) or set(body) - {"message", "validate_only"}:
        return "", "request must be {'message': {...}}"
    message = body.get("message")
    if not isinstance(message, dict):
        return "message", "must be an object"
    unknown = set(message) - _MESSAGE_KEYS - _TARGETS
    if unknown:
        return f"message.{sorted(unknown)[0]}", "unknown field"
    targets = _TARGETS & set(message)
    if len(targets) != 1:
        return "message", "exactly one of token, topic, condition"
    if not isinstance(message.get("token", ""), str) or not message.get("token", "x"):
        return "message.token", "must be a non-empty string"
    data = message.get("data", {})
    if not isinstance(data, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in data.items()
    ):
        return "message.data", "must map strings to strings"
    if any(k in ("from", "message_type") or k.startswith(("google", "gcm")) for k in data):
        return "message.data", "uses a reserved key"
    notification = message.get("notification", {})
    if not isinstance(notification, dict) or set(notification) - _NOTIFICATION_KEYS:
        return "message.notification", "unknown field"
    android = message.get("android", {})
    if not isinstance(android, dict) or set(android) - _ANDROID_KEYS:
        return "message.android", "unknown field"
    if str(android.get("priority", "normal")).lower() not in ("normal", "high"):
        return "message.android.priority", "must be NORMAL or HIGH"
    if "ttl" in android and not _TTL.match(str(android["ttl"])):
        return "message.android.ttl", "must be a duration like '3.5s'"
    if not isinstance(android.get("collapse_key", ""), str):
        return "message.android.collapse_key", "must be a string"
    android_notification = android.get("notification", {})
    if (
        not isinstance(android_notification, dict)
        or set(android_notification) - _ANDROID_NOTIFICATION_KEYS
    ):
        return "message.android.notification", "unknown field"
    return None


@dataclass(frozen=True)
class Accepted:
    """One message FCM accepted."""

    name: str
    message: dict[str, Any]
    access_token: str


@dataclass
class FakeFcm:
    """The state and the Starlette app of the local FCM + OAuth2 server."""

    project_id: str = "tidings-test"
    clock: Callable[[], float] = time.time
    token_lifetime: int = 3599
    url: str = ""
    ca_file: Path | None = None
    public_keys: dict[str, rsa.RSAPublicKey] = field(default_factory=dict)
    grants: list[dict[str, Any]] = field(default_factory=list)
    """Claims of every assertion that earned an access token."""
    refused_grants: list[str] = field(default_factory=list)
    """OAuth2 error descriptions of refused assertions."""
    accepted: list[Accepted] = field(default_factory=list)
    attempts: list[str] = field(default_factory=list)
    """The token (or '' when unreadable) of every authenticated send request."""
    unauthenticated: int = 0
    token_errors: dict[str, str] = field(default_factory=dict)
    """Per-device-token script: token -> FCM errorCode to answer with."""
    mode: str | None = None
    """Server-wide script (an FCM errorCode, e.g. QUOTA_EXCEEDED); None means healthy."""
    retry_after: str | None = None
    """``Retry-After`` header sent with scripted errors, when set."""
    _access: dict[str, float] = field(default_factory=dict)
    _ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    @property
    def token_uri(self) -> str:
        return f"{self.url}/token"

    def register(self, credentials: dict[str, str], key: rsa.RSAPrivateKey) -> None:
        """Trust ``credentials``' client e-mail with ``key``'s public half."""
        self.public_keys[credentials["client_email"]] = key.public_key()

    def new_account(self) -> dict[str, str]:
        """A registered service account (with its own key) for this server's project."""
        key = pooled_key(len(self.public_keys))
        info, key = make_service_account(self.project_id, self.token_uri, key)
        self.register(info, key)
        return info

    def revoke_access_tokens(self) -> None:
        """Forget every issued access token (clients then get 401 and must refresh)."""
        self._access.clear()

    def app(self) -> Starlette:
        return Starlette(
            routes=[
                Route("/token", self._token, methods=["POST"]),
                Route("/v1/projects/{project_id}/messages:send", self._send, methods=["POST"]),
            ]
        )

    # -- OAuth2 token endpoint ---------------------------------------------------------

    async def _token(self, request: Request) -> JSONResponse:
        if request.headers.get("content-type", "").split(";")[0] != (
            "application/x-www-form-urlencoded"
        ):
            return self._refuse("invalid_request", "Expected a form-encoded body.")
        form = parse_qs((await request.body()).decode(), strict_parsing=False)
        if form.get("grant_type") != [GRANT_TYPE]:
            return self._refuse("unsupported_grant_type", "Invalid grant_type.")
        assertions = form.get("assertion", [])
        if len(assertions) != 1:
            return self._refuse("invalid_request", "Missing required parameter: assertion")
        claims_or_error = self._verify_assertion(assertions[0])
        if isinstance(claims_or_error, JSONResponse):
            return claims_or_error
        self.grants.append(claims_or_error)
        access = f"ya29.test-{next(self._ids)}"
        self._access[access] = self.clock() + self.token_lifetime
        return JSONResponse(
            {"access_token": access, "expires_in": self.token_lifetime, "token_type": "Bearer"}
        )

    def _refuse(self, error: str, description: str) -> JSONResponse:
        self.refused_grants.append(description)
        return _oauth_error(error, description)

    def _verify_assertion(self, assertion: str) -> dict[str, Any] | JSONResponse:
        try:
            header_b64, claims_b64, signature_b64 = assertion.split(".")
            header = json.loads(_b64url_decode(header_b64))
            claims = json.loads(_b64url_decode(claims_b64))
            signature = _b64url_decode(signature_b64)
        except ValueError:
            return self._refuse("invalid_grant", "Invalid JWT: malformed.")
        if header.get("alg") != "RS256":
            return self._refuse("invalid_grant", "Invalid JWT: alg must be RS256.")
        public_key = self.public_keys.get(str(claims.get("iss")))
        if public_key is None:
            return self._refuse("invalid_grant", "Invalid grant: account not found")
        try:
            public_key.verify(
                signature,
                f"{header_b64}.{claims_b64}".encode(),
                padding.PKCS1v15(),
                hashes.SHA256(),
            )
        except InvalidSignature:
            return self._refuse("invalid_grant", "Invalid JWT Signature.")
        if claims.get("aud") != self.token_uri:
            return self._refuse("invalid_grant", "Invalid JWT: audience mismatch.")
        if FCM_SCOPE not in str(claims.get("scope", "")).split():
            return self._refuse("invalid_scope", "Invalid OAuth scope or ID token audience.")
        now = self.clock()
        iat, exp = claims.get("iat"), claims.get("exp")
        if not isinstance(iat, int) or not isinstance(exp, int):
            return self._refuse("invalid_grant", "Invalid JWT: iat and exp must be integers.")
        if exp - iat > 3600 or exp <= now or iat > now + 60:
            return self._refuse(
                "invalid_grant",
                "Invalid JWT: Token must be a short-lived token (60 minutes) and in a "
                "reasonable timeframe.",
            )
        return dict(claims)

    # -- messages:send ---------------------------------------------------------------

    async def _send(self, request: Request) -> JSONResponse:
        auth = request.headers.get("authorization", "")
        access = auth.removeprefix("Bearer ") if auth.startswith("Bearer ") else ""
        if self._access.get(access, 0.0) <= self.clock():
            self.unauthenticated += 1
            body = {
                "error": {
                    "code": 401,
                    "message": "Request had invalid authentication credentials.",
                    "status": "UNAUTHENTICATED",
                }
            }
            return JSONResponse(body, status_code=401)
        try:
            payload = await request.json()
        except ValueError:
            self.attempts.append("")
            return _bad_request("", "Invalid JSON payload received.")
        message = payload.get("message") if isinstance(payload, dict) else None
        device = message.get("token", "") if isinstance(message, dict) else ""
        self.attempts.append(str(device))
        if request.path_params["project_id"] != self.project_id:
            body = {
                "error": {
                    "code": 403,
                    "message": "Permission 'cloudmessaging.messages.create' denied.",
                    "status": "PERMISSION_DENIED",
                }
            }
            return JSONResponse(body, status_code=403)
        problem = check_message_shape(payload)
        if problem is not None:
            return _bad_request(*problem)
        headers = {"Retry-After": self.retry_after} if self.retry_after else None
        if self.mode is not None:
            return _rpc_error(self.mode, f"scripted {self.mode}", headers=headers)
        scripted = self.token_errors.get(str(device))
        if scripted == "INVALID_ARGUMENT":
            message_text = "The registration token is not a valid FCM registration token"
            return _rpc_error(scripted, message_text, on_token=True)
        if scripted is not None:
            return _rpc_error(scripted, f"scripted {scripted}", headers=headers)
        assert isinstance(message, dict)
        name = f"projects/{self.project_id}/messages/0:{next(self._ids)}"
        self.accepted.append(Accepted(name, message, access))
        return JSONResponse({"name": name})


@contextlib.asynccontextmanager
async def run_fcm_server(tls: TlsFiles, fake: FakeFcm | None = None) -> AsyncIterator[FakeFcm]:
    """Serve ``fake`` over HTTPS on 127.0.0.1 (a free port) until the block exits."""
    fake = fake or FakeFcm()
    config = uvicorn.Config(
        fake.app(),
        host="127.0.0.1",
        port=0,
        log_level="warning",
        http="h11",
        ws="none",
        lifespan="off",
        ssl_certfile=str(tls.cert_file),
        ssl_keyfile=str(tls.key_file),
    )
    running = await server.start(config)
    fake.url = f"https://{running.host}:{running.port}"
    fake.ca_file = tls.ca_file
    try:
        yield fake
    finally:
        await running.stop()
