"""The SDK's REST client: typed calls, transparent token refresh, errors as exceptions."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx

from tidings.errors import TidingsError

SIGNED_OUT = (
    "this device is signed out: its number was registered on another device (or the "
    "device was unlinked); run `tidings register` to use the number here again"
)
"""Why a refresh token stops working: the server revokes a device's tokens then."""


class ApiError(TidingsError):
    """The server refused a request; ``status``, ``code`` and ``details`` say why."""

    def __init__(self, status: int, code: str, message: str, details: dict[str, Any]) -> None:
        super().__init__(message, details=details)
        self.status = status
        self.code = code


@dataclass
class Tokens:
    user_id: str
    device_id: int
    access_token: str
    refresh_token: str


class Api:
    """``base_url``: one gateway, or several separated by commas (say one per region):
    a request whose connection is refused moves on to the next one, and ``follow``
    moves to the gateway of the region serving this account now."""

    def __init__(
        self,
        base_url: str,
        tokens: Tokens | None = None,
        on_tokens: Callable[[Tokens], None] | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.gateways = [u.strip().rstrip("/") for u in base_url.split(",") if u.strip()]
        if not self.gateways:
            raise ValueError("no gateway URL given")
        self.base_url = self.gateways[0]
        self.tokens = tokens
        self._on_tokens = on_tokens
        self._refreshing = asyncio.Lock()
        self._http = httpx.AsyncClient(base_url=self.base_url, timeout=30.0, transport=transport)

    def use_gateway(self, url: str) -> None:
        """Send what follows to ``url`` (remembered beside the configured ones)."""
        url = url.rstrip("/")
        if url not in self.gateways:
            self.gateways.append(url)
        self.base_url = url
        self._http.base_url = httpx.URL(url)

    def next_gateway(self) -> str:
        """Move on to the gateway after the one in use (round the list); returns it."""
        at = self.gateways.index(self.base_url)
        self.use_gateway(self.gateways[(at + 1) % len(self.gateways)])
        return self.base_url

    async def follow(self) -> str | None:
        """Ask which region serves this account now and move to its gateway; returns the
        region, or None when it cannot be told (a server without discovery, no gateway
        published, not reachable: the gateway in use stays)."""
        try:
            placed = await self.call("GET", "/v1/regions/mine")
        except ApiError as exc:
            if exc.status == 401:
                raise  # signed out: the caller must hear it
            return None
        owner, gateway = str(placed["owner_region"]), placed.get("gateway")
        # Served by the region answering: stay, whatever name its gateway is published
        # under (a load balancer's, where this client may use a closer address).
        if owner != placed.get("here") and gateway:
            self.use_gateway(gateway)
        return owner

    async def close(self) -> None:
        await self._http.aclose()

    def _set_tokens(self, body: dict[str, Any]) -> Tokens:
        self.tokens = Tokens(
            body["user_id"], int(body["device_id"]), body["access_token"], body["refresh_token"]
        )
        if self._on_tokens is not None:
            self._on_tokens(self.tokens)
        return self.tokens

    async def call(
        self, method: str, path: str, json: Any = None, *, auth: bool = True, retry: bool = True
    ) -> Any:
        headers = {}
        if auth:
            if self.tokens is None:
                raise ApiError(401, "unauthorized", "not signed in; register first", {})
            headers["Authorization"] = f"Bearer {self.tokens.access_token}"
        used = self.tokens
        response = await self._send(method, path, json, headers)
        if response.status_code == 401 and auth and retry and used is not None:
            await self.refresh(used)
            return await self.call(method, path, json, auth=auth, retry=False)
        if response.status_code >= 400:
            try:
                error = response.json()["error"]
            except (ValueError, KeyError, TypeError):
                error = {"code": "http_error", "message": response.text[:200]}
            raise ApiError(
                response.status_code, error["code"], error["message"], error.get("details") or {}
            )
        if response.status_code == 204 or not response.content:
            return None
        return response.json()

    async def _send(
        self, method: str, path: str, json: Any, headers: dict[str, str]
    ) -> httpx.Response:
        """The request, sent to the gateway in use or, when it refuses the connection,
        to the next ones in turn. Only a refused connection moves on: the request never
        left, so it cannot run twice."""
        for _ in self.gateways:
            try:
                return await self._http.request(method, path, json=json, headers=headers)
            except httpx.ConnectError as exc:
                failed = exc
                if len(self.gateways) > 1:
                    self.next_gateway()
            except httpx.HTTPError as exc:
                raise ApiError(
                    0, "unreachable", f"{self.base_url} is unreachable: {exc}", {}
                ) from exc
        tried = ", ".join(self.gateways)
        raise ApiError(0, "unreachable", f"{tried}: none can be reached: {failed}", {}) from failed

    async def refresh(self, stale: Tokens | None = None) -> Tokens:
        """New tokens for ``stale`` (the tokens a refused request carried), one refresh at
        a time: a caller that waited while another refreshed takes its tokens, because
        the server revokes every token of the device when a spent refresh token comes
        back."""
        async with self._refreshing:
            assert self.tokens is not None
            if stale is not None and self.tokens is not stale:
                return self.tokens
            try:
                body = await self.call(
                    "POST",
                    "/v1/auth/refresh",
                    {"refresh_token": self.tokens.refresh_token},
                    auth=False,
                )
            except ApiError as exc:
                if exc.status != 401:
                    raise
                raise ApiError(401, "signed_out", SIGNED_OUT, {}) from exc
            return self._set_tokens(body)

    async def request_code(self, phone: str) -> None:
        await self.call("POST", "/v1/auth/code", {"phone": phone}, auth=False)

    async def register(self, phone: str, code: str, registration_id: int, name: str) -> Tokens:
        body = await self.call(
            "POST",
            "/v1/auth/register",
            {"phone": phone, "code": code, "registration_id": registration_id, "device_name": name},
            auth=False,
        )
        return self._set_tokens(body)

    async def link_device(self, code: str, name: str, registration_id: int) -> Tokens:
        """Trade a link code (made by the primary) for this new device's tokens."""
        body = await self.call(
            "POST",
            "/v1/devices/link",
            {"code": code, "device_name": name, "registration_id": registration_id},
            auth=False,
        )
        return self._set_tokens(body)

    async def upload(self, url: str, data: bytes, headers: dict[str, str]) -> None:
        try:
            response = await self._http.put(url, content=data, headers=headers)
        except httpx.HTTPError as exc:  # status 0 like any request that got no answer
            raise ApiError(0, "unreachable", f"upload: {url} is unreachable: {exc}", {}) from exc
        if response.status_code >= 300:
            raise ApiError(response.status_code, "upload_failed", response.text[:200], {})

    async def download(self, url: str) -> bytes:
        response = await self._http.get(url)
        if response.status_code >= 300:
            raise ApiError(response.status_code, "download_failed", response.text[:200], {})
        return response.content

    @property
    def ws_url(self) -> str:
        return self.base_url.replace("https://", "wss://").replace("http://", "ws://") + "/v1/ws"
