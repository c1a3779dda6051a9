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
    def __init__(
        self,
        base_url: str,
        tokens: Tokens | None = None,
        on_tokens: Callable[[Tokens], None] | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.tokens = tokens
        self._on_tokens = on_tokens
        self._refreshing = asyncio.Lock()
        self._http = httpx.AsyncClient(base_url=self.base_url, timeout=30.0, transport=transport)

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
        try:
            response = await self._http.request(method, path, json=json, headers=headers)
        except httpx.HTTPError as exc:
            raise ApiError(0, "unreachable", f"{self.base_url} is unreachable: {exc}", {}) from exc
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
        response = await self._http.put(url, content=data, headers=headers)
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
